"""The image path on a real local Spark session, compared with PIL and the kernels."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image
from pyspark.errors import PythonException
from pyspark.sql import functions as F

import sparkmm
from sparkmm.ops.registry import OPERATORS


def _strip(p: str) -> str:
    return p[len("file:"):] if p.startswith("file:") else p


def test_read_files_lists_without_content(spark, photo_dir, tmp_path):
    df = sparkmm.read.files(spark, str(photo_dir / "*.jpg"))
    assert df.columns == ["path", "size", "modification_time"]
    rows = {os.path.basename(r.path): r for r in df.collect()}
    jpgs = {p.name for p in photo_dir.glob("*.jpg")}
    assert set(rows) == jpgs
    assert all(rows[n].size == (photo_dir / n).stat().st_size for n in jpgs)
    assert "content" not in df._jdf.queryExecution().executedPlan().toString().split("ReadSchema:")[1]

    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "x.png").write_bytes((photo_dir / "coins.png").read_bytes())
    (tmp_path / "a" / "y.png").write_bytes((photo_dir / "camera.png").read_bytes())
    (tmp_path / "a" / "z.txt").write_text("no")
    deep = sparkmm.read.files(spark, str(tmp_path / "a" / "**" / "*.png"))
    assert sorted(os.path.basename(r.path) for r in deep.collect()) == ["x.png", "y.png"]
    every = sparkmm.read.files(spark, str(tmp_path / "a"), recursive=True)
    assert every.count() == 3
    both = sparkmm.read.files(spark, str(photo_dir / "{rocket,china}.jpg"))
    assert both.count() == 2
    (tmp_path / "a" / "empty.png").write_bytes(b"")  # Spark's scan skips empty files; the listing must not
    listed = {os.path.basename(r.path): r.size for r in sparkmm.read.files(spark, str(tmp_path / "a" / "*.png")).collect()}
    assert listed == {"y.png": (photo_dir / "camera.png").stat().st_size, "empty.png": 0}


def test_accessor_chain_matches_pil(spark, photo_dir):
    df = (sparkmm.read.files(spark, str(photo_dir / "*"))
          .withColumn("img", F.col("path").url.download().image.decode())
          .withColumn("small", F.col("img").image.resize((224, 224)).image.convert("RGB").image.encode("PNG"))
          .withColumn("crop", F.col("img").image.crop((100, 100, 300, 250)).image.encode("PNG"))
          .mm.image_properties("img"))
    rows = df.select("path", "width", "height", "size", "format", "mode", "error", "small", "crop").collect()
    assert len(rows) == len(list(photo_dir.iterdir()))
    for r in rows:
        path = _strip(r.path)
        im = Image.open(path)
        assert (r.width, r.height, r.format, r.mode, r.size, r.error) == (
            im.width, im.height, im.format, im.mode, os.path.getsize(path), None)
        ref = Image.open(path)
        ref.load()
        ref = ref.resize((224, 224), Image.Resampling.LANCZOS).convert("RGB")
        ours = np.asarray(Image.open(io.BytesIO(r.small)), dtype=np.int16)
        assert float(np.abs(ours - np.asarray(ref, dtype=np.int16)).mean()) <= 2.0, path
        crop = np.asarray(Image.open(io.BytesIO(r.crop)))
        assert np.array_equal(crop, np.asarray(Image.open(path).crop((100, 100, 300, 250)))), path


def _python_calls(df) -> list[str]:
    plan = df._jdf.queryExecution().optimizedPlan().toString()
    return [line.split("ArrowEvalPython [", 1)[1] for line in plan.splitlines() if "ArrowEvalPython [" in line]


def test_lazy_steps_fuse_and_see_only_the_descriptor(spark, photo_dir):
    df = sparkmm.read.files(spark, str(photo_dir / "rocket.jpg")).withColumn("img", F.col("path").image.load())
    small = df.select(F.col("img").image.resize((64, 64)).image.convert("L").alias("small"))
    calls = [c for c in _python_calls(small) if not c.startswith("mm_image_load")]
    # one Python call for both steps, fed the descriptor only (the bytes stay in the JVM)
    assert len(calls) == 1 and calls[0].startswith("mm_image_resize__convert(") and ".meta)#" in calls[0]
    assert small.select(F.col("small").image.width, F.col("small").image.mode).first() == (64, "L")


def test_a_chain_is_one_python_call(spark, photo_dir):
    chain = F.col("path").image.load().image.resize((32, 32)).image.convert("RGB").image.encode("JPEG")
    df = sparkmm.read.files(spark, str(photo_dir / "*.jpg")).select("path", chain.alias("thumb"))
    calls = _python_calls(df)
    assert len(calls) == 1 and calls[0].startswith("mm_image_load__resize__convert__encode(path#")
    for r in df.collect():
        assert Image.open(io.BytesIO(r.thumb)).size == (32, 32), r.path
    unfused = (sparkmm.read.files(spark, str(photo_dir / "*.jpg")).withColumn("img", F.col("path").image.load())
               .select("path", F.col("img").image.resize((32, 32)).image.convert("RGB").image.encode("JPEG").alias("t")))
    assert sorted(df.collect()) == sorted(unfused.collect())


def test_sql_functions_equal_accessors(spark, photo_dir):
    df = sparkmm.read.files(spark, str(photo_dir / "*")).withColumn("img", F.col("path").image.load())
    df.createOrReplaceTempView("photos")
    via_api = df.select(
        "path",
        F.col("img").image.width.alias("w"), F.col("img").image.height.alias("h"),
        F.col("img").image.format.alias("f"), F.col("img").image.mode.alias("m"), F.col("img").image.size.alias("s"),
        F.col("img").image.resize((50, 40), "bilinear").image.encode("PNG").alias("r"),
        F.col("img").image.thumbnail((64, 64)).image.width.alias("tw"),
        F.col("img").image.crop((1, 2, 30, 40)).image.convert("L").image.to_base64("PNG").alias("c"),
        F.col("img").image.resample((32, 32), (96, 96)).image.encode("PNG").alias("rs"),
        F.col("img").image.exif_transpose().image.height.alias("eh"),
        F.col("img").image.phash().alias("ph"), F.col("img").image.dhash().alias("dh"),
        F.col("img").image.resize((64, 64), keep_aspect=True).image.height.alias("kh"),
    ).orderBy("path").collect()
    via_sql = spark.sql("""
        SELECT path, mm_image_width(img) w, mm_image_height(img) h, mm_image_format(img) f,
               mm_image_mode(img) m, mm_image_size(img) s,
               mm_image_encode(mm_image_resize(img, 50, 40, 'bilinear'), 'PNG') r,
               mm_image_width(mm_image_thumbnail(img, 64, 64)) tw,
               mm_image_to_base64(mm_image_convert(mm_image_crop(img, 1, 2, 30, 40), 'L'), 'PNG') c,
               mm_image_encode(mm_image_resample(img, 32, 32, 96, 96), 'PNG') rs,
               mm_image_height(mm_image_exif_transpose(img)) eh,
               mm_image_phash(img) ph, mm_image_dhash(img) dh,
               mm_image_height(mm_image_resize(img, 64, 64, keep_aspect => true)) kh
        FROM photos ORDER BY path""").collect()
    assert via_api == via_sql
    assert all(r.r is not None and r.ph is not None for r in via_api)
    rot = [r for r in via_api if r.path.endswith("rotated_exif.jpg")][0]
    assert rot.eh == rot.w  # orientation 6: transposed height is the stored width


def test_every_scalar_operator_is_a_sql_function(spark):
    names = {r.function for r in spark.sql("SHOW USER FUNCTIONS").collect()}
    names |= {r[0] for r in spark.sql("SHOW FUNCTIONS LIKE 'mm_*'").collect()}
    for op in OPERATORS.values():
        assert any(n.endswith(op.sql_name) for n in names), op.sql_name


def test_bad_rows_get_reasons_and_the_job_goes_on(spark, photo_dir, bad_dir, http):
    directory, expected = bad_dir
    sources = [str(directory / n) for n in sorted(expected)] + [
        str(directory / "missing.jpg"), f"{http.url}/status/404", f"{http.url}/status/500",
        f"{http.url}/files/rocket.jpg", str(photo_dir / "coffee.png")]
    df = spark.createDataFrame([(s,) for s in sources], "path string").repartition(2)
    out = (df.withColumn("img", F.col("path").image.load(retries=1))
             .withColumn("thumb", F.col("img").image.resize((32, 32)).image.convert("RGB").image.encode("JPEG"))
             .withColumn("why", F.col("img").image.error))
    rows = {r.path: r for r in out.collect()}
    assert len(rows) == len(sources)
    for name, category in expected.items():
        r = rows[str(directory / name)]
        assert r.why.split(":")[0] == category, (name, r.why)
        assert r.thumb is None
    assert rows[str(directory / "missing.jpg")].why.startswith("not_found")
    assert rows[f"{http.url}/status/404"].why.startswith("http_404")
    assert rows[f"{http.url}/status/500"].why.startswith("http_500")
    for good in (f"{http.url}/files/rocket.jpg", str(photo_dir / "coffee.png")):
        assert rows[good].why is None and rows[good].thumb[:2] == b"\xff\xd8"

    summary = {(r.column, r.reason): r.rows for r in out.mm.error_summary("img").collect()}
    assert summary[("img", "unsupported_format")] == 2
    assert summary[("img", "not_found")] == 1
    assert sum(summary.values()) == len(sources) - 2


def test_errors_raise_fails_naming_the_path(spark, bad_dir):
    directory, _ = bad_dir
    path = str(directory / "truncated.jpg")
    df = spark.createDataFrame([(path,)], "path string")
    with pytest.raises(PythonException, match="truncated.jpg"):
        df.select(F.col("path").image.load(errors="raise")).collect()
    with pytest.raises(PythonException, match="missing.jpg.*not_found"):
        spark.createDataFrame([(str(directory / "missing.jpg"),)], "path string").select(
            F.col("path").url.download(errors="raise")).collect()


def test_base64_columns(spark, photo_dir):
    df = sparkmm.read.files(spark, str(photo_dir / "china.jpg")).withColumn("img", F.col("path").image.load())
    b64 = df.select(F.col("img").image.to_base64().alias("b64"))
    back = b64.select(F.col("b64").image.from_base64().alias("img")).select(F.col("img").image.width).first()[0]
    assert back == 640


def test_invalid_arguments_fail_when_building_the_plan(spark):
    with pytest.raises(ValueError, match="method"):
        F.col("img").image.resize((10, 10), method="fancy")
    with pytest.raises(TypeError, match="unexpected argument 'widht'"):
        F.col("img").image.resize(widht=3)
    with pytest.raises(AttributeError, match="no operator 'rotate'"):
        F.col("img").image.rotate(90)


def test_local_files_follow_the_session_opt_in(spark, photo_dir):
    df = spark.createDataFrame([(str(photo_dir / "rocket.jpg"),)], "path string")
    assert spark.conf.get("spark.sparkmm.allowLocalFiles") == "true"  # the local profile opts in
    spark.conf.set("spark.sparkmm.allowLocalFiles", "false")  # as on a cluster
    try:
        refused = df.select(F.col("path").image.load().image.error.alias("e")).first().e
        assert refused.startswith("local_file_refused")
        allowed = df.select(F.col("path").image.load(storage_options={"allow_local_files": True})
                            .image.width.alias("w")).first().w
        assert allowed == 640
    finally:
        spark.conf.set("spark.sparkmm.allowLocalFiles", "true")
