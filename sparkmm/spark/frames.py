"""Frame extraction (one row per frame) and per-video summaries of frame results.

``extract_frames`` is a ``mapInArrow`` stage over a video value column: each task decodes its
videos with :func:`sparkmm.ops.video.frame_batches`, which streams frames out in bounded Arrow
batches, and repeats the input row's columns beside each frame. ``summarize_frames`` folds
frame-level results (scores, labels, conditions) back to one row per video, as EasyVision
summarises its frame predictions.

Example:
    >>> frames = df.mm.extract_frames("video", fps=1.0, mode="keyframes")          # doctest: +SKIP
    >>> frames.select("path", "timestamp", F.col("image").image.width).show()      # doctest: +SKIP
    >>> frames.withColumn("score", ...).mm.summarize_frames("path", scores=["score"])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import pyarrow as pa
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StructField, StructType

from sparkmm.ops import video as _video

FRAME_COLUMNS = [f.name for f in _video.FRAME_TYPE]


def _frame_fields() -> list[StructField]:
    from pyspark.sql.pandas.types import from_arrow_type

    return [StructField(f.name, from_arrow_type(f.type), True) for f in _video.FRAME_TYPE]


def _check_video_column(df: DataFrame, column: str) -> None:
    if column not in df.columns:
        raise ValueError(f"no column {column!r}; columns: {df.columns}")
    dtype = df.schema[column].dataType
    ok = (isinstance(dtype, StructType) and dtype.fieldNames() == ["data", "meta"]
          and "frame_count" in dtype["meta"].dataType.fieldNames())
    if not ok:
        raise TypeError(f"{column!r} is not a video value ({dtype.simpleString()}); make one with "
                        f"F.col(path).video.load() or F.col(bytes).video.decode()")
    clash = [c for c in FRAME_COLUMNS if c in df.columns]
    if clash:
        raise ValueError(f"the frame has columns named like the frame columns {clash}; rename them first")


def extract_frames(df: DataFrame, column: str, fps: float | None = None, mode: str = "all",
                   size: tuple[int, int] | None = None, max_frames: int | None = None, start: float | None = None,
                   end: float | None = None, image_format: str = "JPEG", quality: int = 90,
                   batch_rows: int = 256, batch_bytes: int = 64 << 20) -> DataFrame:
    """One row per frame: the input row's columns, frame_index, timestamp, is_keyframe, image.

    See :func:`sparkmm.ops.video.frames` for the options. ``max_frames`` defaults to
    10,000 per video (a row with reason ``too_many_frames`` marks where it stopped); a bad
    video gives one row with null frame columns and the reason in ``image.meta.error``.
    Output batches hold at most ``batch_rows`` frames or about ``batch_bytes`` of images.

    Example:
        >>> extract_frames(df, "video", fps=1.0).columns[-4:]                  # doctest: +SKIP
        ['frame_index', 'timestamp', 'is_keyframe', 'image']
    """
    _check_video_column(df, column)
    opts = _video.FrameOptions(fps=fps, mode=mode, size=tuple(size) if size is not None else None,
                               max_frames=max_frames, start=start, end=end, image_format=image_format,
                               quality=quality)
    schema = StructType(list(df.schema.fields) + _frame_fields())
    names = df.columns + FRAME_COLUMNS

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            values = batch.column(batch.schema.get_field_index(column))
            for rows, frames in _video.frame_batches(values, opts, batch_rows, batch_bytes):
                taken = batch.take(rows)
                yield pa.RecordBatch.from_arrays(list(taken.columns) + [frames.field(n) for n in FRAME_COLUMNS],
                                                 names=names)

    return df.mapInArrow(run, schema)


Named = Sequence[str] | Mapping[str, Column]


def _named(cols: Named) -> list[tuple[str, Column]]:
    if isinstance(cols, Mapping):
        return [(name, c) for name, c in cols.items()]
    return [(c, F.col(c)) for c in cols]


def summarize_frames(df: DataFrame, by: str | Sequence[str], scores: Named = (), labels: Named = (),
                     conditions: Mapping[str, Column] | None = None, timestamp: str = "timestamp",
                     frame_index: str = "frame_index", image: str = "image") -> DataFrame:
    """One row per video from frame-level results.

    Columns: ``by``, ``frames`` (decoded frames), ``<score>_mean`` / ``<score>_max`` for each
    score, ``<label>_majority`` (most frequent; the smallest on ties) for each label,
    ``<condition>_first`` / ``_last`` (timestamps) and ``_frames`` for each condition, and
    ``error`` (the video's reason, when its frames came from a bad video). Scores and labels
    are column names, or a mapping of output name to Column (``{"cat": F.col("pred.score")}``).

    Example:
        >>> summarize_frames(frames, "path", scores=["nsfw"], labels=["label"],   # doctest: +SKIP
        ...                  conditions={"person": F.col("label") == "person"})
    """
    by = [by] if isinstance(by, str) else list(by)
    is_frame = F.col(frame_index).isNotNull()
    aggs = [F.count(F.when(is_frame, F.lit(1))).alias("frames")]
    for name, c in _named(scores):
        aggs += [F.avg(F.when(is_frame, c)).alias(f"{name}_mean"), F.max(F.when(is_frame, c)).alias(f"{name}_max")]
    for name, c in _named(labels):
        aggs.append(F.mode(F.when(is_frame, c), deterministic=True).alias(f"{name}_majority"))
    for name, cond in (conditions or {}).items():
        hit = is_frame & cond
        ts = F.when(hit, F.col(timestamp))
        aggs += [F.min(ts).alias(f"{name}_first"), F.max(ts).alias(f"{name}_last"),
                 F.count(F.when(hit, F.lit(1))).alias(f"{name}_frames")]
    if image in df.columns:
        aggs.append(F.first(F.col(image).getField("meta").getField("error"), ignorenulls=True).alias("error"))
    return df.groupBy(*by).agg(*aggs)
