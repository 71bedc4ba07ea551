"""WebDataset source: shards written with the ``webdataset`` package, compared with its own reader."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import webdataset as wds

import sparkmm
from sparkmm.io.webdataset import read_shard


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory, photo_dir):
    d = tmp_path_factory.mktemp("shards")
    photos = sorted(p for p in photo_dir.iterdir() if p.suffix in (".jpg", ".png"))
    for s in range(3):
        with wds.TarWriter(str(d / f"shard-{s:04d}.tar")) as sink:
            for i in range(4):
                p = photos[(s * 4 + i) % len(photos)]
                sink.write({"__key__": f"sample{s:02d}{i:02d}", p.suffix[1:]: p.read_bytes(),
                            "json": json.dumps({"shard": s, "i": i, "name": p.name}).encode(),
                            "cls": str(i).encode(), "txt": f"photo {p.stem}".encode()})
    good = (d / "shard-0000.tar").read_bytes()
    (d / "broken.tar").write_bytes(good[: len(good) * 2 // 3])  # truncated mid-member
    with tarfile.open(d / "odd.tar", "w") as tar:  # an invalid JSON member and an oversized one
        for name, data in (("a.json", b"{not json"), ("a.jpg", b"\xff" * 10), ("b.json", b"{}"),
                           ("b.jpg", b"\xff" * 1_500_000), ("c.cls", b"seven")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return d


def test_rows_equal_the_webdataset_reader(spark, shard_dir):
    pattern = str(shard_dir / "shard-*.tar")
    df = sparkmm.read.webdataset(spark, pattern, extensions=["jpg", "png", "json", "cls", "txt"])
    assert df.columns == ["__key__", "__url__", "jpg", "png", "json", "cls", "txt", "__error__"]
    assert df.rdd.getNumPartitions() == 3  # one partition per shard
    rows = {r["__key__"]: r for r in df.collect()}
    reference = list(wds.WebDataset(sorted(str(p) for p in shard_dir.glob("shard-*.tar")), shardshuffle=False))
    assert len(rows) == len(reference) == 12
    for sample in reference:
        r = rows[sample["__key__"]]
        assert r["__error__"] is None
        assert json.loads(r.json) == json.loads(sample["json"])
        assert r.cls == int(sample["cls"]) and r.txt == sample["txt"].decode()
        image = sample.get("jpg") or sample.get("png")
        assert bytes(r.jpg or r.png) == image


def test_format_and_inferred_columns(spark, shard_dir):
    sparkmm.register(spark)
    df = spark.read.format("webdataset").load(str(shard_dir / "shard-0001.tar"))
    assert {"jpg", "json", "cls", "txt"} <= set(df.columns)
    assert df.count() == 4


def test_corrupt_shard_and_bad_members_do_not_fail_the_read(spark, shard_dir):
    df = sparkmm.read.webdataset(spark, f"{shard_dir}/broken.tar,{shard_dir}/odd.tar,{shard_dir}/shard-0002.tar",
                                 extensions=["jpg", "png", "json", "cls"], max_member_bytes=1_000_000)
    rows = df.collect()
    broken = [r for r in rows if r["__url__"].endswith("broken.tar")]
    assert broken[-1]["__key__"] is None and broken[-1]["__error__"].startswith("corrupt_shard")
    assert any(r["__key__"] and r["__error__"] is None for r in broken)  # samples before the damage survive
    odd = {r["__key__"]: r for r in rows if r["__url__"].endswith("odd.tar")}
    assert odd["a"].json is None and odd["a"]["__error__"].startswith("bad_member: a.json")
    assert odd["a"].jpg == b"\xff" * 10
    assert odd["b"].jpg is None and "too_large: b.jpg is 1500000 bytes" in odd["b"]["__error__"] and odd["b"].json == "{}"
    assert odd["c"].cls is None and odd["c"]["__error__"].startswith("bad_member: c.cls")
    assert sum(1 for r in rows if r["__url__"].endswith("shard-0002.tar")) == 4  # the good shard is whole
    assert list(read_shard(str(shard_dir / "missing.tar"), ["jpg"]))[0][-1].startswith("not_found")


def test_shards_on_object_storage_stream_from_the_store(spark, s3, shard_dir):
    c = s3.client()
    for p in sorted(shard_dir.glob("shard-*.tar")) + [shard_dir / "broken.tar"]:
        c.put_object(Bucket="media", Key=f"wds/{p.name}", Body=p.read_bytes(), ACL="public-read")
    options = {"endpoint_url": s3.endpoint, "anonymous": True}  # a public dataset: no secret in the plan
    df = sparkmm.read.webdataset(spark, "s3://media/wds/shard-*.tar", extensions=["jpg", "png", "json", "cls"],
                                 storage_options=options)
    assert df.rdd.getNumPartitions() == 3
    remote = {r["__key__"]: r for r in df.collect()}
    local = {r["__key__"]: r for r in sparkmm.read.webdataset(spark, str(shard_dir / "shard-*.tar"),
                                                              extensions=["jpg", "png", "json", "cls"]).collect()}
    assert set(remote) == set(local) and len(remote) == 12
    for k, r in remote.items():
        assert (r.jpg, r.png, r.json, r.cls) == (local[k].jpg, local[k].png, local[k].json, local[k].cls)
        assert r["__url__"].startswith("s3://media/wds/shard-")
    rows = sparkmm.read.webdataset(spark, "s3://media/wds/broken.tar,s3://media/wds/missing.tar",
                                   extensions=["jpg", "json"], storage_options=options).collect()
    assert rows[-1]["__error__"].startswith("not_found: s3://media/wds/missing.tar")
    assert any(r["__error__"] and r["__error__"].startswith("corrupt_shard") for r in rows)
    with pytest.raises(ValueError, match="would show in query plans"):
        sparkmm.read.webdataset(spark, "s3://media/wds/*.tar", storage_options={"aws_secret_access_key": "x"})
