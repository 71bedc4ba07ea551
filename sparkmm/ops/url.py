"""URL kernels: fetch the bytes behind local paths, ``file://`` and ``http(s)://`` URLs.

Fetches inside one batch run concurrently on a per-process thread pool; HTTP uses one
pooled ``urllib3`` client per process, so connections are reused across batches.
Transient failures (connection errors, timeouts, truncated bodies, 408/429/5xx) are
retried with exponential backoff and jitter; permanent ones (404, 403, missing file)
are not. Other schemes plug in through :func:`register_fetcher` (object storage does).

Example:
    >>> import pyarrow as pa
    >>> local = {"allow_local_files": True}
    >>> data, errors = fetch(pa.array(["/etc/hostname", "/no/such/file"]), storage_options=local)
    >>> errors[1].as_py()
    'not_found: /no/such/file'
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Mapping
from urllib.parse import unquote, urlparse

import pyarrow as pa

from sparkmm.errors import SparkmmError, check_errors_mode, reason
from sparkmm.ops.registry import ERRORS, Param, operator
from sparkmm.ops.storage import StorageOptions


@dataclass(frozen=True)
class FetchOptions:
    """How one URL is fetched. ``max_bytes=None`` means no size limit."""

    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.25
    max_bytes: int | None = None
    storage_options: StorageOptions = StorageOptions.of(None)


class FetchFailed(Exception):
    """A fetch failed; ``transient`` says whether trying again may help."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


Fetcher = Callable[[str, FetchOptions], bytes]
_FETCHERS: dict[str, Fetcher] = {}


def register_fetcher(scheme: str, fetcher: Fetcher) -> None:
    """Route URLs of ``scheme`` (for example ``"s3"``) to ``fetcher(url, options) -> bytes``.

    The fetcher raises :class:`FetchFailed` (``transient=True`` for retryable failures).
    """
    _FETCHERS[scheme.lower()] = fetcher


def check_local_allowed(url: str, options: FetchOptions) -> None:
    """Local files are read (or written) only when the caller opted in: a URL column must not
    be a way to read an executor's files."""
    if not options.storage_options.flag("allow_local_files"):
        raise FetchFailed(reason("local_file_refused",
                                 f"{url}: local files are off unless storage_options={{'allow_local_files': True}} "
                                 "(sparkmm's local profile sets spark.sparkmm.allowLocalFiles=true)"))


def open_local(url: str, options: FetchOptions) -> tuple[BinaryIO, int]:
    """Open a local path or ``file:`` URL: ``(binary file, size)``; failures carry reasons."""
    check_local_allowed(url, options)
    path = unquote(urlparse(url).path) if url.startswith("file:") else url
    try:
        size = os.stat(path).st_size
        if options.max_bytes is not None and size > options.max_bytes:
            raise FetchFailed(reason("too_large", f"{size} bytes > max_bytes={options.max_bytes}: {url}"))
        return open(path, "rb"), size
    except FileNotFoundError:
        raise FetchFailed(reason("not_found", url)) from None
    except IsADirectoryError:
        raise FetchFailed(reason("is_a_directory", url)) from None
    except PermissionError:
        raise FetchFailed(reason("permission_denied", url)) from None
    except OSError as e:
        raise FetchFailed(reason("io_error", f"{url}: {e.strerror or e}"), transient=True) from None


def _read_local(url: str, options: FetchOptions) -> bytes:
    f, _ = open_local(url, options)
    with f:
        try:
            return f.read()
        except IsADirectoryError:
            raise FetchFailed(reason("is_a_directory", url)) from None
        except OSError as e:
            raise FetchFailed(reason("io_error", f"{url}: {e.strerror or e}"), transient=True) from None


_RETRY_STATUS = {408, 429, 500, 502, 503, 504}


_http: dict[int, object] = {}  # pid -> PoolManager; a forked worker builds its own


def _http_pool():
    import urllib3

    pool = _http.get(os.getpid())
    if pool is None:
        with _pools_lock:
            pool = _http.setdefault(os.getpid(), urllib3.PoolManager(num_pools=64, maxsize=64, retries=False))
    return pool


# Cloud metadata services and link-local addresses: the usual SSRF targets.
_BLOCKED_NETS = [ipaddress.ip_network(n) for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128",
                                                      "100.100.100.200/32")]
_BLOCKED_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}


def _check_address(url: str, options: FetchOptions) -> None:
    if options.storage_options.flag("allow_link_local"):
        return
    host = (urlparse(url).hostname or "").lower()
    how = "pass storage_options={'allow_link_local': True} to allow it"
    if host in _BLOCKED_HOSTS:
        raise FetchFailed(reason("blocked_address", f"{host} is a cloud metadata host; {how}"))
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return  # the request itself reports the name error
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if any(ip in net for net in _BLOCKED_NETS):
            raise FetchFailed(reason("blocked_address",
                                     f"{host} resolves to {ip}, a link-local/cloud metadata address; {how}"))


def _read_http(url: str, options: FetchOptions) -> bytes:
    import urllib3

    _check_address(url, options)

    timeout = urllib3.Timeout(connect=min(options.timeout, 10.0), read=options.timeout)
    try:
        resp = _http_pool().request("GET", url, preload_content=False, timeout=timeout, redirect=True)
    except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError,
            urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError) as e:
        raise FetchFailed(reason("connection_error", f"{url}: {type(e).__name__}"), transient=True) from None
    except urllib3.exceptions.HTTPError as e:
        raise FetchFailed(reason("http_error", f"{url}: {e}"), transient=True) from None
    try:
        if resp.status >= 400:
            raise FetchFailed(reason(f"http_{resp.status}", url), transient=resp.status in _RETRY_STATUS)
        length = resp.headers.get("Content-Length")
        if options.max_bytes is not None and length is not None and int(length) > options.max_bytes:
            raise FetchFailed(reason("too_large", f"{length} bytes > max_bytes={options.max_bytes}: {url}"))
        chunks, total = [], 0
        for chunk in resp.stream(1 << 16):
            total += len(chunk)
            if options.max_bytes is not None and total > options.max_bytes:
                raise FetchFailed(reason("too_large", f"more than max_bytes={options.max_bytes}: {url}"))
            chunks.append(chunk)
        return b"".join(chunks)
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError,
            urllib3.exceptions.IncompleteRead) as e:
        raise FetchFailed(reason("truncated", f"{url}: {type(e).__name__}"), transient=True) from None
    finally:
        resp.release_conn()


register_fetcher("http", _read_http)
register_fetcher("https", _read_http)
register_fetcher("file", _read_local)
register_fetcher("", _read_local)


def _scheme(url: str) -> str:
    head = url.split("://", 1)[0] if "://" in url else ("file" if url.startswith("file:") else "")
    return head.lower()


def _load_object_stores() -> None:
    # Object-store fetchers register themselves on import; boto3 loads only when used.
    if "s3" not in _FETCHERS:
        import sparkmm.ops.s3  # noqa: F401


def is_local(url: str) -> bool:
    """Whether ``url`` names a file on this machine (a path or ``file:`` URL)."""
    return _scheme(url) in ("", "file")


def fetch_one(url: str, options: FetchOptions) -> bytes:
    """Fetch one URL with retries; raises :class:`FetchFailed` with a reason."""
    scheme = _scheme(url)
    fetcher = _FETCHERS.get(scheme)
    if fetcher is None:
        known = ", ".join(sorted(s or "<local path>" for s in _FETCHERS))
        raise FetchFailed(reason("unsupported_scheme", f"{scheme}:// is not supported (known: {known}): {url}"))
    attempt = 0
    while True:
        try:
            return fetcher(url, options)
        except FetchFailed as e:
            if not e.transient or attempt >= options.retries:
                if attempt:
                    raise FetchFailed(f"{e} (after {attempt + 1} attempts)", e.transient) from None
                raise
        attempt += 1
        time.sleep(options.backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))


_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(max_connections: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(max_connections)
        if pool is None:
            pool = _pools[max_connections] = ThreadPoolExecutor(max_connections, thread_name_prefix="sparkmm-fetch")
        return pool


def fetch(
    urls: pa.Array,
    *,
    max_connections: int = 16,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.25,
    max_bytes: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[pa.Array, pa.Array]:
    """Fetch every URL of a batch concurrently: ``(binary data, string reasons)``.

    A failed row gets null data and a reason; a null URL gets null and no reason.

    Example:
        >>> data, errors = fetch(pa.array(["file:///etc/hostname"]), storage_options={"allow_local_files": True})
        >>> errors[0].as_py() is None
        True
        >>> fetch(pa.array(["/etc/hostname"]))[1][0].as_py()[:18]
        'local_file_refused'
    """
    if max_connections < 1:
        raise ValueError(f"max_connections must be >= 1, got {max_connections}")
    _load_object_stores()
    options = FetchOptions(timeout, retries, backoff, max_bytes, StorageOptions.of(storage_options))
    values = urls.to_pylist()

    def one(url: str | None) -> tuple[bytes | None, str | None]:
        if url is None:
            return None, None
        try:
            return fetch_one(url, options), None
        except FetchFailed as e:
            return None, str(e)

    if len(values) <= 1 or max_connections == 1:
        results = [one(u) for u in values]
    else:
        results = list(_pool(max_connections).map(one, values))
    return (pa.array([r[0] for r in results], pa.binary()),
            pa.array([r[1] for r in results], pa.string()))


FETCH_PARAMS = (
    Param("max_connections", (("max_connections", "INT"),), 16, doc="concurrent fetches per batch"),
    Param("timeout", (("timeout", "DOUBLE"),), 30.0, doc="seconds per request"),
    Param("retries", (("retries", "INT"),), 3, doc="retries of transient failures"),
    Param("max_bytes", (("max_bytes", "BIGINT"),), None, doc="larger objects fail with too_large"),
)


@operator("url", input_type="STRING", output_type="BINARY", params=FETCH_PARAMS + (ERRORS,), storage_options=True)
def download(
    urls: pa.Array,
    max_connections: int = 16,
    timeout: float = 30.0,
    retries: int = 3,
    max_bytes: int | None = None,
    errors: str = "ignore",
    storage_options: Mapping[str, Any] | None = None,
) -> pa.Array:
    """Fetch the bytes behind paths and URLs (local, file://, http(s)://); null on failure.

    Example:
        >>> download(pa.array([None], pa.string())).to_pylist()
        [None]
    """
    check_errors_mode(errors)
    data, reasons = fetch(urls, max_connections=max_connections, timeout=timeout,
                          retries=retries, max_bytes=max_bytes, storage_options=storage_options)
    if errors == "raise":
        raise_first(urls, reasons, "download")
    return data


def raise_first(sources: pa.Array, reasons: pa.Array, what: str) -> None:
    """With ``errors="raise"``: fail on the first bad row, naming it."""
    for i, r in enumerate(reasons.to_pylist()):
        if r is not None:
            raise SparkmmError(f"{what} failed for {sources[i].as_py()!r} (row {i} of the batch): {r}")


# --------------------------------------------------------------------------- upload

Writer = Callable[[str, bytes, str, FetchOptions], bool]
_WRITERS: dict[str, Writer] = {}
OVERWRITE = ("overwrite", "skip", "error")


def register_writer(scheme: str, writer: Writer) -> None:
    """Route uploads to ``scheme`` to ``writer(url, data, overwrite, options) -> written``."""
    _WRITERS[scheme.lower()] = writer


def _write_local(url: str, data: bytes, overwrite: str, options: FetchOptions) -> bool:
    check_local_allowed(url, options)
    path = unquote(urlparse(url).path) if url.startswith("file:") else url
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        if overwrite == "overwrite":
            os.replace(tmp, path)  # atomic: readers see the old file or the new one, never a part
            return True
        try:
            os.link(tmp, path)  # atomic put-if-absent
            return True
        except FileExistsError:
            if overwrite == "skip":
                return False
            raise FetchFailed(reason("exists", f"{url} exists (overwrite='error')")) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


register_writer("", _write_local)
register_writer("file", _write_local)


def _target(location: str, name: str | None, data: bytes, suffix: str) -> str:
    if name is None:
        name = hashlib.sha256(data).hexdigest()[:32]
    if "/" in name.strip("/") or name in ("", ".", ".."):
        raise FetchFailed(reason("bad_name", f"object name {name!r} must be a plain file name"))
    return f"{location.rstrip('/')}/{name}{suffix}"


@operator("url", input_type="BINARY", output_type="STRING", storage_options=True, params=(
    Param("location", (("location", "STRING"),), doc="directory or prefix: /data/out/, s3://bucket/prefix/"),
    Param("name", (("name", "STRING"),), None, per_row=True,
          doc="object name per row (a column); default: the content's SHA-256"),
    Param("suffix", (("suffix", "STRING"),), "", doc="appended to the name, e.g. '.png'"),
    Param("overwrite", (("overwrite", "STRING"),), "overwrite", OVERWRITE,
          doc="'overwrite', 'skip' an existing object, or 'error'"),
    Param("max_connections", (("max_connections", "INT"),), 16, doc="concurrent uploads per batch"),
    ERRORS))
def upload(data: pa.Array, location: str, name: pa.Array | str | None = None, suffix: str = "",
           overwrite: str = "overwrite", max_connections: int = 16, errors: str = "ignore",
           storage_options: Mapping[str, Any] | None = None) -> pa.Array:
    """Write bytes under ``location`` with a deterministic name and return each object's URI.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> local = {"allow_local_files": True}
        >>> upload(pa.array([b"abc"]), d, pa.array(["x"]), ".bin", storage_options=local)[0].as_py() == d + "/x.bin"
        True
    """
    check_errors_mode(errors)
    if overwrite not in OVERWRITE:
        raise ValueError(f"overwrite must be one of {list(OVERWRITE)}, got {overwrite!r}")
    _load_object_stores()
    scheme = _scheme(location)
    writer = _WRITERS.get(scheme)
    if writer is None:
        raise ValueError(f"cannot upload to {scheme}:// (known: {sorted(s or '<local path>' for s in _WRITERS)})")
    options = FetchOptions(storage_options=StorageOptions.of(storage_options))
    blobs = data.to_pylist()
    names = name.to_pylist() if isinstance(name, (pa.Array, pa.ChunkedArray)) else [name] * len(blobs)

    def one(i: int) -> tuple[str | None, str | None]:
        if blobs[i] is None:
            return None, None
        try:
            url = _target(location, names[i], blobs[i], suffix or "")
            attempt = 0
            while True:
                try:
                    writer(url, blobs[i], overwrite, options)
                    return url, None
                except FetchFailed as e:
                    if not e.transient or attempt >= options.retries:
                        raise
                attempt += 1
                time.sleep(options.backoff * (2 ** (attempt - 1)) * (0.5 + random.random()))
        except FetchFailed as e:
            return None, str(e)

    results = list(_pool(max_connections).map(one, range(len(blobs)))) if len(blobs) > 1 else [one(0)] if blobs else []
    uris = pa.array([r[0] for r in results], pa.string())
    if errors == "raise":
        raise_first(pa.array(names, pa.string()) if name is not None else uris, pa.array([r[1] for r in results],
                    pa.string()), "upload")
    return uris
