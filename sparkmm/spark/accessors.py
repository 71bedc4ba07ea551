"""Column accessors: ``F.col("p").url.download()``, ``F.col("img").image.width``, ...

Every method comes from an operator definition in ``sparkmm.ops``; properties
(``width``, ``height``, ``size``, ``format``, ``mode``, ``error``) read the image
descriptor directly in the JVM, without a Python round trip. The accessors live on
``pyspark.sql.Column``, the base of classic and Spark Connect columns.

Chains are fused: ``F.col("img").image.resize(...).image.convert("RGB").image.encode()``
becomes one Python UDF that runs the three kernels back to back on each Arrow batch,
instead of three UDFs with a JVM round trip between each. The fused UDF carries the
operator names (``mm_image_resize__convert__encode``) so plans stay readable.

Example:
    >>> import sparkmm
    >>> from pyspark.sql import functions as F
    >>> F.col("img").image.width          # doctest: +SKIP
    Column<'img.meta.width'>
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pyarrow as pa
from pyspark.sql import Column
from pyspark.sql import functions as F

from sparkmm.ops.registry import OPERATORS, Operator
from sparkmm.ops.storage import StorageOptions
from sparkmm.spark.udfs import udf_for


Step = tuple[Operator, tuple[Any, ...], Any]  # operator, SQL-level arguments, storage options


def apply(op: Operator, col: Column, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Column:
    """The Column expression running ``op`` on ``col`` with Python arguments."""
    kwargs = dict(kwargs or {})
    options = None
    if op.storage_options:
        options = session_defaults(StorageOptions.of(kwargs.pop("storage_options", None)))
    flat = op.bind(*args, **kwargs)
    if op.wiring == "field":
        out = col
        for name in op.field_path:
            out = out.getField(name)
        return out
    chain = vars(col).get("_mm_chain")  # not getattr: Column.__getattr__ means a struct field
    column_args = any(isinstance(v, Column) for v in flat)
    if chain is None or column_args:  # column arguments end a fused chain
        out = _single(op, col, flat, options)
        if not column_args:
            out._mm_chain = (col, ((op, tuple(flat), options),))
        return out
    root, steps = chain
    steps = steps + ((op, tuple(flat), options),)
    if all(step[0].wiring == "meta" for step in steps):  # still lazy: fuse on the descriptor only
        meta = fused_udf(steps, op.meta_type)(root.getField("meta"))
        out = F.when(root.isNull(), F.lit(None)).otherwise(
            F.struct(root.getField("data").alias("data"), meta.alias("meta")))
    else:
        out = fused_udf(steps, steps[-1][0].output_type)(root)
    out._mm_chain = (root, steps)
    return out


def session_defaults(options: StorageOptions) -> StorageOptions:
    """Storage options with the active session's defaults (``spark.sparkmm.allowLocalFiles``)."""
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    if spark is None or "allow_local_files" in options:
        return options
    allowed = (spark.conf.get("spark.sparkmm.allowLocalFiles", "false") or "false").lower() == "true"
    return options.with_defaults(allow_local_files=allowed)


def _run_steps(steps: tuple[Step, ...], value: Any) -> Any:
    for op, flat, options in steps:
        extra = {"storage_options": options} if op.storage_options else {}
        value = op.kernel(value, **op.unflatten(flat), **extra)
    return value


@lru_cache(maxsize=256)
def fused_udf(steps: tuple[Step, ...], return_type: str):
    """One Arrow UDF running several operators back to back (their kernels, in order)."""
    from pyspark.sql.functions import arrow_udf

    def run(value: pa.Array) -> pa.Array:
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        return _run_steps(steps, value)

    run.__name__ = f"mm_{steps[0][0].accessor}_" + "__".join(step[0].name for step in steps)
    return arrow_udf(run, return_type)


def _single(op: Operator, col: Column, flat: list[Any], options: StorageOptions | None) -> Column:
    lits = [v if isinstance(v, Column) else F.lit(v) for v in flat]
    # Typed nulls, so Spark knows the argument types of defaults left as None.
    for i, (_, typ, _) in enumerate(op.sql_args()):
        if flat[i] is None:
            lits[i] = F.lit(None).cast(typ.lower())
    udf = udf_for(op, options)
    if op.wiring == "udf":
        return udf(col, *lits)
    if op.wiring == "decode":
        value = F.struct(col.alias("data"), udf(col, *lits).alias("meta"))
    else:  # "meta": only the small descriptor goes to Python; the bytes stay in the JVM
        value = F.struct(col.getField("data").alias("data"), udf(col.getField("meta"), *lits).alias("meta"))
    return F.when(col.isNull(), F.lit(None)).otherwise(value)


class _Accessor:
    _name = ""

    def __init__(self, col: Column) -> None:
        self._col = col

    def __dir__(self) -> list[str]:
        return sorted(op.name for op in OPERATORS.values() if op.accessor == self._name)

    def __getattr__(self, item: str) -> Any:
        op = OPERATORS.get(f"{self._name}.{item}")
        if op is None:
            known = ", ".join(self.__dir__())
            raise AttributeError(f"Column.{self._name} has no operator {item!r}; known: {known}")
        if op.wiring == "field":
            return apply(op, self._col)

        def method(*args: Any, **kwargs: Any) -> Column:
            return apply(op, self._col, args, kwargs)

        method.__name__ = item
        method.__doc__ = op.kernel.__doc__
        return method


class UrlAccessor(_Accessor):
    """``F.col(c).url``: download (and, with object storage, upload)."""

    _name = "url"


class ImageAccessor(_Accessor):
    """``F.col(c).image``: decode, properties, resize, crop, convert, encode, hashes, ..."""

    _name = "image"


class AudioAccessor(_Accessor):
    """``F.col(c).audio``: decode, load, properties, resample, to_mono, samples, vad_detect, detect_language, transcribe."""

    _name = "audio"


class VideoAccessor(_Accessor):
    """``F.col(c).video``: decode, load, probe and properties, frames, audio (the audio track as an audio value)."""

    _name = "video"


def install() -> None:
    """Attach the accessors to pyspark's Column (classic and Connect)."""
    for name, cls in (("url", UrlAccessor), ("image", ImageAccessor), ("audio", AudioAccessor),
                      ("video", VideoAccessor)):
        setattr(Column, name, property(lambda self, _cls=cls: _cls(self), doc=cls.__doc__))
