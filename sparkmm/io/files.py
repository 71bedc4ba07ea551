"""File sources.

Example:
    >>> import sparkmm
    >>> df = sparkmm.read.files(spark, "data/images/**/*.jpg")   # doctest: +SKIP
    >>> df.columns                                               # doctest: +SKIP
    ['path', 'size', 'modification_time']
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def files(spark: SparkSession, pattern: str | list[str], recursive: bool = False,
          files_per_partition: int | None = 256, storage_options: dict | None = None) -> DataFrame:
    """List files as (path, size, modification_time) without reading their content.

    ``pattern`` is a file, a directory, or a glob (``*``, ``?``, ``[ab]``, ``{a,b}``);
    ``**`` matches any number of directories. ``recursive=True`` descends into
    sub-directories of a directory pattern. A list of patterns gives their union.
    Object stores (``s3://bucket/prefix/**/*.jpg``, also ``oss://``/``tos://``) are listed
    on the driver with ``storage_options`` (the same as url.download's).

    Spark splits file listings by bytes, which suits scans but not media: a task's
    cost is per file (decode, inference), so the listing is spread over partitions of
    at most ``files_per_partition`` files, and over at least twice as many partitions
    as the cluster has cores (``None`` keeps Spark's byte-based split). Each task has a
    fixed cost (tens of ms for its Python workers), hence not one file per task.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if not patterns:
        raise ValueError("no patterns given")
    stores = [p for p in patterns if _is_object_store(p)]
    local = [p for p in patterns if not _is_object_store(p)]
    frames = [_list(spark, p, recursive) for p in local]
    listed: list[str] = []
    if frames:
        out = frames[0]
        for f in frames[1:]:
            out = out.unionByName(f)
        listed = out.inputFiles()  # the driver has listed the files already
        out = _with_empty_files(spark, out, listed)
    if stores:
        rows = [r for p in stores for r in _list_object_store(p, recursive, storage_options)]
        listed += [r[0] for r in rows]
        remote = spark.createDataFrame(rows, "path string, size bigint, modification_time timestamp")
        out = remote if not frames else out.unionByName(remote)
    if files_per_partition is None:
        return out
    if files_per_partition < 1:
        raise ValueError(f"files_per_partition must be >= 1, got {files_per_partition}")
    partitions = max(-(-len(listed) // files_per_partition), 2 * _cores(spark))
    return out.repartition(max(1, min(partitions, len(listed))))


def _is_object_store(pattern: str) -> bool:
    return pattern.split("://", 1)[0].lower() in ("s3", "s3a", "oss", "tos") if "://" in pattern else False


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A key glob as a regex: ``*`` and ``?`` stay inside one directory, ``**/`` spans any number.

    Example:
        >>> bool(glob_regex("a/**/*.jpg").match("a/b/c/x.jpg")), bool(glob_regex("a/*.jpg").match("a/b/x.jpg"))
        (True, False)
    """
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "{":
            end = pattern.index("}", i)
            out.append("(?:" + "|".join(re.escape(a) for a in pattern[i + 1:end].split(",")) + ")")
            i = end
        elif c == "[":
            end = pattern.index("]", i)
            out.append(pattern[i:end + 1])
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _list_object_store(pattern: str, recursive: bool, storage_options: dict | None) -> list[tuple]:
    from sparkmm.ops import s3
    from sparkmm.ops.storage import StorageOptions

    scheme = pattern.split("://", 1)[0]
    bucket, _, key_pattern = pattern.split("://", 1)[1].partition("/")
    glob_at = min([key_pattern.find(c) for c in "*?[{" if c in key_pattern] or [len(key_pattern)])
    prefix = key_pattern[:glob_at]
    matcher = glob_regex(key_pattern) if glob_at < len(key_pattern) else None  # None: a key or a "directory"
    directory = key_pattern.rstrip("/") + "/" if key_pattern.strip("/") else ""
    client = s3.client(StorageOptions.of(storage_options))
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/"):
                continue  # directory markers
            if matcher is not None:
                if not matcher.match(key):
                    continue
            elif key != key_pattern:
                if not key.startswith(directory) or (not recursive and "/" in key[len(directory):]):
                    continue
            rows.append((f"{scheme}://{bucket}/{key}", obj["Size"], obj["LastModified"]))
    return rows


def _cores(spark: SparkSession) -> int:
    try:
        return spark.sparkContext.defaultParallelism
    except Exception:  # Spark Connect has no SparkContext
        return int(spark.conf.get("spark.default.parallelism", "1"))


def _with_empty_files(spark: SparkSession, scanned: DataFrame, listed: list[str]) -> DataFrame:
    # Spark's file scan skips zero-byte files; they are bad inputs users must see, so add them back.
    local = [urlparse(p).path for p in listed if p.startswith("file:")]
    if len(local) == len(listed):  # stat on the driver: no Spark job
        empty = [p for p in listed if _size(urlparse(p).path) == 0]
    elif scanned.count() >= len(listed):
        return scanned
    else:
        have = {_norm(r.path) for r in scanned.select("path").collect()}
        empty = [p for p in listed if _norm(p) not in have]
    if not empty:
        return scanned
    rows = []
    for p in empty:
        path = urlparse(p).path if p.startswith("file:") else None
        mtime = datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc) if path and os.path.exists(path) else None
        rows.append((_norm(p), 0, mtime))
    extra = spark.createDataFrame(rows, "path string, size bigint, modification_time timestamp")
    return scanned.unionByName(extra)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _norm(uri: str) -> str:
    return "file:/" + uri[len("file:///"):] if uri.startswith("file:///") else uri


def _list(spark: SparkSession, pattern: str, recursive: bool) -> DataFrame:
    reader = spark.read.format("binaryFile")
    path = pattern
    if "**" in pattern:
        base, _, rest = pattern.partition("**")
        path = base.rstrip("/") or "/"
        name_glob = rest.lstrip("/")
        if "/" in name_glob:
            raise ValueError(f"after '**' only a file-name glob is supported, got {pattern!r}")
        reader = reader.option("recursiveFileLookup", "true")
        if name_glob:
            reader = reader.option("pathGlobFilter", name_glob)
    elif recursive:
        reader = reader.option("recursiveFileLookup", "true")
    # Selecting only these columns keeps binaryFile from reading any content.
    return reader.load(path).select(
        F.col("path"), F.col("length").alias("size"), F.col("modificationTime").alias("modification_time"))
