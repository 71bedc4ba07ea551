"""``sparkmm submit``: the same pipeline file through the real ``spark-submit`` (shipped with pyspark).

sparkmm and ``udfs/`` are zipped and passed with ``--py-files`` so executors on any cluster import
them; the pipeline file travels with ``--files``; the driver runs ``sparkmm/pipeline/driver.py``.

Example:
    >>> cmd = command("pipelines/image_cleaning.yaml", ["--master", "local[2]"], [], "/tmp/x")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pyspark

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent


def _zip(source: Path, target: Path, arcroot: str) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(source.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                z.write(f, f"{arcroot}/{f.relative_to(source)}")
    return target


def spark_submit() -> str:
    """pyspark's own ``spark-submit``."""
    path = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    if not path.is_file():
        found = shutil.which("spark-submit")
        if found is None:
            raise FileNotFoundError("spark-submit not found (pyspark's bin/ or PATH)")
        return found
    return str(path)


def command(pipeline: str, spark_args: list[str], sets: list[str], workdir: str, profile: str = "local") -> list[str]:
    """The spark-submit command line for a pipeline (packages sparkmm and udfs/ into ``workdir``).

    Without a ``--properties-file`` in ``spark_args``, the pipeline's profile (``spark-conf/<profile>.conf``)
    is passed, so a submitted run has the settings of ``sparkmm run``; ``--master``/``--conf`` still win.
    """
    work = Path(workdir)
    if "--properties-file" not in spark_args:
        from sparkmm.spark.session import CONF_DIR, read_conf

        conf = read_conf(CONF_DIR / f"{profile}.conf")  # ${SPARKMM_CONF_DIR} expanded for spark-submit
        props = work / f"{profile}.conf"
        props.write_text("".join(f"{k} {v}\n" for k, v in conf.items()))
        spark_args = ["--properties-file", str(props), *spark_args]
    zips = [str(_zip(PACKAGE, work / "sparkmm.zip", "sparkmm"))]
    if (ROOT / "udfs").is_dir():
        zips.append(str(_zip(ROOT / "udfs", work / "udfs.zip", "udfs")))
    driver = PACKAGE / "pipeline" / "driver.py"
    cmd = [spark_submit(), "--py-files", ",".join(zips), "--conf", f"spark.pyspark.python={sys.executable}",
           "--conf", f"spark.pyspark.driver.python={sys.executable}", *spark_args, str(driver),
           str(Path(pipeline).resolve())]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def submit(pipeline: str, spark_args: list[str], sets: list[str], json_out: bool = False,
           profile: str = "local") -> int:
    """Run ``spark-submit`` for a pipeline; returns its exit code."""
    from sparkmm.spark.session import _ensure_java

    _ensure_java()
    with tempfile.TemporaryDirectory(prefix="sparkmm-submit-") as work:
        cmd = command(pipeline, spark_args, sets, work, profile)
        if json_out:
            cmd.append("--json")
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
        return subprocess.run(cmd, env=env).returncode
