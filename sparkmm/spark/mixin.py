"""The DataFrame mixin ``df.mm``: steps that add several columns at once.

Example:
    >>> df = df.mm.image_properties("img")                 # doctest: +SKIP
    >>> df.mm.error_summary("img").show()                  # doctest: +SKIP
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sparkmm.ops.registry import OPERATORS
from sparkmm.spark.accessors import apply

PROPERTIES = ("width", "height", "size", "format", "mode", "error")


def _col(c: str | Column) -> Column:
    return F.col(c) if isinstance(c, str) else c


class MMAccessor:
    """``df.mm``: DataFrame-level sparkmm steps, chainable."""

    def __init__(self, df: DataFrame) -> None:
        self._df = df

    def image_properties(self, column: str, prefix: str = "", properties: tuple[str, ...] = PROPERTIES) -> DataFrame:
        """Add width, height, size, format, mode and error of an image column in one pass."""
        unknown = set(properties) - set(PROPERTIES)
        if unknown:
            raise ValueError(f"unknown image properties {sorted(unknown)}; known: {list(PROPERTIES)}")
        cols = {f"{prefix}{p}": apply(OPERATORS[f"image.{p}"], F.col(column)) for p in properties}
        return self._df.withColumns(cols)

    def write_delta(self, path: str, mode: str = "append", partition_by: list[str] | str | None = None,
                    merge_schema: bool = True, storage_options: dict[str, str] | None = None):
        """Write the frame as a Delta table in one commit; returns what ran (see sparkmm.delta)."""
        from sparkmm.io.delta import write

        return write(self._df, path, mode, partition_by, merge_schema, storage_options)

    def apply_chunk(self, fn, output_schema: str, batch_rows: int = 1024, gpus: float = 0.0) -> DataFrame:
        """Run ``fn(pandas.DataFrame) -> pandas.DataFrame`` on chunks of ``batch_rows`` rows (MaxFrame's
        apply_chunk); ``output_schema`` is the DDL of what it returns; ``gpus`` > 0 makes it a GPU stage."""
        from sparkmm.spark.inference import run_stage

        return run_stage(self._df, fn, output_schema, batch_rows, gpus, what="apply_chunk")

    def infer(self, column: str, operator: str, output: str, gpus: float = 1.0, **kwargs) -> DataFrame:
        """Add ``output`` = model operator ``operator`` (e.g. "image.embed") over ``column`` in a GPU stage.

        Example: ``df.mm.infer("img", "image.embed", "embedding", model="efficientnet-lite0", gpus=0.5)``
        """
        from sparkmm.spark.inference import model_stage

        return model_stage(self._df, operator, column, output, gpus, **kwargs)

    def apply_operator(self, op, args: dict | None = None, batch_rows: int = 256) -> DataFrame:
        """Run an operator package (``sparkmm.udfs.load(path, args)`` or its path): PreProcess and
        PostProcess in CPU stages, Process in the inference stage (see ``sparkmm.udfs``)."""
        from sparkmm import udfs

        return udfs.apply(self._df, op, args, batch_rows)

    def error_summary(self, *columns: str) -> DataFrame:
        """Count failed rows per column and reason category, with one example each.

        Works on image and audio values (their ``error``), on model outputs with an ``error`` field
        (transcripts, languages) and on string columns holding reasons. Columns default to every
        such column of the frame.
        """
        if not columns:
            columns = tuple(error_columns(self._df))
        if not columns:
            raise ValueError("no image, audio or model-output columns found; name the columns to summarise")
        parts = [self._df.select(F.lit(c).alias("column"), error_of(self._df, c).alias("error")) for c in columns]
        rows = parts[0]
        for p in parts[1:]:
            rows = rows.unionByName(p)
        return (rows.where(F.col("error").isNotNull())
                .withColumn("reason", F.split(F.col("error"), ":").getItem(0))
                .groupBy("column", "reason")
                .agg(F.count(F.lit(1)).alias("rows"), F.first("error").alias("example"))
                .orderBy(F.col("rows").desc(), "column", "reason"))

    def extract_frames(self, column: str, fps: float | None = None, mode: str = "all",
                       size: tuple[int, int] | None = None, max_frames: int | None = None,
                       start: float | None = None, end: float | None = None, **kwargs) -> DataFrame:
        """One row per frame of the video values in ``column`` (see ``sparkmm.spark.frames.extract_frames``).

        Example: ``df.mm.extract_frames("video", fps=1.0, mode="keyframes", size=(224, 224))``
        """
        from sparkmm.spark.frames import extract_frames

        return extract_frames(self._df, column, fps, mode, size, max_frames, start, end, **kwargs)

    def summarize_frames(self, by: str | list[str], scores=(), labels=(), conditions=None, **kwargs) -> DataFrame:
        """One row per video from frame results: score mean/max, majority label, first/last time of a condition.

        Example: ``frames.mm.summarize_frames("path", scores=["score"], conditions={"cat": F.col("label") == "cat"})``
        """
        from sparkmm.spark.frames import summarize_frames

        return summarize_frames(self._df, by, scores, labels, conditions, **kwargs)


def error_columns(df: DataFrame, strings: tuple[str, ...] = ()) -> list[str]:
    """Columns that carry a failure reason: media values, model outputs with an ``error`` field, and the
    string columns named in ``strings``."""
    from pyspark.sql.types import StringType

    return [f.name for f in df.schema.fields if _is_media(f.dataType) or _has_error(f.dataType)
            or (f.name in strings and isinstance(f.dataType, StringType))]


def error_of(df: DataFrame, column: str) -> Column:
    """The reason of a column's bad rows: ``meta.error`` of media values, ``error`` of model outputs, or
    the column itself (a string of reasons)."""
    dtype = df.schema[column].dataType
    if _is_media(dtype):
        return F.col(column).getField("meta").getField("error")
    if _has_error(dtype):
        return F.col(column).getField("error")
    return F.col(column)


def _is_media(dtype) -> bool:
    from pyspark.sql.types import StructType

    return (isinstance(dtype, StructType) and dtype.fieldNames() == ["data", "meta"]
            and "ops" in dtype["meta"].dataType.fieldNames())


def _has_error(dtype) -> bool:
    from pyspark.sql.types import StringType, StructType

    return (isinstance(dtype, StructType) and "error" in dtype.fieldNames()
            and isinstance(dtype["error"].dataType, StringType))


def install() -> None:
    DataFrame.mm = property(lambda self: MMAccessor(self), doc=MMAccessor.__doc__)
