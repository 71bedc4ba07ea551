"""Labelling a Delta table in place: ``add_columns`` (see :mod:`sparkmm.io.delta`).

Each data file of the snapshot is relabelled by one Spark task; the driver commits every
remove and add with the evolved schema as one version, guarded by the version it read.

Example:
    >>> import sparkmm, pandas as pd
    >>> sparkmm.delta.add_columns(spark, "out/t", lambda df: pd.DataFrame({"n": df["jpg"].str.len()}),
    ...                           ["jpg"], "n long")                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import StructType

from sparkmm.io.delta import WriteResult, _local, log


def add_columns(spark: SparkSession, path: str, fn: Callable[[Any], Any], input_columns: list[str],
                output_schema: str | StructType, batch_format: str = "pandas",
                storage_options: dict[str, str] | None = None) -> WriteResult:
    """Label a table in place: new columns computed per data file, committed once.

    One Spark task per data file of the current snapshot calls ``fn`` on that file's
    ``input_columns`` (a pandas DataFrame, or a pyarrow Table with ``batch_format="arrow"``)
    and writes the file back with the new columns, rows in the same order; no shuffle, no
    join. The driver then commits every remove and add with the evolved schema in one
    transaction, which fails with ``ConcurrentModificationError`` if the table changed since
    it was read (nothing is committed then, and the new files are deleted).

    Example:
        >>> add_columns(spark, "out/t", lambda df: pd.DataFrame({"n": df["jpg"].str.len()}),
        ...             ["jpg"], "n long")                                   # doctest: +SKIP
    """
    from deltalake import DeltaTable

    from sparkmm.io import delta_log

    if batch_format not in ("pandas", "arrow"):
        raise ValueError(f"batch_format must be 'pandas' or 'arrow', got {batch_format!r}")
    local = _local(path)
    if local is None:
        raise NotImplementedError(f"add_columns labels local tables here; object storage comes later: {path}")
    table = DeltaTable(local, storage_options=storage_options)
    read_version = table.version()
    current = pa.schema(table.schema().to_arrow())
    parts = list(table.metadata().partition_columns)
    out = output_schema if isinstance(output_schema, StructType) else StructType.fromDDL(output_schema)
    out_arrow = to_arrow_schema(out, timezone="UTC")
    missing = [c for c in input_columns if c not in current.names]
    if missing:
        raise ValueError(f"input columns {missing} are not in the table (columns: {current.names})")
    clash = [f.name for f in out_arrow if f.name in current.names]
    if clash:
        raise ValueError(f"columns {clash} exist already; use merge_columns to update them")
    new_schema = pa.schema(list(current) + [f.with_nullable(True) for f in out_arrow])

    files = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    write_dir = f"sparkmm-label-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    part_types = {c: current.field(c).type for c in parts}
    tasks = [(i, unquote(f["path"]), json.dumps({c: f.get(f"partition.{c}") for c in parts}))
             for i, f in enumerate(files)]
    if not tasks:
        raise ValueError(f"{path} has no data files to label")

    def label_files(batches):
        for batch in batches:
            for i, rel, values in zip(*[batch.column(n).to_pylist() for n in ("idx", "path", "partition")]):
                done = _label_one(local, write_dir, i, rel, json.loads(values), part_types, input_columns,
                                  fn, batch_format, out_arrow)
                yield pa.RecordBatch.from_pylist([done], schema=_LABELLED)

    plan = spark.createDataFrame(tasks, "idx long, path string, partition string")
    results = (plan.repartitionByRange(len(tasks), "idx")  # one task per file
               .mapInArrow(label_files, "idx long, old string, new string, size long, rows long")
               .collect())
    written = Path(local) / write_dir
    try:
        if sorted(r.idx for r in results) != list(range(len(tasks))):
            raise RuntimeError(f"labelled {len(results)} of {len(tasks)} files")
        by_idx = {r.idx: r for r in results}
        actions = [delta_log.metadata_action(table, new_schema)]
        for i, f in enumerate(files):
            r = by_idx[i]
            pv = {c: f.get(f"partition.{c}") for c in parts}
            actions.append(delta_log.remove_action(unquote(f["path"]), f["size_bytes"], pv))
            actions.append(delta_log.add_action(r.new, r.size, pv, r.rows))
        version = delta_log.commit(local, read_version, actions, "ADD COLUMNS",
                                   {"columns": [f.name for f in out_arrow], "sparkmm": "add_columns"})
    except BaseException:
        shutil.rmtree(written, ignore_errors=True)
        raise
    log.info("add_columns %s: %d files relabelled, version %d (read version %d)", path, len(files), version,
             read_version)
    return WriteResult("deltalake", version, len(files))


_LABELLED = pa.schema([("idx", pa.int64()), ("old", pa.string()), ("new", pa.string()), ("size", pa.int64()),
                       ("rows", pa.int64())])


def _label_one(table: str, write_dir: str, idx: int, rel: str, values: dict, part_types: dict,
               input_columns: list[str], fn: Callable[[Any], Any], batch_format: str,
               out_schema: pa.Schema) -> dict[str, Any]:
    data = pq.read_table(os.path.join(table, rel))
    inputs = {}
    for c in input_columns:
        if c in part_types:  # partition values live in the log, not in the file
            inputs[c] = pa.array([values.get(c)] * data.num_rows, pa.string()).cast(part_types[c])
        else:
            inputs[c] = data.column(c) if c in data.column_names else pa.nulls(data.num_rows)
    batch = pa.table(inputs)
    result = fn(batch.to_pandas() if batch_format == "pandas" else batch)
    if isinstance(result, dict):
        result = pa.table(result)
    elif not isinstance(result, (pa.Table, pa.RecordBatch)):
        result = pa.Table.from_pandas(result, preserve_index=False)
    if result.num_rows != data.num_rows:
        raise ValueError(f"fn returned {result.num_rows} rows for {data.num_rows} in {rel}; it must keep every row")
    missing = [f.name for f in out_schema if f.name not in result.column_names]
    if missing:
        raise ValueError(f"fn did not return the output columns {missing}")
    for f in out_schema:
        data = data.append_column(f.name, result.column(f.name).cast(f.type))
    new_rel = f"{write_dir}/{uuid.uuid4().hex}-{idx:06d}.parquet"
    target = os.path.join(table, new_rel)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    pq.write_table(data, target, compression="snappy")
    return {"idx": idx, "old": rel, "new": new_rel, "size": os.path.getsize(target), "rows": data.num_rows}
