"""File sources.

Example:
    >>> import sparkmm
    >>> df = sparkmm.read.files(spark, "data/images/**/*.jpg")   # doctest: +SKIP
    >>> df.columns                                               # doctest: +SKIP
    ['path', 'size', 'modification_time']
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from urllib.parse import urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def files(spark: SparkSession, pattern: str | list[str], recursive: bool = False,
          files_per_partition: int | None = 256) -> DataFrame:
    """List files as (path, size, modification_time) without reading their content.

    ``pattern`` is a file, a directory, or a glob (``*``, ``?``, ``[ab]``, ``{a,b}``);
    ``**`` matches any number of directories. ``recursive=True`` descends into
    sub-directories of a directory pattern. A list of patterns gives their union.

    Spark splits file listings by bytes, which suits scans but not media: a task's
    cost is per file (decode, inference), so the listing is spread over partitions of
    at most ``files_per_partition`` files, and over at least twice as many partitions
    as the cluster has cores (``None`` keeps Spark's byte-based split). Each task has a
    fixed cost (tens of ms for its Python workers), hence not one file per task.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    if not patterns:
        raise ValueError("no patterns given")
    frames = [_list(spark, p, recursive) for p in patterns]
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    listed = out.inputFiles()  # the driver has listed the files already
    out = _with_empty_files(spark, out, listed)
    if files_per_partition is None:
        return out
    if files_per_partition < 1:
        raise ValueError(f"files_per_partition must be >= 1, got {files_per_partition}")
    partitions = max(-(-len(listed) // files_per_partition), 2 * _cores(spark))
    return out.repartition(max(1, min(partitions, len(listed))))


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
