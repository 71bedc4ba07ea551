"""``sparkmm.read``: sources that produce DataFrames.

Example:
    >>> import sparkmm
    >>> sparkmm.read.files(spark, "photos/*.jpg").count()     # doctest: +SKIP
    12
    >>> sparkmm.read.webdataset(spark, "shards/*.tar").columns  # doctest: +SKIP
    ['__key__', '__url__', 'jpg', 'json', '__error__']
"""

from __future__ import annotations

from typing import Any

from sparkmm.io.files import files


def webdataset(spark: Any, pattern: str, extensions: list[str] | None = None,
               max_member_bytes: int | None = None, storage_options: dict[str, Any] | None = None) -> Any:
    """WebDataset shards (a path, glob or comma list, local or on object storage): one row per sample,
    one partition per shard.

    ``storage_options`` takes the non-secret object-storage settings (endpoint_url, region_name,
    profile, role_arn, anonymous); see :mod:`sparkmm.io.webdataset` for the columns and how bad
    shards and members are reported.
    """
    from sparkmm.io.webdataset import register

    register(spark)
    reader = spark.read.format("webdataset")
    if extensions:
        reader = reader.option("extensions", ",".join(extensions))
    if max_member_bytes is not None:
        reader = reader.option("maxMemberBytes", str(int(max_member_bytes)))
    from sparkmm.io.webdataset import store_options

    for k, v in store_options({k: str(v).lower() if isinstance(v, bool) else str(v)
                               for k, v in (storage_options or {}).items()}).items():
        reader = reader.option(k, v)
    return reader.load(pattern)


__all__ = ["files", "webdataset"]
