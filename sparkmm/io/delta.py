"""Delta Lake sink and source, with or without Delta's jars on the Spark classpath.

Two engines, one table format:

- ``delta-spark``: when the session has Delta's SQL extension (Databricks, or a cluster
  started with ``spark-conf/delta.conf``), Spark writes and reads ``format("delta")``.
- ``deltalake``: otherwise, Spark tasks write Parquet files into a fresh directory of the
  table in parallel (Spark's commit protocol keeps exactly one attempt of each task), and
  the driver commits them all in a single Delta transaction with the ``deltalake``
  library. A failed job commits nothing; its files are orphans that ``VACUUM`` removes.
  On object stores (``s3://``, ``oss://``, ``tos://`` with ``storage_options``) the tasks
  write Parquet objects themselves and read them back the same way, so no hadoop-aws is
  needed; deltalake commits there without a lock (``AWS_S3_ALLOW_UNSAFE_RENAME``), so one
  writer per table at a time, and an append that adds columns is two commits there.

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
from pyspark.sql.types import StructType

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

    local = _local(path)
    dt = DeltaTable(local or path, version=version,
                    storage_options=None if local else deltalake_options(storage_options))
    schema = from_arrow_schema(pa.schema(dt.schema().to_arrow()))
    parts = dt.metadata().partition_columns
    actions = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
    if not actions:
        return spark.createDataFrame([], schema)
    if not local:
        return _read_store(spark, path, schema, parts, actions, storage_options)
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
    location = local or path
    dl_options = None if local else deltalake_options(storage_options)
    exists = DeltaTable.is_deltatable(location, dl_options)
    if exists and mode == "error":
        raise FileExistsError(f"Delta table already exists at {path} (mode='error')")
    if exists and mode == "ignore":
        log.info("write_delta %s: engine=deltalake mode=ignore: table exists, nothing written", path)
        return WriteResult("deltalake", None, 0)

    arrow_schema = to_arrow_schema(df.schema, timezone="UTC")
    table = DeltaTable(location, storage_options=dl_options) if exists else None
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
    try:
        files = (_spark_write_local(df, Path(local), write_id, parts) if local
                 else _write_to_store(df, path, write_id, parts, storage_options))
        if table is None:
            create_table_with_add_actions(location, Schema.from_arrow(arrow_schema), [_add(f) for f in files],
                                          mode="error", partition_by=parts or None, storage_options=dl_options)
        elif added and local:
            # deltalake's write transaction cannot change the schema: commit schema and files ourselves.
            _commit_with_schema(local, files, added, merge_schema, mode, storage_options)
        else:
            if added:  # object stores: evolve first (a second commit; readers in between see null columns)
                table.alter.add_columns(list(Schema.from_arrow(pa.schema(added)).fields))
            table.create_write_transaction([_add(f) for f in files], mode=mode,
                                           schema=Schema.from_arrow(arrow_schema), partition_by=parts or None)
    except BaseException:
        # Nothing was committed: drop this write's files (VACUUM would find them too).
        if local:
            shutil.rmtree(Path(local) / write_id, ignore_errors=True)
        else:
            _delete_prefix(path, write_id, storage_options)
        raise
    version = DeltaTable(location, storage_options=dl_options).version()
    log.info("write_delta %s: engine=deltalake mode=%s version=%s files=%d", path, mode, version, len(files))
    return WriteResult("deltalake", version, len(files))


def _spark_write_local(df: DataFrame, table: Path, write_id: str, parts: list[str]) -> list["_File"]:
    spark = df.sparkSession
    previous = spark.conf.get("spark.sql.parquet.outputTimestampType", None)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")  # what Delta readers expect
    try:
        writer = df.write.mode("error").option("compression", "snappy")
        if parts:
            writer = writer.partitionBy(*parts)
        writer.parquet(str(table / write_id))
    finally:
        if previous is None:
            spark.conf.unset("spark.sql.parquet.outputTimestampType")
        else:
            spark.conf.set("spark.sql.parquet.outputTimestampType", previous)
    return _written_files(table, table / write_id, parts)


# ----------------------------------------------------------------------------- object stores

_WRITTEN = "path string, size long, rows long, partition string"


def deltalake_options(storage_options: dict | None) -> dict[str, str]:
    """sparkmm storage options in the spelling deltalake's object store expects."""
    from sparkmm.ops import s3
    from sparkmm.ops.storage import StorageOptions

    o = StorageOptions.of(storage_options)
    out = {"AWS_REGION": str(o.get("region_name") or "us-east-1"),
           # delta-rs needs a lock or conditional puts for concurrent writers on S3; sparkmm commits from
           # one driver per table (see the note in the module docstring).
           "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    endpoint = o.get("endpoint_url")
    if endpoint:
        out["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    if o.flag("anonymous"):
        out["AWS_SKIP_SIGNATURE"] = "true"
        return out
    if o.get("role_arn") or o.get("profile"):  # resolve to (temporary) keys with sparkmm's own client
        creds = s3.client(o)._request_signer._credentials.get_frozen_credentials()
        out.update(AWS_ACCESS_KEY_ID=creds.access_key, AWS_SECRET_ACCESS_KEY=creds.secret_key)
        if creds.token:
            out["AWS_SESSION_TOKEN"] = creds.token
        return out
    for ours, theirs in (("aws_access_key_id", "AWS_ACCESS_KEY_ID"), ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
                         ("aws_session_token", "AWS_SESSION_TOKEN")):
        if o.get(ours):
            out[theirs] = str(o[ours])
    return out


def _write_to_store(df: DataFrame, table_url: str, write_id: str, parts: list[str],
                    storage_options: dict | None) -> list["_File"]:
    """Each task writes its rows as Parquet objects (one per partition value) under the table."""
    from urllib.parse import quote

    def task(batches):
        import io as _io

        from sparkmm.ops import s3
        from sparkmm.ops.storage import StorageOptions

        batches = list(batches)
        if not batches or sum(b.num_rows for b in batches) == 0:
            return
        data = pa.Table.from_batches(batches)
        groups = [((), data)]
        if parts:
            keys = list(zip(*[data.column(c).to_pylist() for c in parts]))
            groups = []
            for combo in dict.fromkeys(keys):
                mask = pa.array([k == combo for k in keys])
                groups.append((combo, data.filter(mask).drop_columns(parts)))
        client = s3.client(StorageOptions.of(storage_options))
        bucket, base = s3.split_url(table_url.rstrip("/") + "/_")
        base = base[:-2]
        for combo, rows in groups:
            dirs = "".join(f"{c}={'__HIVE_DEFAULT_PARTITION__' if v is None else quote(str(v), safe='')}/"
                           for c, v in zip(parts, combo))
            rel = f"{write_id}/{dirs}part-{uuid.uuid4().hex}.snappy.parquet"
            buf = _io.BytesIO()
            pq.write_table(rows, buf, compression="snappy")
            client.put_object(Bucket=bucket, Key=f"{base}/{rel}" if base else rel, Body=buf.getvalue())
            values = {c: (None if v is None else str(v)) for c, v in zip(parts, combo)}
            yield pa.RecordBatch.from_pylist([{"path": rel, "size": buf.tell(), "rows": rows.num_rows,
                                               "partition": json.dumps(values)}])

    rows = df.mapInArrow(task, _WRITTEN).collect()
    return [_File(r.path, r.size, json.loads(r.partition), r.rows) for r in rows]


def _delete_prefix(table_url: str, write_id: str, storage_options: dict | None) -> None:
    from sparkmm.ops import s3
    from sparkmm.ops.storage import StorageOptions

    try:
        client = s3.client(StorageOptions.of(storage_options))
        bucket, key = s3.split_url(f"{table_url.rstrip('/')}/{write_id}/")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
    except Exception:  # best effort: VACUUM removes what is left
        log.warning("could not delete the files of a failed write under %s/%s", table_url, write_id)


def _read_store(spark: SparkSession, path: str, schema: StructType, parts: list[str], actions: list[dict],
                storage_options: dict | None) -> DataFrame:
    """Read the snapshot's Parquet objects in Python workers (no hadoop-aws needed)."""
    arrow_schema = to_arrow_schema(schema, timezone="UTC")
    table_url = path.rstrip("/")

    def task(batches):
        import io as _io

        from sparkmm.ops import url as U
        from sparkmm.ops.storage import StorageOptions

        options = U.FetchOptions(storage_options=StorageOptions.of(storage_options))
        for batch in batches:
            for rel, values in zip(batch.column("file").to_pylist(), batch.column("partition").to_pylist()):
                data = pq.read_table(_io.BytesIO(U.fetch_one(f"{table_url}/{rel}", options)))
                values = json.loads(values)
                columns = []
                for f in arrow_schema:
                    if f.name in parts:
                        col = pa.array([values.get(f.name)] * data.num_rows, pa.string()).cast(f.type)
                    elif f.name in data.column_names:
                        col = data.column(f.name).cast(f.type)
                    else:  # written before the column was added
                        col = pa.nulls(data.num_rows, f.type)
                    columns.append(col)
                yield from pa.table(columns, schema=arrow_schema).to_batches()

    files = [(unquote(a["path"]), json.dumps({c: a.get(f"partition.{c}") for c in parts})) for a in actions]
    listing = spark.createDataFrame(files, "file string, partition string")
    return listing.repartition(max(1, len(files))).mapInArrow(task, schema)


@dataclass(frozen=True)
class _File:
    path: str  # relative to the table
    size: int
    partition_values: dict[str, str | None]
    num_records: int


def _add(f: _File):
    from deltalake.transaction import AddAction

    return AddAction(f.path, f.size, f.partition_values, int(time.time() * 1000), True,
                     json.dumps({"numRecords": f.num_records}))


def _written_files(table: Path, target: Path, parts: list[str]) -> list[_File]:
    files = []
    for file in sorted(target.rglob("*.parquet")):
        values: dict[str, str | None] = {}
        for segment in file.relative_to(target).parts[:-1]:
            key, _, value = segment.partition("=")
            value = unquote(value)
            values[key] = None if value == "__HIVE_DEFAULT_PARTITION__" else value
        files.append(_File(file.relative_to(table).as_posix(), file.stat().st_size,
                           {c: values.get(c) for c in parts}, pq.read_metadata(file).num_rows))
    return files


def _commit_with_schema(local: str, files: list[_File], added: list[pa.Field], merge_schema: bool, mode: str,
                        storage_options: dict[str, str] | None, attempts: int = 5) -> int:
    from deltalake import DeltaTable

    from sparkmm.io import delta_log

    for attempt in range(attempts):
        table = DeltaTable(local, storage_options=storage_options)
        current = pa.schema(table.schema().to_arrow())
        schema = _merged_schema(current, pa.schema(added), merge_schema)  # re-checked against what is there now
        actions = [delta_log.metadata_action(table, schema)]
        actions += [delta_log.add_action(f.path, f.size, f.partition_values, f.num_records) for f in files]
        try:
            return delta_log.commit(local, table.version(), actions, "WRITE",
                                    {"mode": "Append", "mergeSchema": True}, blind_append=False)
        except delta_log.ConcurrentModificationError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
