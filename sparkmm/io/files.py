"""File sources.

Example:
    >>> import sparkmm
    >>> df = sparkmm.read.files(spark, "data/images/**/*.jpg")   # doctest: +SKIP
    >>> df.columns                                               # doctest: +SKIP
    ['path', 'size', 'modification_time']
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def files(spark: SparkSession, pattern: str | list[str], recursive: bool = False) -> DataFrame:
    """List files as (path, size, modification_time) without reading their content.

    ``pattern`` is a file, a directory, or a glob (``*``, ``?``, ``[ab]``, ``{a,b}``);
    ``**`` matches any number of directories. ``recursive=True`` descends into
    sub-directories of a directory pattern. A list of patterns gives their union.
    """
    if not isinstance(pattern, str):
        if not pattern:
            raise ValueError("no patterns given")
        frames = [files(spark, p, recursive) for p in pattern]
        out = frames[0]
        for f in frames[1:]:
            out = out.unionByName(f)
        return out
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
