"""url.download / image.load against a real S3-compatible endpoint on loopback (moto's server)."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

import sparkmm
from sparkmm.ops import s3 as S3
from sparkmm.ops import url as U
from sparkmm.ops.storage import StorageOptions


def test_s3_objects_and_mixed_columns(s3, photo_dir, http):
    urls = ["s3://media/photos/rocket.jpg", f"{http.url}/files/coffee.png", str(photo_dir / "china.jpg"),
            "s3://media/photos/nope.jpg", "s3://no-such-bucket/x.jpg", None]
    data, errors = U.fetch(pa.array(urls), storage_options={**s3.options, "allow_local_files": True},
                           retries=1, backoff=0.01)
    assert data[0].as_py() == (photo_dir / "rocket.jpg").read_bytes()
    assert data[1].as_py() == (photo_dir / "coffee.png").read_bytes()
    assert data[2].as_py() == (photo_dir / "china.jpg").read_bytes()
    assert errors[3].as_py() == "not_found: s3://media/photos/nope.jpg"  # final: not retried
    assert errors[4].as_py().startswith("not_found")
    assert data[5].as_py() is None and errors[5].as_py() is None


def test_s3_compatible_schemes_and_max_bytes(s3, photo_dir):
    size = (photo_dir / "rocket.jpg").stat().st_size
    data, errors = U.fetch(pa.array(["oss://media/photos/rocket.jpg", "tos://media/photos/rocket.jpg"]),
                           storage_options=s3.options)
    assert errors.to_pylist() == [None, None] and data[0].as_py() == data[1].as_py()
    _, errors = U.fetch(pa.array(["s3://media/photos/rocket.jpg"]), storage_options=s3.options, max_bytes=size - 1)
    assert errors[0].as_py().startswith("too_large")


def test_role_credentials_are_cached_and_refreshed(s3, photo_dir):
    role = {"endpoint_url": s3.endpoint, "region_name": "us-east-1", "aws_access_key_id": "base",
            "aws_secret_access_key": "base-secret", "role_arn": "arn:aws:iam::123456789012:role/reader"}
    start = S3.STS_CALLS["count"]
    for _ in range(3):
        data, errors = U.fetch(pa.array(["s3://media/photos/rocket.jpg"] * 4), storage_options=role)
        assert errors.null_count == 4
    assert S3.STS_CALLS["count"] - start == 1  # one AssumeRole per worker, reused across batches
    short = {**role, "role_session_name": "short", "role_duration_seconds": 900}
    start = S3.STS_CALLS["count"]
    for _ in range(3):
        _, errors = U.fetch(pa.array(["s3://media/photos/rocket.jpg"]), storage_options=short)
        assert errors.null_count == 1
    # 15-minute credentials are inside botocore's refresh window: renewed before they expire
    assert S3.STS_CALLS["count"] - start >= 2


def test_metadata_addresses_are_refused_with_a_way_out():
    urls = ["http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/computeMetadata/v1/",
            "http://[fd00:ec2::254]/latest/meta-data/"]
    _, errors = U.fetch(pa.array(urls), retries=0)
    for e in errors.to_pylist():
        assert e.startswith("blocked_address") and "allow_link_local" in e


def test_secrets_stay_out_of_plans_errors_and_logs(spark, s3, caplog):
    secret = "SuperSecretValue-42"
    options = {**s3.options, "aws_secret_access_key": secret}
    df = spark.createDataFrame([("s3://media/photos/rocket.jpg",), ("s3://media/photos/missing.jpg",)], "url string")
    with caplog.at_level(logging.DEBUG, logger="sparkmm"):
        out = df.select("url", F.col("url").image.load(storage_options=options).alias("img"))
        rows = out.select("url", F.col("img").image.error.alias("e"), F.col("img").image.width.alias("w")).collect()
    assert rows[0].w == 640 and rows[0].e is None
    assert rows[1].e == "not_found: s3://media/photos/missing.jpg"
    plans = out._jdf.queryExecution().toString() + str(F.col("url").image.load(storage_options=options))
    assert secret not in plans
    assert secret not in " ".join(r.e or "" for r in rows)
    assert secret not in caplog.text
    assert secret not in repr(StorageOptions.of(options))


def test_spark_load_from_s3_matches_local(spark, s3, photo_dir):
    urls = [(f"s3://media/photos/{p.name}",) for p in sorted(photo_dir.iterdir())]
    df = spark.createDataFrame(urls, "url string").select(
        "url", F.col("url").image.load(storage_options=s3.options).image.resize((32, 32)).image.phash().alias("h"))
    got = {r.url.rsplit("/", 1)[1]: r.h for r in df.collect()}
    local = sparkmm.read.files(spark, str(photo_dir / "*")).select(
        "path", F.col("path").image.load().image.resize((32, 32)).image.phash().alias("h"))
    want = {r.path.rsplit("/", 1)[1]: r.h for r in local.collect()}
    assert got == want and None not in got.values()


def test_upload_local_names_overwrite_policies(tmp_path):
    from functools import partial

    out = tmp_path / "out"
    upload = partial(U.upload, storage_options={"allow_local_files": True})
    uris = upload(pa.array([b"one", b"two", None]), str(out), pa.array(["a", "b", "c"]), ".bin")
    assert uris.to_pylist() == [f"{out}/a.bin", f"{out}/b.bin", None]
    assert (out / "a.bin").read_bytes() == b"one"
    hashed = upload(pa.array([b"one"]), str(out))[0].as_py()
    assert hashed == f"{out}/{__import__('hashlib').sha256(b'one').hexdigest()[:32]}"
    assert upload(pa.array([b"NEW"]), str(out), pa.array(["a"]), ".bin", overwrite="skip")[0].as_py() == f"{out}/a.bin"
    assert (out / "a.bin").read_bytes() == b"one"
    assert upload(pa.array([b"NEW"]), str(out), pa.array(["a"]), ".bin", overwrite="error")[0].as_py() is None
    with pytest.raises(sparkmm.SparkmmError, match="exists"):
        upload(pa.array([b"NEW"]), str(out), pa.array(["a"]), ".bin", overwrite="error", errors="raise")
    upload(pa.array([b"NEW"]), str(out), pa.array(["a"]), ".bin")
    assert (out / "a.bin").read_bytes() == b"NEW"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic: no partial files
    assert upload(pa.array([b"x"]), str(out), pa.array(["../escape"]))[0].as_py() is None


def test_resample_and_upload_to_s3_as_seed_004(spark, s3, photo_dir):
    """Seed 004: resample to 224x224 at 72 dpi, write it back to object storage, keep the path."""
    df = spark.createDataFrame([(f"s3://media/photos/{p.name}", p.stem) for p in sorted(photo_dir.iterdir())],
                               "image_tos_path string, image_id string")
    resampled = F.col("image_tos_path").image.load(storage_options=s3.options) \
        .image.resample((224, 224), (72, 72)).image.convert("RGB").image.encode("PNG")
    out = df.withColumn("resampled_image_tos_path", resampled.url.upload(
        "s3://media/resample_image/", name=F.concat(F.col("image_id"), F.lit("_resample")), suffix=".png",
        storage_options=s3.options))
    rows = out.collect()
    assert all(r.resampled_image_tos_path == f"s3://media/resample_image/{r.image_id}_resample.png" for r in rows)
    from PIL import Image
    import io

    body = s3.client().get_object(Bucket="media", Key=f"resample_image/{rows[0].image_id}_resample.png")["Body"].read()
    im = Image.open(io.BytesIO(body))
    assert im.size == (224, 224) and tuple(round(v) for v in im.info["dpi"]) == (72, 72)
    sparkmm.register(spark)
    names = {r[0] for r in spark.sql("SHOW USER FUNCTIONS LIKE 'mm_url_upload'").collect()}
    assert any(n.endswith("mm_url_upload") for n in names)


def test_listing_object_store_globs(spark, s3, photo_dir):
    c = s3.client()
    c.put_object(Bucket="media", Key="nested/a/x.jpg", Body=b"1")
    c.put_object(Bucket="media", Key="nested/a/b/y.jpg", Body=b"22")
    c.put_object(Bucket="media", Key="nested/z.png", Body=b"333")
    c.put_object(Bucket="media", Key="nested/empty.jpg", Body=b"")

    def names(pattern, **kw):
        df = sparkmm.read.files(spark, pattern, storage_options=s3.options, **kw)
        assert df.columns == ["path", "size", "modification_time"]
        return sorted((r.path, r.size) for r in df.collect())

    assert names("s3://media/nested/**/*.jpg") == [
        ("s3://media/nested/a/b/y.jpg", 2), ("s3://media/nested/a/x.jpg", 1), ("s3://media/nested/empty.jpg", 0)]
    assert names("s3://media/nested/*.{png,jpg}") == [("s3://media/nested/empty.jpg", 0), ("s3://media/nested/z.png", 3)]
    assert [p for p, _ in names("s3://media/nested/")] == ["s3://media/nested/empty.jpg", "s3://media/nested/z.png"]
    assert len(names("s3://media/nested", recursive=True)) == 4
    photos = names("s3://media/photos/*")
    assert len(photos) == len(list(photo_dir.iterdir()))
    both = sparkmm.read.files(spark, ["s3://media/photos/*.jpg", str(photo_dir / "*.png")], storage_options=s3.options)
    assert both.count() == len(list(photo_dir.iterdir()))


def test_delta_tables_on_object_storage(spark, s3, photo_dir):
    from deltalake import DeltaTable

    from sparkmm.io.delta import deltalake_options

    path = "s3://media/tables/photos"
    df = (sparkmm.read.files(spark, str(photo_dir / "*"))
          .select(F.element_at(F.split("path", "/"), -1).alias("id"),
                  F.when(F.col("path").endswith(".png"), "png").otherwise("jpg").alias("kind"),
                  F.col("path").image.load().image.resize((16, 16)).image.encode("PNG").alias("thumb")))
    first = df.mm.write_delta(path, mode="overwrite", partition_by="kind", storage_options=s3.options)
    assert (first.engine, first.version) == ("deltalake", 0)
    more = spark.createDataFrame([("extra", "png", b"\x89PNG", 0.5)], "id string, kind string, thumb binary, score double")
    assert more.mm.write_delta(path, partition_by="kind", storage_options=s3.options).version >= 1
    table = DeltaTable(path, storage_options=deltalake_options(s3.options))
    got = pa.table(table.to_pyarrow_table())
    assert got.num_rows == len(list(photo_dir.iterdir())) + 1
    want = {r.id: (r.kind, r.thumb) for r in df.collect()}
    back = {r.id: (r.kind, r.thumb, r.score)
            for r in sparkmm.delta.read(spark, path, storage_options=s3.options).collect()}
    assert {k: v[:2] for k, v in back.items() if k != "extra"} == want
    assert back["extra"] == ("png", b"\x89PNG", 0.5) and all(v[2] is None for k, v in back.items() if k != "extra")
    assert sparkmm.delta.read(spark, path, version=0, storage_options=s3.options).count() == len(want)
