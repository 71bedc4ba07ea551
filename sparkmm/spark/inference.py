"""Inference stages: pandas-chunk functions and operator packages as mapInArrow stages, with GPU profiles.

A stage that asks for GPUs runs under a Spark task resource profile (``mapInArrow(..., profile=...)``),
so only its tasks hold a GPU; CPU stages keep the default profile. Spark cannot run two profiles in
one stage, so a shuffle boundary separates a GPU stage from the CPU stages around it. Local mode
cannot schedule task resources: there the profile is dropped (logged once) and the stage runs as is.

Example:
    >>> import pandas as pd
    >>> out = df.mm.apply_chunk(lambda p: p.assign(n=p.x * 2), "x long, n long", batch_rows=512)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


def profiles_supported(spark: SparkSession) -> bool:
    """Whether the cluster can schedule task resource profiles (not plain local mode)."""
    try:
        master = spark.sparkContext.master
    except Exception:  # Spark Connect: the server decides; ask for the profile
        return True
    return not (master.startswith("local") and not master.startswith("local-cluster"))


def gpu_profile(spark: SparkSession, gpus: float = 1.0, cpus: int = 1) -> Any | None:
    """A task resource profile asking for ``gpus`` GPUs (fractions share one) and ``cpus`` cores per task.

    Returns None, after logging it once, where profiles cannot be scheduled (local mode).

    Example:
        >>> gpu_profile(spark, 0.5)                              # doctest: +SKIP
        <pyspark.resource.profile.ResourceProfile object ...>
    """
    if gpus <= 0:
        return None
    if not profiles_supported(spark):
        if "local" not in _WARNED:
            _WARNED.add("local")
            log.warning("local mode cannot schedule task resource profiles: GPU stages run without one "
                        "(models use a visible GPU if any, else the CPU)")
        return None
    from pyspark.resource import ResourceProfileBuilder, TaskResourceRequests

    return ResourceProfileBuilder().require(TaskResourceRequests().cpus(cpus).resource("gpu", gpus)).build


def rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Regroup a stream of record batches into tables of ``rows`` rows (the last may be shorter).

    Example:
        >>> bs = [pa.record_batch({"x": list(range(n))}) for n in (3, 4, 1)]
        >>> [t.num_rows for t in rechunk(iter(bs), 3)]
        [3, 3, 2]
    """
    if rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {rows}")
    pending: list[pa.RecordBatch] = []
    count = 0
    for b in batches:
        while b.num_rows:
            take = min(rows - count, b.num_rows)
            pending.append(b.slice(0, take))
            count += take
            b = b.slice(take)
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


def pandas_stage(fn: Callable[[Any], Any], schema: pa.Schema, batch_rows: int,
                 what: str) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A mapInArrow function calling ``fn(pandas.DataFrame) -> pandas.DataFrame`` on chunks of ``batch_rows``."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        call = fn() if isinstance(fn, _Lazy) else fn
        for table in rechunk(batches, batch_rows):
            try:
                out = call(table.to_pandas())
            except Exception as e:
                raise RuntimeError(f"{what} failed on a chunk of {table.num_rows} rows: {type(e).__name__}: {e}") from e
            missing = [n for n in schema.names if n not in out.columns]
            if missing:
                raise RuntimeError(f"{what} returned no column(s) {missing}; declared output: {schema}")
            result = pa.Table.from_pandas(out[schema.names], schema=schema, preserve_index=False)
            yield from result.to_batches()

    return run


class _Lazy:
    """A callable built on the worker, once per process (a model-holding class instance)."""

    def __init__(self, key: tuple, factory: Callable[[], Callable[[Any], Any]]) -> None:
        self.key, self.factory = key, factory

    def __call__(self) -> Callable[[Any], Any]:
        from sparkmm.models.cache import load_once

        return load_once(self.key, self.factory)


def run_stage(df: DataFrame, fn: Callable[[Any], Any], schema: str | pa.Schema, batch_rows: int = 1024,
              gpus: float = 0.0, what: str = "stage") -> DataFrame:
    """``df`` through ``fn`` on pandas chunks, as one mapInArrow stage (a GPU stage when ``gpus`` > 0)."""
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    if isinstance(schema, str):
        struct = df.sparkSession.createDataFrame([], schema).schema
        arrow = to_arrow_schema(struct)
    else:
        arrow, struct = schema, from_arrow_schema(schema)
    return _map(df, pandas_stage(fn, arrow, batch_rows, what), struct, gpus)


def _map(df: DataFrame, fn: Callable[..., Any], schema: Any, gpus: float) -> DataFrame:
    """mapInArrow, under a GPU profile when ``gpus`` > 0 and the cluster can schedule it."""
    profile = gpu_profile(df.sparkSession, gpus) if gpus > 0 else None
    if profile is None:
        return df.mapInArrow(fn, schema)
    n = max(1, df.rdd.getNumPartitions())  # one profile per Spark stage: cut the plan before and after
    return df.repartition(n).mapInArrow(fn, schema, profile=profile).repartition(n)


def model_stage(df: DataFrame, operator: str, column: str, output: str, gpus: float = 1.0,
                **kwargs: Any) -> DataFrame:
    """Add ``output`` = a model operator (``"image.embed"``, ``"audio.transcribe"``, ...) over ``column``,
    as a stage of its own under a GPU resource profile (``gpus`` per task; 0 = a CPU stage).

    The same kernel as the Column accessor runs on each Arrow batch; only the scheduling differs:
    the rest of the plan keeps the default profile and never holds a GPU. A mapInArrow stage takes
    whole rows, so every column travels through it: select what later steps need before the stage.
    """
    from pyspark.sql.types import StructField, StructType

    from sparkmm.ops.registry import OPERATORS

    op = OPERATORS.get(operator)
    if op is None:
        known = ", ".join(sorted(k for k, o in OPERATORS.items() if o.wiring == "udf"))
        raise ValueError(f"unknown operator {operator!r}; known: {known}")
    if op.wiring != "udf":
        raise ValueError(f"{operator} is a {op.wiring} operator: use the Column accessor, not a model stage")
    if output in df.columns:
        raise ValueError(f"column {output!r} already exists")
    kernel_args = op.unflatten(op.bind(**kwargs))
    out_type = df.sparkSession.createDataFrame([], f"x {op.output_type}").schema["x"].dataType
    schema = StructType(list(df.schema.fields) + [StructField(output, out_type, True)])  # add() would mutate df's
    index = df.columns.index(column)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            result = op.kernel(b.column(index), **kernel_args)
            yield pa.RecordBatch.from_arrays(list(b.columns) + [result], names=list(b.schema.names) + [output])

    return _map(df, run, schema, gpus)
