"""Inference stages: apply_chunk, operator packages (udfs/), GPU resource profiles on a real local cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from media import LIBRIVOX
from sparkmm import udfs
from sparkmm.errors import SparkmmError
from sparkmm.models import vision
from sparkmm.ops import audio, image, image_models, speech
from sparkmm.spark import inference

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"allow_local_files": True}


def test_rechunk_and_apply_chunk(spark):
    df = spark.range(1000).selectExpr("id", "id * 2 AS twice").repartition(3)

    def fn(p: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"id": p["id"], "total": p["id"] + p["twice"], "chunk": len(p)})

    out = df.mm.apply_chunk(fn, "id long, total long, chunk int", batch_rows=128).collect()
    assert sorted(r.id for r in out) == list(range(1000))
    assert all(r.total == 3 * r.id for r in out)
    assert max(r.chunk for r in out) == 128 and min(r.chunk for r in out) >= 1

    def broken(p: pd.DataFrame) -> pd.DataFrame:
        raise ValueError("bad chunk")

    with pytest.raises(Exception, match="apply_chunk failed on a chunk of .* rows: ValueError: bad chunk"):
        df.mm.apply_chunk(broken, "id long").collect()
    with pytest.raises(Exception, match=r"returned no column\(s\) \['nope'\]"):
        df.mm.apply_chunk(lambda p: p, "nope long").collect()


def test_gpu_profile_is_dropped_in_local_mode(spark, caplog):
    inference._WARNED.clear()
    with caplog.at_level("WARNING"):
        assert inference.gpu_profile(spark, 0.5) is None
        assert inference.gpu_profile(spark, 1) is None
    assert sum("cannot schedule task resource profiles" in r.message for r in caplog.records) == 1
    assert inference.gpu_profile(spark, 0) is None


def _write_package(directory: Path, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "process.py").write_text(textwrap.dedent(body))
    return directory


def test_package_validation(tmp_path):
    with pytest.raises(SparkmmError, match="has no process.py"):
        udfs.load(tmp_path)
    no_process = _write_package(tmp_path / "a", """
        class PreProcess:
            output_schema = "x int"
    """)
    with pytest.raises(SparkmmError, match="defines no Process class"):
        udfs.load(no_process)
    no_schema = _write_package(tmp_path / "b", """
        class Process:
            def __init__(self, args): pass
            def __call__(self, df): return df
    """)
    with pytest.raises(SparkmmError, match="Process.output_schema must be a Spark DDL string"):
        udfs.load(no_schema)
    broken = _write_package(tmp_path / "c", "import no_such_module_here\n")
    with pytest.raises(SparkmmError, match="failed to import: ModuleNotFoundError"):
        udfs.load(broken)


def test_image_embedding_package_equals_the_kernel(spark, photo_dir, tmp_path):
    paths = [str(p) for p in sorted(photo_dir.iterdir())] + [str(tmp_path / "missing.jpg")]
    df = spark.createDataFrame([(p,) for p in paths], "path string")
    op = udfs.load(ROOT / "udfs" / "image_embedding", {"model": "efficientnet-lite0"})
    assert [s for s, _ in op.stages] == ["PreProcess", "Process", "PostProcess"]
    rows = {r.path: r for r in df.mm.apply_operator(op, batch_rows=4).collect()}
    assert set(rows) == set(paths)  # every row kept, bad ones included
    direct = image_models.embed(image.load(pa.array(paths), storage_options=LOCAL), model="efficientnet-lite0",
                                normalize=True).to_pylist()
    for p, want in zip(paths, direct):
        r = rows[p]
        if want is None:
            assert r.embedding is None and r.error.startswith("not_found")
        else:
            assert r.dim == 1280 and r.error is None
            assert float(np.dot(r.embedding, want)) >= 0.9999, p
    assert op.run_local(pd.DataFrame({"path": paths[:2]}))["dim"].tolist() == [1280, 1280]


def test_aesthetic_score_package(spark, photo_dir, tmp_path):
    torch.manual_seed(3)
    head = torch.nn.Sequential(torch.nn.Linear(1280, 8), torch.nn.Linear(8, 1))
    with torch.no_grad():
        head[1].bias.fill_(5.5)
    model = vision.save_aesthetic_model(tmp_path / "aesthetic", "efficientnet-lite0", head)
    paths = [str(p) for p in sorted(photo_dir.iterdir())]
    df = spark.createDataFrame([(p,) for p in paths], "path string")
    rows = {r.path: r for r in df.mm.apply_operator(ROOT / "udfs" / "aesthetic_score", {"model": str(model)}).collect()}
    direct = image_models.aesthetic_score(image.load(pa.array(paths), storage_options=LOCAL), model=str(model))
    for p, want in zip(paths, direct.to_pylist()):
        assert abs(rows[p].AESTHETIC_SCORE - want["score"]) < 1e-4 and rows[p].AESTHETIC_TAG == want["tag"], p


def test_whisper_asr_package(spark):
    paths = [str(p) for p in sorted(LIBRIVOX.glob("*.wav"))[:3]]
    df = spark.createDataFrame([(p,) for p in paths], "path string")
    rows = {r.path: r for r in df.mm.apply_operator(ROOT / "udfs" / "whisper_asr", {"model": "tiny.en"}).collect()}
    direct = speech.transcribe(audio.load(pa.array(paths), storage_options=LOCAL), model="tiny.en").to_pylist()
    for p, want in zip(paths, direct):
        assert rows[p].text == want["text"] and rows[p].words == len(want["text"].split()), p


def test_install_script_runs_once_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    counter = tmp_path / "runs"
    script = f"echo run >> {counter}\n"
    udfs.run_install(script)
    udfs.run_install(script)
    assert counter.read_text().count("run") == 1
    with pytest.raises(SparkmmError, match="install.sh failed"):
        udfs.run_install("exit 3\n")


CLUSTER_SCRIPT = """
from pyspark.sql import functions as F
import json, os, sys
os.environ["PYSPARK_PYTHON"] = sys.executable
import pandas as pd
import sparkmm
from sparkmm import udfs

spark = sparkmm.session(**{
    "spark.master": "local-cluster[2,1,1024]",
    "spark.worker.resource.gpu.amount": "2", "spark.worker.resource.gpu.discoveryScript": sys.argv[1],
    "spark.executor.resource.gpu.amount": "2", "spark.executor.resource.gpu.discoveryScript": sys.argv[1],
    "spark.executorEnv.PYSPARK_PYTHON": sys.executable,
})
op = udfs.load(sys.argv[2])
df = spark.range(12).repartition(4)
rows = [r.asDict() for r in df.mm.apply_operator(op, batch_rows=2).collect()]

def gpus(p: pd.DataFrame) -> pd.DataFrame:
    from pyspark import TaskContext
    r = TaskContext.get().resources()
    return pd.DataFrame({"id": p["id"], "gpu": ",".join(r["gpu"].addresses) if "gpu" in r else ""})

chunk = [r.asDict() for r in df.mm.apply_chunk(gpus, "id long, gpu string", gpus=0.5).collect()]
cpu = [r.asDict() for r in df.mm.apply_chunk(gpus, "id long, gpu string").collect()]
photos = spark.createDataFrame([(p,) for p in sys.argv[3:]], "path string").withColumn("img", F.col("path").image.load())
labels = [r.top[0].label for r in photos.mm.infer("img", "image.classify", "top", gpus=0.5, model="efficientnet-lite0",
                                                   top_k=1).orderBy("path").collect()]
print("RESULT" + json.dumps({"rows": rows, "chunk": chunk, "cpu": cpu, "labels": labels,
                             "app": spark.sparkContext.applicationId}))
spark.stop()
"""

RECORDING_PACKAGE = """
import os
import pandas as pd
from pyspark import TaskContext


def _gpu():
    r = TaskContext.get().resources()
    return ",".join(r["gpu"].addresses) if "gpu" in r else ""


class PreProcess:
    output_schema = "id long, pre_gpu string"
    def __init__(self, args): pass
    def __call__(self, df):
        return pd.DataFrame({"id": df["id"], "pre_gpu": _gpu()})


class Process:
    output_schema = "id long, pre_gpu string, gpu string, pid int, part int, loads int"
    gpus = 0.5
    def __init__(self, args):
        self.loaded_in = os.getpid()
    def __call__(self, df):
        from sparkmm.models.cache import LOADS
        loads = sum(v for k, v in LOADS.items() if k[0] == "udf" and k[3] == "Process")
        return df.assign(gpu=_gpu(), pid=os.getpid(), part=TaskContext.get().partitionId(), loads=loads)


class PostProcess:
    output_schema = "id long, pre_gpu string, gpu string, post_gpu string, pid int, part int, loads int"
    def __init__(self, args): pass
    def __call__(self, df):
        return df.assign(post_gpu=_gpu())
"""


@pytest.mark.slow
def test_gpu_stage_gets_gpus_on_a_local_cluster(tmp_path, photo_dir):
    discovery = tmp_path / "gpus.sh"
    discovery.write_text('#!/usr/bin/env bash\necho \'{"name": "gpu", "addresses": ["0", "1"]}\'\n')
    discovery.chmod(0o755)
    package = _write_package(tmp_path / "recorder", RECORDING_PACKAGE)
    script = tmp_path / "cluster.py"
    script.write_text(CLUSTER_SCRIPT)
    photos = sorted(str(photo_dir / n) for n in ("coffee.png", "chelsea.png"))
    done = subprocess.run([sys.executable, str(script), str(discovery), str(package), *photos], capture_output=True,
                          text=True, timeout=400, cwd=ROOT)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    assert done.returncode == 0 and line, done.stderr[-3000:]
    result = json.loads(line[0][len("RESULT"):])
    import shutil

    import pyspark

    # local-cluster workers write executor logs under the pyspark package: remove this run's
    work = Path(pyspark.__file__).parent / "work"
    shutil.rmtree(work / result["app"], ignore_errors=True)
    if work.is_dir() and not any(work.iterdir()):
        work.rmdir()
    rows = result["rows"]
    assert sorted(r["id"] for r in rows) == list(range(12))
    assert all(r["pre_gpu"] == "" and r["post_gpu"] == "" for r in rows)  # CPU stages hold no GPU
    assert all(r["gpu"] in ("0", "1") for r in rows)  # the inference stage's tasks got a GPU address
    assert all(r["loads"] == 1 for r in rows)  # Process built once per Python worker
    parts: dict[int, set[int]] = {}
    for r in rows:
        parts.setdefault(r["pid"], set()).add(r["part"])
    assert max(len(p) for p in parts.values()) >= 2, parts  # a worker kept its Process across tasks
    assert all(r["gpu"] in ("0", "1") for r in result["chunk"])
    assert all(r["gpu"] == "" for r in result["cpu"])
    assert result["labels"][1] == "espresso"  # a model stage under the GPU profile on executors (CPU here)


def test_model_stage_equals_the_accessor(spark, photo_dir):
    from pyspark.sql import functions as F

    paths = [str(p) for p in sorted(photo_dir.iterdir())]
    df = spark.createDataFrame([(p,) for p in paths], "path string").withColumn("img", F.col("path").image.load())
    staged = {r.path: r.top for r in df.mm.infer("img", "image.classify", "top", gpus=0.5, model="efficientnet-lite0",
                                                   top_k=2).collect()}
    direct = {r.path: r.top for r in df.select("path", F.col("img").image.classify(
        model="efficientnet-lite0", top_k=2).alias("top")).collect()}
    assert staged == direct and len(staged) == len(paths)
    with pytest.raises(ValueError, match="unknown operator"):
        df.mm.infer("img", "image.nope", "x")
    with pytest.raises(ValueError, match="use the Column accessor"):
        df.mm.infer("img", "image.resize", "x", size=(2, 2))
    with pytest.raises(TypeError, match="unexpected argument 'modle'"):
        df.mm.infer("img", "image.embed", "x", modle="efficientnet-lite0")


def test_gpu_profile_conf_and_discovery_script():
    from sparkmm.spark.session import CONF_DIR, read_conf

    conf = read_conf(CONF_DIR / "gpu.conf")
    script = Path(conf["spark.executor.resource.gpu.discoveryScript"])
    assert script == CONF_DIR.resolve() / "gpu-discovery.sh" and "spark.task.resource.gpu.amount" not in conf
    for env, want in (({"CUDA_VISIBLE_DEVICES": "3,5"}, ["0", "1"]), ({"CUDA_VISIBLE_DEVICES": "", "PATH": "/bin"}, [])):
        out = subprocess.run([str(script)], capture_output=True, text=True, env=env, check=True).stdout
        assert json.loads(out) == {"name": "gpu", "addresses": want}
