"""Delta Lake sink and source, with or without Delta's jars on the Spark classpath.

Two engines, one table format:

- ``delta-spark``: when the session has Delta's SQL extension (Databricks, or a cluster
  started with ``spark-conf/delta.conf``), Spark writes and reads ``format("delta")``.
- ``deltalake``: otherwise, Spark tasks write Parquet files into a fresh directory of the
  table in parallel (Spark's commit protocol keeps exactly one attempt of each task), and
  the driver commits them all in a single Delta transaction with the ``deltalake``
  library. A failed job commits nothing; its files are orphans that ``VACUUM`` removes.

Example:
    >>> import sparkmm
    >>> result = df.mm.write_delta("out/images", mode="overwrite")     # doctest: +SKIP
    >>> result.engine, result.version                                  # doctest: +SKIP
    ('deltalake', 0)
    >>> sparkmm.delta.read(spark, "out/images", version=0).count()     # doctest: +SKIP
    12
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

log = logging.getLogger("sparkmm.delta")
MODES = ("append", "overwrite", "error", "ignore")


class SchemaMismatchError(ValueError):
    """An append would change the type of an existing column, or add columns without merge_schema."""


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the engine that ran, the table version it made (None: nothing written)."""

    engine: str
    version: int | None
    files: int


def engine(spark: SparkSession) -> str:
    """``"delta-spark"`` when Delta's jars and SQL extension are on the session, else ``"deltalake"``."""
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    return "delta-spark" if "DeltaSparkSessionExtension" in extensions else "deltalake"


def write(df: DataFrame, path: str, mode: str = "append", partition_by: list[str] | str | None = None,
          merge_schema: bool = True, storage_options: dict[str, str] | None = None) -> WriteResult:
    """Write ``df`` as a Delta table at ``path`` (see the module docstring); one commit."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    parts = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])
    missing = [c for c in parts if c not in df.columns]
    if missing:
        raise ValueError(f"partition_by columns {missing} are not in the frame (columns: {df.columns})")
    spark = df.sparkSession
    which = engine(spark)
    if which == "delta-spark":
        writer = df.write.format("delta").mode(mode).option("mergeSchema", str(merge_schema).lower())
        if parts:
            writer = writer.partitionBy(*parts)
        writer.save(path)
        version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]
        log.info("write_delta %s: engine=delta-spark mode=%s version=%s", path, mode, version)
        return WriteResult(which, version, -1)
    return _write_with_deltalake(df, path, mode, parts, merge_schema, storage_options)


def read(spark: SparkSession, path: str, version: int | None = None,
         storage_options: dict[str, str] | None = None) -> DataFrame:
    """Read a Delta table (a past ``version`` for time travel) as a Spark DataFrame."""
    if engine(spark) == "delta-spark":
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)
    from deltalake import DeltaTable

    dt = DeltaTable(path, version=version, storage_options=storage_options)
    schema = from_arrow_schema(pa.schema(dt.schema().to_arrow()))
    parts = dt.metadata().partition_columns
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    if not actions:
        return spark.createDataFrame([], schema)
    files = [_file_uri(path, a["path"]) for a in actions]
    data_schema = schema if not parts else type(schema)([f for f in schema.fields if f.name not in parts])
    df = spark.read.schema(data_schema).parquet(*files)
    if not parts:
        return df
    # Partition values live in the log, not in the files: attach them by the file's path in the table.
    rows = [(unquote(a["path"]), *[a.get(f"partition.{c}") for c in parts]) for a in actions]
    values = spark.createDataFrame(rows, ["_file", *parts])
    for c in parts:
        values = values.withColumn(c, F.col(c).cast(schema[c].dataType))
    root = os.path.abspath(_local(path) or path).rstrip("/")
    file_path = F.regexp_replace(F.url_decode(F.col("_metadata.file_path")), "^file:(//)?", "")
    df = df.withColumn("_file", F.substring(file_path, len(root) + 2, 1 << 20))
    return df.join(F.broadcast(values), "_file").select(*schema.fieldNames())


def merge_columns(spark: SparkSession, path: str, labels: DataFrame, on: str | list[str],
                  storage_options: dict[str, str] | None = None) -> WriteResult:
    """Add or update label columns of a table from ``labels`` (computed elsewhere), joined on ``on``.

    One commit; the new columns are added to the schema (nullable) and rows without a label
    read as null. Keys must be unique in ``labels``.
    """
    keys = [on] if isinstance(on, str) else list(on)
    missing = [k for k in keys if k not in labels.columns]
    if missing:
        raise ValueError(f"key columns {missing} are not in the labels (columns: {labels.columns})")
    label_cols = [c for c in labels.columns if c not in keys]
    if not label_cols:
        raise ValueError("labels has no column besides the key")
    dup = labels.groupBy(*keys).count().where("count > 1").first()
    if dup is not None:
        raise ValueError(f"labels has {dup['count']} rows for key {[dup[k] for k in keys]}; keys must be unique")
    set_clause = {c: f"s.`{c}`" for c in label_cols}
    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    if engine(spark) == "delta-spark":
        labels.createOrReplaceTempView("_sparkmm_labels")
        spark.conf.set("spark.databricks.delta.schema.autoMerge.enabled", "true")
        updates = ", ".join(f"t.`{c}` = {v}" for c, v in set_clause.items())
        spark.sql(f"MERGE INTO delta.`{path}` t USING _sparkmm_labels s ON {predicate} "
                  f"WHEN MATCHED THEN UPDATE SET {updates}")
        version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first()["version"]
        log.info("merge_columns %s: engine=delta-spark version=%s", path, version)
        return WriteResult("delta-spark", version, -1)

    from deltalake import DeltaTable

    table = DeltaTable(_local(path) or path, storage_options=storage_options)
    source = labels.toArrow()
    missing = [k for k in keys if k not in pa.schema(table.schema().to_arrow()).names]
    if missing:
        raise ValueError(f"key columns {missing} are not in the table at {path}")
    _merged_schema(pa.schema(table.schema().to_arrow()), source.schema, merge_schema=True)  # clear type errors
    metrics = (table.merge(source, predicate, source_alias="s", target_alias="t", merge_schema=True)
               .when_matched_update(updates=set_clause).execute())
    log.info("merge_columns %s: engine=deltalake version=%s metrics=%s", path, table.version(), metrics)
    return WriteResult("deltalake", table.version(), metrics.get("num_target_files_added", -1))


# ----------------------------------------------------------------------------- deltalake engine


def _file_uri(table: str, relative: str) -> str:
    rel = unquote(relative)
    if "://" in rel or rel.startswith("/"):
        return rel
    return f"{table.rstrip('/')}/{rel}"


def _local(path: str) -> str | None:
    if path.startswith("file:"):
        return unquote(path[len("file:"):]).replace("///", "/", 1) if path.startswith("file:///") else path[5:]
    return None if "://" in path else path


def _merged_schema(table: pa.Schema, new: pa.Schema, merge_schema: bool) -> pa.Schema:
    existing = {f.name: f for f in table}
    for f in new:
        old = existing.get(f.name)
        if old is not None and not _same_type(old.type, f.type):
            raise SchemaMismatchError(
                f"column {f.name!r} is {old.type} in the table but {f.type} in the data; "
                "cast it, or write to a new column")
    added = [f for f in new if f.name not in existing]
    if added and not merge_schema:
        raise SchemaMismatchError(f"new columns {[f.name for f in added]} need merge_schema=True")
    return pa.schema(list(table) + [f.with_nullable(True) for f in added])


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    norm = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary(), pa.string_view(): pa.string(),
            pa.binary_view(): pa.binary()}
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        return a.num_fields == b.num_fields and all(
            a.field(i).name == b.field(i).name and _same_type(a.field(i).type, b.field(i).type)
            for i in range(a.num_fields))
    if (pa.types.is_list(a) or pa.types.is_large_list(a)) and (pa.types.is_list(b) or pa.types.is_large_list(b)):
        return _same_type(a.value_type, b.value_type)
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b):
        return True
    return norm.get(a, a) == norm.get(b, b)


def _write_with_deltalake(df: DataFrame, path: str, mode: str, parts: list[str], merge_schema: bool,
                          storage_options: dict[str, str] | None) -> WriteResult:
    from deltalake import DeltaTable, Schema
    from deltalake.transaction import create_table_with_add_actions

    local = _local(path)
    if local is None:
        raise NotImplementedError(f"the deltalake engine writes local tables here; object storage comes "
                                  f"with sparkmm's object-storage support: {path}")
    exists = DeltaTable.is_deltatable(local, storage_options)
    if exists and mode == "error":
        raise FileExistsError(f"Delta table already exists at {path} (mode='error')")
    if exists and mode == "ignore":
        log.info("write_delta %s: engine=deltalake mode=ignore: table exists, nothing written", path)
        return WriteResult("deltalake", None, 0)

    arrow_schema = to_arrow_schema(df.schema, timezone="UTC")
    table = DeltaTable(local, storage_options=storage_options) if exists else None
    added: list[pa.Field] = []
    if table is not None:
        if table.metadata().partition_columns != parts and (mode == "append" or parts):
            raise SchemaMismatchError(f"table is partitioned by {table.metadata().partition_columns}, "
                                      f"the write by {parts}")
        if mode == "append":
            current = pa.schema(table.schema().to_arrow())
            arrow_schema = _merged_schema(current, arrow_schema, merge_schema)
            added = [f for f in arrow_schema if f.name not in current.names]

    write_id = f"sparkmm-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"
    target = Path(local) / write_id
    spark = df.sparkSession
    previous = spark.conf.get("spark.sql.parquet.outputTimestampType", None)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # what Delta readers expect
    try:
        writer = df.write.mode("error").option("compression", "snappy")
        if parts:
            writer = writer.partitionBy(*parts)
        writer.parquet(str(target))
        adds = _add_actions(Path(local), target, parts)
        schema = Schema.from_arrow(arrow_schema)
        if table is None:
            create_table_with_add_actions(local, schema, adds, mode="error", partition_by=parts or None,
                                          storage_options=storage_options)
        else:
            if added:
                # deltalake's write transaction cannot change the schema: evolve it first. Readers
                # between the two commits see the old rows with the new, empty columns.
                table.alter.add_columns(list(Schema.from_arrow(pa.schema(added)).fields))
            table.create_write_transaction(adds, mode=mode, schema=schema, partition_by=parts or None)
    except BaseException:
        # Nothing was committed: drop this write's files (VACUUM would find them too).
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        if previous is None:
            spark.conf.unset("spark.sql.parquet.outputTimestampType")
        else:
            spark.conf.set("spark.sql.parquet.outputTimestampType", previous)
    version = DeltaTable(local, storage_options=storage_options).version()
    log.info("write_delta %s: engine=deltalake mode=%s version=%s files=%d", path, mode, version, len(adds))
    return WriteResult("deltalake", version, len(adds))


def _add_actions(table: Path, target: Path, parts: list[str]) -> list:
    from deltalake.transaction import AddAction

    adds = []
    for file in sorted(target.rglob("*.parquet")):
        rel = file.relative_to(table).as_posix()
        values: dict[str, str | None] = {}
        for segment in file.relative_to(target).parts[:-1]:
            key, _, value = segment.partition("=")
            value = unquote(value)
            values[key] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
        meta = pq.read_metadata(file)
        stat = file.stat()
        adds.append(AddAction(rel, stat.st_size, {c: values.get(c) for c in parts}, int(stat.st_mtime * 1000),
                              True, json.dumps({"numRecords": meta.num_rows})))
    return adds
