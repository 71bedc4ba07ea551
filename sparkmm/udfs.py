"""Operator packages (seed 001): a directory with ``process.py`` holding ``PreProcess`` (optional),
``Process`` (required) and ``PostProcess`` (optional), plus an optional ``install.sh``.

Each class is constructed with the operator's ``args`` dict and called with a pandas DataFrame; it
returns a pandas DataFrame. Each declares what it returns as ``output_schema`` (a Spark DDL string).
``Process`` may declare ``gpus`` (GPUs per task, fractions allowed): its stage then runs under a GPU
resource profile, while PreProcess and PostProcess run in CPU stages, so CPU work never holds a GPU.
Instances are built once per Python worker (the model in ``Process.__init__`` loads once).

The package's code travels with the plan (pickled by value), so executors need no copy of
``process.py``; files it reads (weights) ship with ``spark-submit --archives pkg.zip#pkg`` or
``--files``, and its Python dependencies with ``--py-files`` or the cluster image (``install.sh``).

Example:
    >>> op = load("udfs/aesthetic_score", {"model": "/models/aesthetic"})          # doctest: +SKIP
    >>> df.mm.apply_operator(op).select("path", "AESTHETIC_SCORE").show()          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparkmm.errors import SparkmmError

STAGES = ("PreProcess", "Process", "PostProcess")


@dataclass(frozen=True)
class OperatorPackage:
    """A loaded operator package: its stage classes and arguments."""

    name: str
    path: Path
    args: dict[str, Any] = field(default_factory=dict)
    classes: tuple[tuple[str, type], ...] = ()
    install_script: str | None = None  # install.sh's text: run once per machine before the first call

    @property
    def stages(self) -> list[tuple[str, type]]:
        return list(self.classes)

    def gpus(self) -> float:
        return float(getattr(dict(self.classes)["Process"], "gpus", 0) or 0)

    def key(self, stage: str) -> tuple:
        digest = hashlib.sha256(json.dumps(self.args, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return ("udf", self.name, str(self.path), stage, digest)

    def run_local(self, frame: Any) -> Any:
        """Run the three stages on one pandas DataFrame in this process (for tests and notebooks)."""
        for _, cls in self.classes:
            frame = cls(dict(self.args))(frame)
        return frame


def load(path: str | Path, args: dict[str, Any] | None = None) -> OperatorPackage:
    """Load the operator package at ``path`` (a directory with ``process.py``).

    Example:
        >>> load("/no/such/package")
        Traceback (most recent call last):
        ...
        sparkmm.errors.SparkmmError: operator package /no/such/package has no process.py
    """
    path = Path(path).expanduser().resolve() if Path(path).expanduser().exists() else Path(path)
    script = path / "process.py"
    if not script.is_file():
        raise SparkmmError(f"operator package {path} has no process.py")
    module_name = f"sparkmm_udf_{path.name}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[module_name]
        raise SparkmmError(f"operator package {path.name}: process.py failed to import: {type(e).__name__}: {e}") from e
    from pyspark import cloudpickle  # the copy Spark pickles functions with

    cloudpickle.register_pickle_by_value(module)  # executors get the code with the plan
    classes = []
    for stage in STAGES:
        cls = getattr(module, stage, None)
        if cls is None:
            if stage == "Process":
                raise SparkmmError(f"operator package {path.name}: process.py defines no Process class")
            continue
        if not callable(getattr(cls, "__call__", None)) or not isinstance(cls, type):
            raise SparkmmError(f"operator package {path.name}: {stage} must be a class with __call__(DataFrame)")
        if not isinstance(getattr(cls, "output_schema", None), str):
            raise SparkmmError(f"operator package {path.name}: {stage}.output_schema must be a Spark DDL string "
                               "naming the columns it returns, e.g. 'path string, score float'")
        classes.append((stage, cls))
    install = path / "install.sh"
    return OperatorPackage(path.name, path, dict(args or {}), tuple(classes),
                           install.read_text() if install.is_file() else None)


def apply(df: Any, op: OperatorPackage | str | Path, args: dict[str, Any] | None = None,
          batch_rows: int = 256) -> Any:
    """Run an operator package over a DataFrame: PreProcess and PostProcess in CPU stages, Process in
    the inference stage (a GPU stage when ``Process.gpus`` > 0)."""
    from sparkmm.spark.inference import _Lazy, run_stage

    if not isinstance(op, OperatorPackage):
        op = load(op, args)
    elif args:
        op = OperatorPackage(op.name, op.path, {**op.args, **args}, op.classes, op.install_script)
    for stage, cls in op.stages:
        factory = _bind(cls, op.args, op.install_script)
        df = run_stage(df, _Lazy(op.key(stage), factory), cls.output_schema, batch_rows,
                       gpus=op.gpus() if stage == "Process" else 0.0, what=f"{op.name}.{stage}")
    return df


def _bind(cls: type, args: dict[str, Any], install_script: str | None) -> Any:
    def make() -> Any:
        if install_script:
            run_install(install_script)
        return cls(dict(args))

    return make


def run_install(script: str) -> None:
    """Run a package's install.sh once per machine (a marker keyed by its text; a file lock for concurrency)."""
    import fcntl
    import subprocess
    import tempfile

    digest = hashlib.sha256(script.encode()).hexdigest()[:16]
    base = Path(tempfile.gettempdir()) / f"sparkmm-install-{digest}"
    if base.with_suffix(".done").exists():
        return
    with open(base.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if base.with_suffix(".done").exists():
            return
        # `python` in the script is this worker's interpreter
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SparkmmError(f"operator package install.sh failed (exit {done.returncode}): {done.stderr[-2000:]}")
        base.with_suffix(".done").write_text(done.stdout[-2000:])
