"""Shared by the benchmarks: side-by-side ratios against sparkmm, a markdown table, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def compare(results: dict[str, dict], metric: str, targets: dict[str, float], base: str = "sparkmm") -> None:
    """Add ``sparkmm_ratio`` (sparkmm's ``metric`` over the runner's), ``target`` and ``meets_target``."""
    ours = results[base][metric]
    for name, r in results.items():
        ratio = round(ours / r[metric], 2) if r.get(metric) else None
        target = targets.get(name)
        r.update(sparkmm_ratio=ratio, target=target,
                 meets_target=None if ratio is None or target is None else ratio >= target)


def table(results: dict[str, dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table: the runner, ``columns`` (header, key), then the ratio, target and verdict."""
    head = ["runner", *(h for h, _ in columns), "sparkmm / runner", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(columns) + 2) + "---|"]
    for name, r in results.items():
        met, target = r.get("meets_target"), r.get("target")
        cells = [name, *(str(r.get(k, "")) for _, k in columns), str(r.get("sparkmm_ratio")),
                 "" if target is None else f">= {target}", "" if met is None else ("yes" if met else "NO")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save(path: str, benchmark: str, results: dict[str, dict], **facts: Any) -> None:
    """Write the results with the machine they ran on."""
    report = {"benchmark": benchmark, **facts, "cores": os.cpu_count(), "python": sys.version.split()[0],
              "platform": platform.platform(), "results": results,
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2))
    print(f"\nsaved {path}")
