"""The main job (seed 000 use cases 1 and 2) and the sparkmm command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import sparkmm
from deltalake import DeltaTable
from sparkmm.jobs.image_cleaning import run
from sparkmm.ops.registry import OPERATORS


def test_main_job_outputs(spark, photo_dir, bad_dir, tmp_path):
    bad, expected = bad_dir
    summary = run(spark, [str(photo_dir / "*"), str(bad / "*")], str(tmp_path / "out"), min_size=(500, 400))
    n_photos, n_bad = len(list(photo_dir.iterdir())), len(expected)
    assert summary["rows_in"] == n_photos + n_bad
    assert summary["rows_failed"] == n_bad
    assert {f["reason"] for f in summary["failures"]} == set(expected.values())

    assert (summary["format"], summary["engine"]) == ("delta", "deltalake")
    props = sparkmm.delta.read(spark, summary["outputs"]["properties"]).collect()
    want = {p.name for p in photo_dir.iterdir()
            if 500 <= Image.open(p).width <= 5000 and 400 <= Image.open(p).height <= 6000}
    assert {r.id for r in props} == want
    for r in props:
        im = Image.open(photo_dir / r.id)
        assert (r.width, r.height, r.format, r.mode) == (im.width, im.height, im.format, im.mode)

    pre = {r.id: r for r in sparkmm.delta.read(spark, summary["outputs"]["preprocessed"]).collect()}
    assert DeltaTable(summary["outputs"]["preprocessed"]).to_pyarrow_table().num_rows == len(pre)
    assert set(pre) == {p.name for p in photo_dir.iterdir()}
    for name, r in pre.items():
        src = Image.open(photo_dir / name)
        assert Image.open(io.BytesIO(r.img_resized)).size == (224, 224)
        assert Image.open(io.BytesIO(r.img_resized)).mode == "RGB"
        assert Image.open(io.BytesIO(r.img_cropped)).size == (400, 400)
        rgb = Image.open(io.BytesIO(r.img_rgb))
        assert rgb.mode == "RGB" and rgb.size == src.size


def test_ops_lists_every_operator():
    out = subprocess.run([sys.executable, "-m", "sparkmm.cli", "ops"], capture_output=True, text=True, check=True)
    for op in OPERATORS.values():
        assert op.sql_name in out.stdout


@pytest.mark.slow
def test_demo_command_runs_the_main_job(tmp_path):
    exe = Path(sys.executable).parent / "sparkmm"
    proc = subprocess.run([str(exe), "demo", "--output", str(tmp_path / "demo"), "--json"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYSPARK_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert summary["rows_in"] >= 10 and summary["rows_failed"] == 0
    assert summary["rows_preprocessed"] == summary["rows_in"]
    assert DeltaTable(str(tmp_path / "demo" / "preprocessed")).version() == 0
