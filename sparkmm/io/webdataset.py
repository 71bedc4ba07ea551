"""WebDataset shards as a Spark source: ``spark.read.format("webdataset").load("shards/*.tar")``.

One row per sample (members sharing a key: ``a/b/000123.jpg`` and ``a/b/000123.json`` form sample
``a/b/000123``), one column per member extension (``seg.png`` -> ``seg_png``), one partition per
shard. ``.json``, ``.txt`` and ``.cls`` members are decoded (JSON text checked, UTF-8 text, integer
class); everything else stays binary. ``__key__``, ``__url__`` (the shard) and ``__error__`` come
first and last.

Bad input never fails the read: a member over ``maxMemberBytes`` (default 64 MiB) or that cannot be
decoded is null with the reason in ``__error__``; a corrupt or truncated shard keeps the samples read
before the damage and adds one row whose ``__error__`` says what broke.

Options: ``extensions`` (comma list; default: those found in the first shard's first 100 samples),
``maxMemberBytes``.

Example:
    >>> df = sparkmm.read.webdataset(spark, "shards/*.tar")          # doctest: +SKIP
    >>> df.select("__key__", "jpg", "json").show()                    # doctest: +SKIP
"""

from __future__ import annotations

import glob
import json
import os
import tarfile
from typing import Any, Iterator

from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition

DEFAULT_MAX_MEMBER = 64 << 20
TEXT = {"json": "STRING", "txt": "STRING", "text": "STRING", "cls": "BIGINT", "cls2": "BIGINT", "id": "STRING"}


def _split(name: str) -> tuple[str, str]:
    """(key, extension) of a member name: the extension is everything after the basename's first dot."""
    directory, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), ext.lower() if dot else ""


def column_name(ext: str) -> str:
    """The column of a member extension: ``seg.png`` -> ``seg_png``.

    Example:
        >>> column_name("seg.png"), column_name("JPG")
        ('seg_png', 'jpg')
    """
    return ext.lower().replace(".", "_").replace("-", "_")


def shards(pattern: str) -> list[str]:
    """Shard files for a path, a glob, or a comma-separated list of either."""
    out: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        part = part.removeprefix("file:")
        matched = sorted(glob.glob(part, recursive=True)) if any(c in part for c in "*?[") else [part]
        out.extend(m for m in matched if not os.path.isdir(m))
    if not out:
        raise FileNotFoundError(f"no WebDataset shards match {pattern!r}")
    return out


def scan_extensions(path: str, samples: int = 100) -> list[str]:
    """Member extensions of the first ``samples`` samples of a shard, in first-seen order."""
    seen: dict[str, None] = {}
    keys: set[str] = set()
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split(member.name)
                if key not in keys and len(keys) >= samples:
                    break
                keys.add(key)
                if ext and not key.split("/")[-1].startswith("__"):
                    seen.setdefault(ext, None)
    except (tarfile.TarError, OSError, EOFError):
        pass  # a damaged first shard still yields what was readable
    return list(seen)


class _Shard(InputPartition):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class WebDatasetSource(DataSource):
    """The ``webdataset`` format."""

    @classmethod
    def name(cls) -> str:
        return "webdataset"

    def _extensions(self) -> list[str]:
        if self.options.get("extensions"):
            return [e.strip().lower().lstrip(".") for e in self.options["extensions"].split(",") if e.strip()]
        return scan_extensions(shards(self.options["path"])[0])

    def schema(self) -> str:
        cols = [f"`{column_name(e)}` {TEXT.get(e, 'BINARY')}" for e in self._extensions()]
        return ", ".join(["__key__ STRING", "__url__ STRING", *cols, "__error__ STRING"])

    def reader(self, schema: Any) -> "WebDatasetReader":
        return WebDatasetReader(self.options, self._extensions())


class WebDatasetReader(DataSourceReader):
    def __init__(self, options: dict[str, str], extensions: list[str]) -> None:
        self.pattern = options["path"]
        self.extensions = extensions
        self.max_member = int(options.get("maxMemberBytes", DEFAULT_MAX_MEMBER))

    def partitions(self) -> list[InputPartition]:
        return [_Shard(p) for p in shards(self.pattern)]

    def read(self, partition: InputPartition) -> Iterator[tuple]:
        yield from read_shard(partition.path, self.extensions, self.max_member)


def _decode(ext: str, raw: bytes) -> Any:
    kind = TEXT.get(ext)
    if kind is None:
        return raw
    text = raw.decode("utf-8")
    if ext == "json":
        json.loads(text)  # reject invalid JSON here, with a reason, not later in a from_json
        return text
    if kind == "BIGINT":
        return int(text.strip())
    return text


def read_shard(path: str, extensions: list[str], max_member: int = DEFAULT_MAX_MEMBER) -> Iterator[tuple]:
    """Rows ``(__key__, __url__, *columns, __error__)`` of one shard, samples in file order.

    Example:
        >>> list(read_shard("/no/such.tar", ["jpg"]))[0][-1]
        'not_found: /no/such.tar'
    """
    index = {e: i for i, e in enumerate(extensions)}
    key: str | None = None
    values: list[Any] = []
    errors: list[str] = []

    def row() -> tuple:
        return (key, path, *values, "; ".join(errors) or None)

    if not os.path.exists(path):
        yield (None, path, *[None] * len(extensions), f"not_found: {path}")
        return
    try:
        with tarfile.open(path, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                k, ext = _split(member.name)
                if k != key:
                    if key is not None:
                        yield row()
                    key, values, errors = k, [None] * len(extensions), []
                if ext not in index:
                    continue  # an extension outside the schema (choose them with the extensions option)
                if member.size > max_member:
                    errors.append(f"too_large: {member.name} is {member.size} bytes > maxMemberBytes={max_member}")
                    continue
                raw = tar.extractfile(member).read()
                try:
                    values[index[ext]] = _decode(ext, raw)
                except (ValueError, UnicodeDecodeError) as e:
                    errors.append(f"bad_member: {member.name}: {type(e).__name__}: {e}")
    except (tarfile.TarError, OSError, EOFError) as e:
        if key is not None:
            errors.append("incomplete: the shard broke while this sample was read")
            yield row()
            key = None
        yield (None, path, *[None] * len(extensions), f"corrupt_shard: {path}: {type(e).__name__}: {e}")
        return
    if key is not None:
        yield row()


def register(spark: Any) -> None:
    """Make ``spark.read.format("webdataset")`` available in this session."""
    spark.dataSource.register(WebDatasetSource)
