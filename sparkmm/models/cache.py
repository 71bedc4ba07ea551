"""Per-worker model cache and device choice, shared by every model operator. No Spark import.

A Spark Python worker lives across batches and tasks (``spark.python.worker.reuse``), so a
model loaded at module level survives until the worker exits. :func:`load_once` keys each
model by what changes its weights or placement (name, device, precision); ``LOADS`` counts
real loads per key, so tests can prove a model is loaded once per worker.

Example:
    >>> calls = []
    >>> a = load_once(("demo", 1), lambda: calls.append(1) or "model")
    >>> b = load_once(("demo", 1), lambda: calls.append(1) or "model")
    >>> a == b == "model", len(calls), LOADS[("demo", 1)]
    (True, 1, 1)
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter, deque
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, Hashable, Iterable, Iterator

log = logging.getLogger(__name__)

_MODELS: dict[Hashable, Any] = {}
_LOCKS: dict[Hashable, threading.Lock] = {}
_GUARD = threading.Lock()
LOADS: Counter = Counter()
_WARNED: set[str] = set()


def load_once(key: Hashable, loader: Callable[[], Any]) -> Any:
    """The model for ``key``, loaded by ``loader()`` the first time this process asks."""
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:  # threads of one worker asking at once still load once
        if key not in _MODELS:
            _MODELS[key] = loader()
            LOADS[key] += 1
            log.info("loaded model %s in pid %d", key, os.getpid())
        return _MODELS[key]


def loaded() -> list[Hashable]:
    """Keys of the models this process holds."""
    return list(_MODELS)


@dataclass(frozen=True)
class Placement:
    """Where a model runs: ``device`` is "cpu" or "cuda"; ``index`` the GPU ordinal."""

    device: str
    index: int = 0
    threads: int = 1

    @property
    def is_gpu(self) -> bool:
        return self.device == "cuda"


def task_gpus() -> list[int]:
    """GPU ordinals Spark assigned to the running task (empty outside a GPU task)."""
    try:
        from pyspark import TaskContext
    except ImportError:  # kernels also run without Spark
        return []
    ctx = TaskContext.get()
    if ctx is None:
        return []
    gpu = ctx.resources().get("gpu")
    return [int(a) for a in gpu.addresses] if gpu is not None else []


def task_cpus() -> int:
    """Cores Spark gave the running task (``spark.task.cpus``); outside Spark, this machine's cores."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is not None:
            return max(1, int(ctx.cpus()))
    except ImportError:
        pass
    return max(1, os.cpu_count() or 1)


def choose_placement(device: str = "auto", cuda_devices: Callable[[], int] | None = None,
                     threads: int = 0) -> Placement:
    """Pick the device for a model.

    ``auto``: the GPU Spark assigned to the task; else the first visible GPU when
    ``cuda_devices()`` sees one; else the CPU with the task's cores. ``cuda``/``cuda:N``/
    ``cpu`` force a choice. ``threads`` (0 = the task's cores) sizes CPU inference.

    Example:
        >>> choose_placement("cpu", threads=2)
        Placement(device='cpu', index=0, threads=2)
    """
    threads = threads or task_cpus()
    if device == "cpu":
        return Placement("cpu", 0, threads)
    if device.startswith("cuda"):
        _, _, idx = device.partition(":")
        return Placement("cuda", int(idx or 0), threads)
    if device != "auto":
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    visible = cuda_devices() if cuda_devices is not None else 0
    assigned = task_gpus()
    if assigned and visible > 0:
        return Placement("cuda", assigned[0], threads)
    if assigned and "no-cuda" not in _WARNED:  # a GPU task on a host (or a build) without CUDA
        _WARNED.add("no-cuda")
        log.warning("task was assigned GPU %s but CUDA is not usable in this worker: running on the CPU", assigned)
    if visible > 0 and not assigned:
        return Placement("cuda", 0, threads)
    return Placement("cpu", 0, threads)


def prefetch(fn: Callable[[Any], Any], items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """``fn(item)`` for each item, in order, computed in a background thread ``depth`` items ahead.

    The caller's loop (model inference) overlaps the preparation of the next items
    (decoding, preprocessing), which release the GIL in native code.

    Example:
        >>> list(prefetch(lambda x: x * x, range(5)))
        [0, 1, 4, 9, 16]
    """
    from concurrent.futures import ThreadPoolExecutor

    items = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="sparkmm-prefetch") as pool:
        window = deque(pool.submit(fn, x) for x in islice(items, depth))
        while window:
            done = window.popleft().result()
            for x in islice(items, 1):
                window.append(pool.submit(fn, x))
            yield done
