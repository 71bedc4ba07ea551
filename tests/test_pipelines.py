"""Pipeline files: every file in pipelines/ runs and its output table is checked (with the deltalake
reader); validation errors point at the line; the CLI; one run through the real spark-submit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable
from PIL import Image

from sparkmm import cli
from sparkmm.jobs.samples import make_aesthetic_model, make_webdataset, sample_photos, sample_videos
from sparkmm.ops.image_models import aesthetic_tag
from sparkmm.pipeline import PipelineError, load, parse, run

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"


def _table(path) -> pa.Table:
    return pa.table(DeltaTable(str(path)).to_pyarrow_table())


def _run(spark, name: str, tmp_path, *sets: str) -> tuple[dict, pa.Table]:
    out = tmp_path / name
    summary = run(spark, load(PIPELINES / f"{name}.yaml", [f"vars.output={out}", *sets]), progress=False)
    assert summary["output"]["path"] == str(out) and summary["output"]["version"] == 0
    return summary, _table(out)


def test_image_cleaning_pipeline(spark, tmp_path):
    summary, t = _run(spark, "image_cleaning", tmp_path)
    photos = sample_photos()
    sizes = [Image.open(p).size for p in photos]
    kept = sum(400 <= w <= 5000 and 300 <= h <= 6000 for w, h in sizes)
    assert summary["rows_in"] == len(photos) and summary["rows_out"] == t.num_rows == kept
    for raw in t.column("jpeg").to_pylist():
        im = Image.open(__import__("io").BytesIO(raw))
        assert (im.format, im.size, im.mode) == ("JPEG", (224, 224), "RGB")
    assert summary["failures"] == []


def test_image_cleaning_counts_bad_files(spark, tmp_path, bad_dir):
    directory, expected = bad_dir
    summary, t = _run(spark, "image_cleaning", tmp_path, f"vars.input={directory}/*")
    by_reason = {f["reason"]: f["rows"] for f in summary["failures"] if f["column"] == "img"}
    assert summary["rows_out"] == 0 and sum(by_reason.values()) == summary["rows_in"] - 0
    assert set(by_reason) <= set(expected.values()) | {"not_found"}


def test_operator_package_asr_pipeline(spark, tmp_path):
    summary, t = _run(spark, "operator_package_asr", tmp_path)
    rows = {Path(p).name: text for p, text in zip(t.column("path").to_pylist(), t.column("text").to_pylist())}
    assert len(rows) == 5 and summary["failures"] == []
    assert "dashwood" in rows["sense_and_sensibility_01_austen_64kb-0870.wav"].lower()


def test_video_prediction_pipeline(spark, tmp_path):
    summary, t = _run(spark, "video_prediction", tmp_path)
    videos = sample_videos()
    assert t.num_rows == summary["rows_out"] == len(videos)
    rows = {Path(p).name: r for p, r in zip(t.column("path").to_pylist(), t.to_pylist())}
    bunny = rows["bigbuckbunny.mp4"]
    assert bunny["frames"] == 6  # 5.3 s at 1 fps: t = 0, 1, ..., 5
    assert all(0 < r["score_mean"] <= r["score_max"] <= 1 and r["label_majority"] for r in rows.values())


def test_webdataset_aesthetic_pipeline(spark, tmp_path):
    shards = make_webdataset(tmp_path / "shards")
    model = make_aesthetic_model(tmp_path / "aesthetic")
    summary, t = _run(spark, "webdataset_aesthetic", tmp_path, f"vars.shards={tmp_path}/shards/*.tar",
                      f"vars.model={model}")
    assert len(shards) == 2 and t.num_rows == len(sample_photos())
    for score, tag in zip(t.column("AESTHETIC_SCORE").to_pylist(), t.column("AESTHETIC_TAG").to_pylist()):
        assert tag == aesthetic_tag(score)
    assert set(t.column("name").to_pylist()) == {p.name for p in sample_photos()}


def test_image_retrieval_pipeline(spark, tmp_path):
    summary, t = _run(spark, "image_retrieval", tmp_path)
    assert t.num_rows == len(sample_photos()) and set(t.column("dim").to_pylist()) == {1280}
    norms = [np.linalg.norm(e) for e in t.column("embedding").to_pylist()]
    assert np.allclose(norms, 1.0, atol=1e-4)


@pytest.mark.parametrize("text,message", [
    ("source: {files: x}\nsteps:\n  - {op: image.nope, input: a, output: b}\n",
     "p.yaml:3: steps[0] (image.nope): unknown operator"),
    ("source: {files: x}\nsteps:\n  - {filter: 'a > 1'}\n  - {op: image.resize, input: a, output: b, "
     "args: {size: [1, 2], methd: x}}\n", "p.yaml:4: steps[1] (image.resize): got an unexpected argument 'methd'; "
                                          "accepted: size, method, keep_aspect"),
    ("source: {files: x}\nsteps:\n  - {op: image.resize, input: a, output: b, args: {size: [1, 2], method: box2}}\n",
     "method='box2' is not one of"),
    ("source: {files: x}\nstep: []\n", "p.yaml:2: unknown key 'step'"),
    ("steps: []\n", "source needs exactly one of files, table, delta, webdataset"),
    ("source: {files: x}\nsteps:\n  - {op: image.load, input: path}\n", "needs output: <column name>"),
    ("source: {files: x}\nsteps:\n  - {mm: explode_everything}\n", "unknown df.mm step; known:"),
    ("source: {files: x}\nsteps:\n  - {mm: extract_frames, args: {column: v, fsp: 1}}\n",
     "got an unexpected keyword argument 'fsp'"),
    ("source: {files: x}\nsteps:\n  - {infer: image.resize, input: a, output: b}\n", "only model/UDF operators"),
    ("source: {files: '${nope}'}\n", "p.yaml:1: ${nope} is not defined in vars"),
    ("source: {files: x}\nsteps:\n  - {op: image.load, input: a, output: b}\n   bad: [\n",
     "p.yaml:4: not valid YAML"),
    ("source: {files: x}\nsink: {delta: {mode: overwrite}}\n", "p.yaml:2: sink.delta needs a path"),
])
def test_validation_errors_point_at_the_line(text, message):
    with pytest.raises(PipelineError) as e:
        parse(text, "p.yaml")
    assert message in str(e.value), str(e.value)


def test_set_overrides_and_variables():
    p = parse("vars: {n: 7, size: [64, 32]}\nsource: {files: 'x/*.jpg'}\nsteps:\n"
              "  - {op: image.resize, input: img, output: s, args: {size: '${size}'}}\n"
              "  - {filter: 'width > ${n}'}\nsink: {delta: out}\n", "p.yaml",
              ["vars.n=9", "sink.delta=/tmp/o", "steps.0.args.size=[10, 20]"])
    assert p.steps[0].spec["args"]["size"] == [10, 20] and p.steps[1].value == "width > 9"
    assert p.sink == {"delta": "/tmp/o"}
    with pytest.raises(PipelineError, match="no item 5 in a list of 2"):
        parse("source: {files: x}\nsteps: [{filter: a}, {filter: b}]\n", "p.yaml", ["steps.5.filter=c"])


def test_cli_validate_run_and_sql(spark, tmp_path, capsys, photo_dir):
    assert cli.main(["validate", str(PIPELINES / "image_retrieval.yaml")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: {files: x}\nsteps:\n  - {op: image.resize, input: a, output: b}\n")
    assert cli.main(["validate", str(bad)]) == 2
    assert "bad.yaml:3: steps[0] (image.resize): missing required argument 'size'" in capsys.readouterr().err
    out = tmp_path / "cli"
    assert cli.main(["run", str(PIPELINES / "image_retrieval.yaml"), "--set", f"vars.output={out}", "--json",
                     "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_out"] == _table(out).num_rows == len(sample_photos())
    assert cli.main(["sql", str(ROOT / "docs" / "sql_pipeline.sql"), "--set", f"photos_dir={photo_dir}"]) == 0
    t = spark.table("cleaned_images")
    assert t.count() == spark.sql("SELECT * FROM photos WHERE mm_image_width(img) BETWEEN 400 AND 5000 AND "
                                  "mm_image_height(img) BETWEEN 300 AND 6000").count() > 0
    assert {len(r.embedding) for r in t.select("embedding").collect()} == {1280}
    spark.sql("DROP TABLE IF EXISTS cleaned_images")


@pytest.mark.slow
def test_submit_runs_through_spark_submit(tmp_path):
    out = tmp_path / "submitted"
    done = subprocess.run([sys.executable, "-m", "sparkmm.cli", "submit", str(PIPELINES / "image_cleaning.yaml"),
                           "--master", "local[2]", "--conf", "spark.sql.shuffle.partitions=2",
                           "--set", f"vars.output={out}", "--json"],
                          capture_output=True, text=True, timeout=500, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])
    assert summary["rows_out"] == _table(out).num_rows > 0 and summary["output"]["engine"] == "deltalake"
