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
``maxMemberBytes``, and for shards on object storage (``s3://``, ``s3a://``, ``oss://``, ``tos://``; globs
listed like ``sparkmm.read.files``, each shard streamed, never downloaded whole) the non-secret storage
options ``endpoint_url``, ``region_name``, ``profile``, ``role_arn``, ``anonymous``. Source options show in
query plans, so keys and tokens are refused here: credentials come from the environment, the instance role
or ``role_arn``.

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
STORE_OPTIONS = ("endpoint_url", "region_name", "profile", "role_arn", "anonymous")
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


def store_options(options: dict[str, str]) -> dict[str, str]:
    """The object-storage options of a read; secrets are refused (they would show in plans)."""
    from sparkmm.ops.storage import SECRET_KEYS

    secret = [k for k in options if any(w in k.lower() for w in SECRET_KEYS) or k.lower().endswith("key_id")]
    if secret:
        raise ValueError(f"webdataset: {secret} would show in query plans; give credentials through the "
                         "environment, an instance role or role_arn")
    return {k: options[k] for k in STORE_OPTIONS if options.get(k) not in (None, "")}


def _remote(path: str) -> bool:
    return path.split("://", 1)[0].lower() in ("s3", "s3a", "oss", "tos") if "://" in path else False


def shards(pattern: str, options: dict[str, str] | None = None) -> list[str]:
    """Shard files for a path, a glob, or a comma-separated list of either (local or object storage)."""
    from sparkmm.io.files import _list_object_store

    out: list[str] = []
    for part in (p.strip() for p in pattern.split(",")):
        if _remote(part):
            listed = sorted(r[0] for r in _list_object_store(part, False, options or {}))
            # a named shard that is not there is kept: reading it reports not_found
            out.extend(listed or ([] if any(c in part for c in "*?[{") else [part]))
            continue
        part = part.removeprefix("file:")
        matched = sorted(glob.glob(part, recursive=True)) if any(c in part for c in "*?[") else [part]
        out.extend(m for m in matched if not os.path.isdir(m))
    if not out:
        raise FileNotFoundError(f"no WebDataset shards match {pattern!r}")
    return out


def _open_shard(path: str, options: dict[str, str] | None) -> Any:
    """A readable stream of the shard: the local file, or the object's body streamed from the store."""
    if not _remote(path):
        return open(path, "rb")
    from sparkmm.ops import s3
    from sparkmm.ops.storage import StorageOptions

    bucket, key = s3.split_url(path)
    return s3.client(StorageOptions.of(options or {})).get_object(Bucket=bucket, Key=key)["Body"]


def scan_extensions(path: str, samples: int = 100, options: dict[str, str] | None = None) -> list[str]:
    """Member extensions of the first ``samples`` samples of a shard, in first-seen order."""
    seen: dict[str, None] = {}
    keys: set[str] = set()
    try:
        with _open_shard(path, options) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split(member.name)
                if key not in keys and len(keys) >= samples:
                    break
                keys.add(key)
                if ext and not key.split("/")[-1].startswith("__"):
                    seen.setdefault(ext, None)
    except Exception:  # a damaged or unreadable first shard still yields what was readable
        pass
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
        options = store_options(dict(self.options))
        return scan_extensions(shards(self.options["path"], options)[0], options=options)

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
        self.store = store_options(dict(options))

    def partitions(self) -> list[InputPartition]:
        return [_Shard(p) for p in shards(self.pattern, self.store)]

    def read(self, partition: InputPartition) -> Iterator[tuple]:
        yield from read_shard(partition.path, self.extensions, self.max_member, self.store)


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


def read_shard(path: str, extensions: list[str], max_member: int = DEFAULT_MAX_MEMBER,
               options: dict[str, str] | None = None) -> Iterator[tuple]:
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

    try:
        stream = _open_shard(path, options)
    except Exception as e:  # missing file or object, no access: a reason, not a failed read
        text = f"{type(e).__name__}: {e}"
        kind = "not_found" if isinstance(e, FileNotFoundError) or "NoSuchKey" in text or "404" in text else "unreadable"
        yield (None, path, *[None] * len(extensions), f"{kind}: {path}" + ("" if kind == "not_found" else f": {text}"))
        return
    try:
        with stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
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
    except Exception as e:  # tar damage, a dropped connection: keep what was read, say what broke
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
