"""Progress of a running pipeline, per Spark stage, for terminals, notebooks and log files.

A background thread polls Spark's status tracker twice a second and prints one line whenever a
stage advances (``[name] writing out/x: stage 4 12/40 tasks, 2 running``); in a terminal the line is
rewritten in place. The stages seen are kept for the run summary. On Spark Connect (no status tracker) only the
phases are printed.

Example:
    >>> with Progress(spark, label="demo") as p:      # doctest: +SKIP
    ...     p.phase("writing")
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


class Progress:
    def __init__(self, spark: Any, enabled: bool = True, label: str = "", interval: float = 0.5,
                 stream: TextIO | None = None) -> None:
        self.enabled, self.label, self.interval = enabled, label, interval
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.stages: list[dict[str, Any]] = []
        self._seen: dict[int, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._phase = ""
        self._spark = spark
        try:
            self._tracker = spark.sparkContext.statusTracker()
        except Exception:  # Spark Connect
            self._tracker = None
        self._thread = threading.Thread(target=self._loop, name="sparkmm-progress", daemon=True)

    def __enter__(self) -> "Progress":
        if self.enabled and self._tracker is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._poll()
        if self.enabled and self.tty:
            self.stream.write("\n")

    def phase(self, what: str) -> None:
        self._phase = what
        try:  # shows in the Spark UI too
            self._spark.sparkContext.setJobDescription(f"{self.label}: {what}")
        except Exception:
            pass
        if self.enabled:
            self._write(f"[{self.label}] {what}", newline=True)

    def _write(self, text: str, newline: bool = False) -> None:
        if self.tty and not newline:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(("\r\x1b[2K" if self.tty else "") + text + "\n")
        self.stream.flush()

    def _poll(self) -> None:
        if self._tracker is None:
            return
        for sid in self._tracker.getActiveStageIds():
            info = self._tracker.getStageInfo(sid)
            if info is None:
                continue
            state = (info.numCompletedTasks, info.numTasks)
            if self._seen.get(sid) != state:
                if sid not in self._seen:
                    self.stages.append({"stage": sid, "phase": self._phase, "tasks": info.numTasks})
                self._seen[sid] = state
                if self.enabled:
                    self._write(f"[{self.label}] {self._phase}: stage {sid} "
                                f"{info.numCompletedTasks}/{info.numTasks} tasks, {info.numActiveTasks} running")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._poll()
            except Exception:  # progress must never break the job
                time.sleep(self.interval)
