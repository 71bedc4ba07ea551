"""S3 and S3-compatible object stores (OSS, TOS, MinIO, ...) for url.download.

URLs ``s3://bucket/key`` (also ``s3a://``, and ``oss://``/``tos://`` with an
``endpoint_url``) are fetched with one pooled boto3 client per worker process and set of
storage options. ``role_arn`` assumes the role through STS; the temporary credentials are
cached per worker and refreshed before they expire. Only transient failures (throttling,
5xx, timeouts, dropped connections) are retried by the caller; 403 and 404 are final.

Example:
    >>> split_url("s3://bucket/photos/a.jpg")
    ('bucket', 'photos/a.jpg')
"""

from __future__ import annotations

import os
import threading
from typing import Any

from sparkmm.errors import reason
from sparkmm.ops.storage import StorageOptions
from sparkmm.ops.url import FetchFailed, FetchOptions, register_fetcher, register_writer

_clients: dict[tuple[int, StorageOptions, float], Any] = {}
_lock = threading.Lock()
STS_CALLS = {"count": 0}  # how often this worker asked STS for credentials (tests read it)
_TRANSIENT = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
              "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}


def split_url(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise FetchFailed(reason("bad_url", f"expected <scheme>://bucket/key, got {url}"))
    return bucket, key


def _role_credentials(base, options: StorageOptions):
    """Refreshable credentials from STS AssumeRole (botocore refreshes them before expiry)."""
    from botocore.credentials import RefreshableCredentials

    def fetch() -> dict[str, str]:
        sts = base.client("sts", endpoint_url=options.get("sts_endpoint_url") or options.get("endpoint_url"),
                          region_name=options.get("region_name") or "us-east-1")
        args = {"RoleArn": options["role_arn"],
                "RoleSessionName": options.get("role_session_name") or f"sparkmm-{os.getpid()}",
                "DurationSeconds": int(options.get("role_duration_seconds") or 3600)}
        if options.get("external_id"):
            args["ExternalId"] = options["external_id"]
        creds = sts.assume_role(**args)["Credentials"]
        STS_CALLS["count"] += 1
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}

    return RefreshableCredentials.create_from_metadata(fetch(), fetch, "sts-assume-role")


def client(options: StorageOptions, timeout: float = 30.0):
    """The worker's S3 client for these options (created once, thread-safe, pooled)."""
    key = (os.getpid(), options, timeout)
    c = _clients.get(key)
    if c is not None:
        return c
    with _lock:
        c = _clients.get(key)
        if c is None:
            c = _clients[key] = _new_client(options, timeout)
    return c


def _new_client(options: StorageOptions, timeout: float):
    import boto3
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    config = Config(max_pool_connections=64, connect_timeout=min(timeout, 10.0), read_timeout=timeout,
                    retries={"max_attempts": 1, "mode": "standard"},  # sparkmm retries, with backoff
                    signature_version=UNSIGNED if options.flag("anonymous") else None,
                    s3={"addressing_style": "path"} if options.get("endpoint_url") else None)
    base = boto3.Session(profile_name=options.get("profile"),
                         aws_access_key_id=options.get("aws_access_key_id"),
                         aws_secret_access_key=options.get("aws_secret_access_key"),
                         aws_session_token=options.get("aws_session_token"),
                         region_name=options.get("region_name"))
    session = base
    if options.get("role_arn"):
        core = botocore.session.get_session()
        core._credentials = _role_credentials(base, options)
        session = boto3.Session(botocore_session=core, region_name=options.get("region_name"))
    return session.client("s3", endpoint_url=options.get("endpoint_url"),
                          region_name=options.get("region_name") or "us-east-1", config=config)


def read_s3(url: str, options: FetchOptions) -> bytes:
    from botocore.exceptions import (BotoCoreError, ClientError, ConnectionClosedError, ConnectTimeoutError,
                                     EndpointConnectionError, ReadTimeoutError, ResponseStreamingError)

    bucket, key = split_url(url)
    store = StorageOptions.of(options.storage_options)
    try:
        resp = client(store, options.timeout).get_object(Bucket=bucket, Key=key)
        length = resp.get("ContentLength")
        if options.max_bytes is not None and length is not None and length > options.max_bytes:
            resp["Body"].close()
            raise FetchFailed(reason("too_large", f"{length} bytes > max_bytes={options.max_bytes}: {url}"))
        data = resp["Body"].read()
        if length is not None and len(data) != length:
            raise FetchFailed(reason("truncated", f"{len(data)} of {length} bytes: {url}"), transient=True)
        return data
    except ClientError as e:
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "NoSuchBucket", "404") or status == 404:
            raise FetchFailed(reason("not_found", url)) from None
        if status == 403 or code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise FetchFailed(reason("forbidden", f"{url}: {code}")) from None
        transient = code in _TRANSIENT or (status is not None and (status >= 500 or status == 429))
        raise FetchFailed(reason(f"s3_{code or status}", url), transient=transient) from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError,
            ResponseStreamingError) as e:
        raise FetchFailed(reason("connection_error", f"{url}: {type(e).__name__}"), transient=True) from None
    except BotoCoreError as e:
        raise FetchFailed(reason("s3_error", f"{url}: {type(e).__name__}"), transient=True) from None


def write_s3(url: str, data: bytes, overwrite: str, options: FetchOptions) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = split_url(url)
    c = client(StorageOptions.of(options.storage_options), options.timeout)
    try:
        if overwrite != "overwrite":
            try:
                c.head_object(Bucket=bucket, Key=key)
                if overwrite == "skip":
                    return False
                raise FetchFailed(reason("exists", f"{url} exists (overwrite='error')"))
            except ClientError as e:
                if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                    raise
        c.put_object(Bucket=bucket, Key=key, Body=data)  # S3 puts are atomic per object
        return True
    except ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        code = str(e.response.get("Error", {}).get("Code", status))
        if status == 403:
            raise FetchFailed(reason("forbidden", f"{url}: {code}")) from None
        transient = code in _TRANSIENT or (status is not None and (status >= 500 or status == 429))
        raise FetchFailed(reason(f"s3_{code}", url), transient=transient) from None
    except BotoCoreError as e:
        raise FetchFailed(reason("s3_error", f"{url}: {type(e).__name__}"), transient=True) from None


for _scheme in ("s3", "s3a", "oss", "tos"):
    register_fetcher(_scheme, read_s3)
    register_writer(_scheme, write_s3)
