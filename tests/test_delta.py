"""Delta tables written by Spark tasks and committed with deltalake, read back by deltalake and Spark."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

import sparkmm
from sparkmm.delta import SchemaMismatchError


def _rows(df, *cols):
    return sorted(tuple(r) for r in df.select(*cols).collect())


def _run_script(tmp_path, source: str, *args: str) -> subprocess.CompletedProcess:
    """Run a Spark job in its own Python process (its own session and settings)."""
    script = tmp_path / "job.py"
    script.write_text(source)
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _delta_rows(path, *cols, version=None):
    table = pa.table(DeltaTable(path, version=version).to_pyarrow_table())
    return sorted(zip(*[table.column(c).to_pylist() for c in cols]))


def test_engine_without_delta_jars_is_deltalake(spark):
    assert sparkmm.delta.engine(spark) == "deltalake"


DELTA_SPARK_SCRIPT = """
import sys
import sparkmm
spark = sparkmm.session("delta")
assert sparkmm.delta.engine(spark) == "delta-spark"
result = spark.range(20).mm.write_delta(sys.argv[1], mode="overwrite")
print("ENGINE", result.engine, result.version)
"""


def _delta_jars() -> list[str]:
    import glob

    return glob.glob(os.path.expanduser("~/.ivy2*/jars/io.delta_delta-spark_2.13-*.jar"))


@pytest.mark.skipif(not _delta_jars(), reason="Delta's jars (io.delta:delta-spark) are not on this machine: Maven "
                                              "Central is unreachable here; spark-conf/delta.conf fetches them")
def test_native_delta_spark_engine_writes_tables_deltalake_reads(tmp_path):
    path = str(tmp_path / "native")
    proc = _run_script(tmp_path, DELTA_SPARK_SCRIPT, path)
    assert "ENGINE delta-spark 0" in proc.stdout
    assert _delta_rows(path, "id") == [(i,) for i in range(20)]


def test_write_append_read_and_time_travel(spark, tmp_path):
    path = str(tmp_path / "t")
    df = spark.range(100).select("id", (F.col("id") * 1.5).alias("x"), F.concat(F.lit("r"), "id").alias("name"))
    first = df.mm.write_delta(path, mode="overwrite")
    assert (first.engine, first.version) == ("deltalake", 0) and first.files >= 1
    second = spark.range(100, 150).select("id", (F.col("id") * 1.5).alias("x"),
                                          F.concat(F.lit("r"), "id").alias("name")).mm.write_delta(path)
    assert second.version == 1
    want = [(i, i * 1.5, f"r{i}") for i in range(150)]
    assert _delta_rows(path, "id", "x", "name") == want
    assert _rows(sparkmm.delta.read(spark, path), "id", "x", "name") == want
    assert sparkmm.delta.read(spark, path, version=0).count() == 100
    # Spark reading exactly the snapshot's files agrees too
    assert spark.read.parquet(*DeltaTable(path).file_uris()).count() == 150


def test_modes_error_ignore_overwrite(spark, tmp_path):
    path = str(tmp_path / "t")
    spark.range(5).mm.write_delta(path, mode="error")
    with pytest.raises(FileExistsError, match="already exists"):
        spark.range(5).mm.write_delta(path, mode="error")
    assert spark.range(7).mm.write_delta(path, mode="ignore").version is None
    assert DeltaTable(path).version() == 0
    spark.range(3).mm.write_delta(path, mode="overwrite")
    assert _delta_rows(path, "id") == [(0,), (1,), (2,)]
    with pytest.raises(ValueError, match="mode must be one of"):
        spark.range(1).mm.write_delta(path, mode="upsert")


def test_partitioned_tables(spark, tmp_path):
    path = str(tmp_path / "p")
    df = spark.range(30).select("id", (F.col("id") % 3).cast("string").alias("shard"), F.lit(None).cast("int").alias("n"))
    df.mm.write_delta(path, mode="overwrite", partition_by=["shard"])
    dt = DeltaTable(path)
    assert dt.metadata().partition_columns == ["shard"]
    assert _delta_rows(path, "id", "shard") == [(i, str(i % 3)) for i in range(30)]
    assert _rows(sparkmm.delta.read(spark, path), "id", "shard") == [(i, str(i % 3)) for i in range(30)]
    with pytest.raises(SchemaMismatchError, match="partitioned by"):
        df.mm.write_delta(path, partition_by=None)


def test_schema_evolution_adds_nullable_columns(spark, tmp_path):
    path = str(tmp_path / "e")
    spark.range(3).mm.write_delta(path)
    evolved = spark.range(3, 5).withColumn("score", F.col("id") / 10).withColumn("tag", F.lit("ok")).mm.write_delta(path)
    assert evolved.version == 1 and DeltaTable(path).version() == 1  # schema and rows in one commit
    assert _delta_rows(path, "id", "score", "tag") == [(0, None, None), (1, None, None), (2, None, None),
                                                       (3, 0.3, "ok"), (4, 0.4, "ok")]
    assert _rows(sparkmm.delta.read(spark, path), "id", "score", "tag") == _delta_rows(path, "id", "score", "tag")
    with pytest.raises(SchemaMismatchError, match="merge_schema=True"):
        spark.range(1).withColumn("other", F.lit(1)).mm.write_delta(path, merge_schema=False)
    with pytest.raises(SchemaMismatchError, match="'score' is double in the table but string in the data"):
        spark.range(1).withColumn("score", F.lit("high")).mm.write_delta(path)


def test_failed_job_leaves_no_version_and_no_files(spark, tmp_path):
    path = str(tmp_path / "f")
    spark.range(10).mm.write_delta(path)
    before = sorted(os.listdir(path))

    @F.udf("long")
    def explode_on_17(i):
        if i == 17:
            raise RuntimeError("boom on row 17")
        return i

    with pytest.raises(Exception, match="boom on row 17"):
        spark.range(10, 20, numPartitions=4).select(explode_on_17("id").alias("id")).mm.write_delta(path)
    assert DeltaTable(path).version() == 0
    assert sorted(os.listdir(path)) == before
    assert _delta_rows(path, "id") == [(i,) for i in range(10)]


def test_image_values_round_trip(spark, tmp_path, photo_dir):
    path = str(tmp_path / "imgs")
    df = (sparkmm.read.files(spark, str(photo_dir / "*.png"))
          .withColumn("thumb", F.col("path").image.load().image.resize((16, 16)).image.encode("PNG")))
    df.mm.write_delta(path)
    back = {r.path: r.thumb for r in sparkmm.delta.read(spark, path).collect()}
    assert back == {r.path: r.thumb for r in df.collect()}


def test_concurrent_appends_both_land_with_linear_versions(spark, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    path = str(tmp_path / "c")
    spark.range(0).mm.write_delta(path)

    def append(start):
        return spark.range(start, start + 50).mm.write_delta(path).version

    with ThreadPoolExecutor(2) as pool:
        versions = sorted(pool.map(append, [1000, 2000]))
    assert versions == [1, 2]
    assert [h["version"] for h in DeltaTable(path).history()][:3] == [2, 1, 0]
    assert _delta_rows(path, "id") == [(i,) for i in list(range(1000, 1050)) + list(range(2000, 2050))]


RETRY_SCRIPT = """
import sys
import sparkmm
from pyspark import TaskContext
from pyspark.sql import functions as F
spark = sparkmm.session(**{"spark.master": "local[2,3]"})  # up to 3 attempts per task

@F.udf("long")
def flaky(i):
    ctx = TaskContext.get()
    if ctx.partitionId() == 1 and ctx.attemptNumber() == 0 and i % 10 == 5:
        raise RuntimeError("injected failure on the first attempt")
    return i

result = spark.range(0, 40, numPartitions=4).select(flaky("id").alias("id")).mm.write_delta(sys.argv[1])
print("VERSION", result.version)
"""


def test_retried_tasks_write_no_duplicates(tmp_path):
    path = str(tmp_path / "r")
    proc = _run_script(tmp_path, RETRY_SCRIPT, path)
    assert "injected failure" in proc.stderr  # the first attempt really failed
    assert "VERSION 0" in proc.stdout
    assert _delta_rows(path, "id") == [(i,) for i in range(40)]


def test_merge_columns_adds_labels_in_one_commit(spark, tmp_path, photo_dir):
    path = str(tmp_path / "labels")
    (sparkmm.read.files(spark, str(photo_dir / "*"))
     .withColumn("id", F.element_at(F.split("path", "/"), -1))
     .withColumn("jpg", F.col("path").image.load().image.convert("RGB").image.encode("JPEG"))
     .mm.write_delta(path))
    ids = sorted(r.id for r in sparkmm.delta.read(spark, path).select("id").collect())
    labelled = ids[::2]
    labels = spark.createDataFrame([(i, float(n), "aesthetic" if n % 2 else "displeasing")
                                    for n, i in enumerate(labelled)], "id string, score double, tag string")
    before = DeltaTable(path).version()
    result = sparkmm.delta.merge_columns(spark, path, labels, on="id")
    assert result.version == before + 1  # one commit
    got = {r.id: (r.score, r.tag) for r in sparkmm.delta.read(spark, path).collect()}
    assert sorted(got) == ids  # no row lost or duplicated
    want = {i: (float(n), "aesthetic" if n % 2 else "displeasing") for n, i in enumerate(labelled)}
    assert got == {i: want.get(i, (None, None)) for i in ids}
    assert _delta_rows(path, "id", "score") == sorted((i, want.get(i, (None,))[0]) for i in ids)
    jpg = {r.id: r.jpg for r in sparkmm.delta.read(spark, path).collect()}
    assert all(b[:2] == b"\xff\xd8" for b in jpg.values())  # image bytes untouched

    dup = spark.createDataFrame([(ids[0], 1.0), (ids[0], 2.0)], "id string, score double")
    with pytest.raises(ValueError, match="keys must be unique"):
        sparkmm.delta.merge_columns(spark, path, dup, on="id")
    with pytest.raises(SchemaMismatchError, match="'score' is double in the table but string"):
        sparkmm.delta.merge_columns(spark, path, spark.createDataFrame([(ids[0], "x")], "id string, score string"),
                                    on="id")
    assert DeltaTable(path).version() == before + 1


def _labelled_table(spark, path, photo_dir):
    df = (sparkmm.read.files(spark, str(photo_dir / "*"))
          .withColumn("id", F.element_at(F.split("path", "/"), -1))
          .withColumn("kind", F.when(F.col("id").endswith(".png"), "png").otherwise("jpg"))
          .withColumn("jpg", F.col("path").image.load().image.convert("RGB").image.encode("JPEG"))
          .select("id", "kind", "jpg"))
    df.mm.write_delta(path, partition_by="kind")
    return df


def test_add_columns_labels_in_place_with_one_commit(spark, tmp_path, photo_dir):
    path = str(tmp_path / "label")
    _labelled_table(spark, path, photo_dir)
    spark.range(3).select(F.concat(F.lit("extra"), "id").alias("id"), F.lit("png").alias("kind"),
                          F.lit(b"\xff\xd8..").cast("binary").alias("jpg")).mm.write_delta(path, partition_by="kind")
    before = DeltaTable(path)
    files_before = pa.table(before.get_add_actions(flatten=True)).num_rows
    order_before = _delta_file_order(path)
    seen = []

    def score(batch):
        import pandas as pd

        seen.append(list(batch.columns))
        n = batch["jpg"].map(len)
        return pd.DataFrame({"score": n / 1000.0, "tag": ["big" if v > 20000 else "small" for v in n]})

    result = sparkmm.delta.add_columns(spark, path, score, ["jpg"], "score double, tag string")
    assert result.version == before.version() + 1  # one commit
    after = DeltaTable(path)
    assert pa.table(after.get_add_actions(flatten=True)).num_rows == files_before  # one new file per file
    assert [h["operation"] for h in after.history()][0] == "ADD COLUMNS"
    rows = _delta_rows(path, "id", "kind", "jpg", "score", "tag")
    assert len(rows) == len(list(photo_dir.iterdir())) + 3
    for _, _, jpg, sc, tag in rows:
        assert sc == len(jpg) / 1000.0 and tag == ("big" if len(jpg) > 20000 else "small")
    assert _delta_file_order(path) == order_before  # row order kept inside each file
    spark_rows = _rows(sparkmm.delta.read(spark, path), "id", "kind", "jpg", "score", "tag")
    assert spark_rows == rows


def _delta_file_order(path):
    """ids in file order, per file, keyed by the file's partition and position in the log."""
    import pyarrow.parquet as pq

    dt = DeltaTable(path)
    out = []
    for uri in dt.file_uris():
        out.append(tuple(pq.read_table(uri.replace("file://", ""), columns=["id"]).column("id").to_pylist()))
    return sorted(out)


def test_add_columns_fn_sees_only_its_inputs_and_must_keep_rows(spark, tmp_path, photo_dir):
    path = str(tmp_path / "strict")
    _labelled_table(spark, path, photo_dir)
    version = DeltaTable(path).version()

    def drop_a_row(batch):
        return {"n": pa.array(range(batch.num_rows - 1))}

    with pytest.raises(Exception, match="it must keep every row"):
        sparkmm.delta.add_columns(spark, path, drop_a_row, ["id"], "n long", batch_format="arrow")
    assert DeltaTable(path).version() == version

    def columns(batch):
        assert batch.column_names == ["kind"], batch.column_names  # a partition column, from the log
        return {"k2": pa.compute.utf8_upper(batch.column("kind"))}

    sparkmm.delta.add_columns(spark, path, columns, ["kind"], "k2 string", batch_format="arrow")
    assert {(k, k2) for _, k, k2 in _delta_rows(path, "id", "kind", "k2")} == {("png", "PNG"), ("jpg", "JPG")}
    with pytest.raises(ValueError, match="exist already"):
        sparkmm.delta.add_columns(spark, path, columns, ["kind"], "k2 string", batch_format="arrow")


def test_conflicting_commit_is_detected_not_merged(spark, tmp_path, photo_dir, monkeypatch):
    from deltalake import write_deltalake

    from sparkmm.io import delta_log

    path = str(tmp_path / "conflict")
    _labelled_table(spark, path, photo_dir)
    version = DeltaTable(path).version()
    real_commit = delta_log.commit

    def commit_after_someone_else(*args, **kwargs):
        # another writer lands a commit between our read and our commit
        write_deltalake(path, pa.table({"id": ["late"], "jpg": [b"x"], "kind": ["png"]}), mode="append")
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(delta_log, "commit", commit_after_someone_else)
    with pytest.raises(sparkmm.delta.ConcurrentModificationError, match=f"changed since version {version}"):
        sparkmm.delta.add_columns(spark, path, lambda b: {"n": pa.array([1] * b.num_rows)}, ["id"], "n long",
                                  batch_format="arrow")
    dt = DeltaTable(path)
    assert dt.version() == version + 1  # only the other writer's commit
    assert "n" not in pa.schema(dt.schema().to_arrow()).names
    assert ("late",) in _delta_rows(path, "id")
    assert not [d for d in os.listdir(path) if d.startswith("sparkmm-label-")]  # our files were removed


def test_replaced_and_orphan_files_are_vacuumable(spark, tmp_path, photo_dir):
    path = str(tmp_path / "vac")
    _labelled_table(spark, path, photo_dir)
    orphan = os.path.join(path, "sparkmm-crashed-write", "part-0.parquet")
    os.makedirs(os.path.dirname(orphan))
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["ghost"]}), orphan)  # a write whose commit never happened
    sparkmm.delta.add_columns(spark, path, lambda b: {"n": pa.array([1] * b.num_rows)}, ["id"], "n long",
                              batch_format="arrow")
    rows = _delta_rows(path, "id", "n")
    dt = DeltaTable(path)
    removed = dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True)
    assert any(p.endswith("part-0.parquet") for p in removed)
    assert len(removed) > 1  # the files add_columns replaced, and the orphan
    assert not os.path.exists(orphan)
    assert _delta_rows(path, "id", "n") == rows
    assert ("ghost",) not in _delta_rows(path, "id")
