"""Running a pipeline: build the DataFrame from its steps, write the sink, summarise what happened.

Example:
    >>> from sparkmm.pipeline import load, run
    >>> summary = run(spark, load("pipelines/image_cleaning.yaml"))   # doctest: +SKIP
    >>> summary["rows_out"], summary["output"]["version"]              # doctest: +SKIP
    (11, 0)
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from sparkmm.pipeline.progress import Progress
from sparkmm.pipeline.spec import Pipeline, PipelineError, Step
from sparkmm.spark.mixin import error_columns, error_of

ROOT = Path(__file__).resolve().parents[2]


def source(spark: SparkSession, p: Pipeline) -> DataFrame:
    """The source DataFrame of a pipeline."""
    import sparkmm

    s = p.source
    if "files" in s:
        return sparkmm.read.files(spark, s["files"], recursive=bool(s.get("recursive", False)),
                                  storage_options=s.get("storage_options"))
    if "table" in s:
        return spark.table(s["table"])
    if "delta" in s:
        return sparkmm.delta.read(spark, s["delta"], s.get("version"))
    return sparkmm.read.webdataset(spark, s["webdataset"], s.get("extensions"), s.get("max_member_bytes"),
                                   s.get("storage_options"))


def _args(step: Step) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) and k != "properties" else v
            for k, v in (step.spec.get("args") or {}).items()}


def apply_step(df: DataFrame, step: Step, base: Path) -> DataFrame:
    """One step on a DataFrame."""
    from sparkmm.ops.registry import OPERATORS
    from sparkmm.spark.accessors import apply

    where = f"line {step.line}: {step.label}"
    try:
        if step.kind == "op":
            op = OPERATORS[step.value]
            col = F.col(step.spec["input"])
            return df.withColumn(step.spec["output"], apply(op, col, (), _args(step)))
        if step.kind == "infer":
            return df.mm.infer(step.spec["input"], step.value, step.spec["output"],
                               float(step.spec.get("gpus", 1.0)), **_args(step))
        if step.kind == "operator":
            package = Path(step.value)
            package = package if package.is_absolute() or package.exists() else base / package
            if not package.exists():
                package = ROOT / step.value
            return df.mm.apply_operator(str(package), step.spec.get("args") or {},
                                        int(step.spec.get("batch_rows", 256)))
        if step.kind == "mm":
            # a mapping of names to SQL strings is a mapping of names to Columns (conditions, scores)
            args = {k: ({n: F.expr(e) for n, e in v.items()} if isinstance(v, dict)
                        and all(isinstance(e, str) for e in v.values()) else tuple(v) if k == "size" else v)
                    for k, v in (step.spec.get("args") or {}).items()}
            return getattr(df.mm, step.value)(**args)
        if step.kind == "filter":
            return df.where(F.expr(step.value))
        if step.kind == "columns":
            return df.withColumns({k: F.expr(str(v)) for k, v in step.value.items()})
        if step.kind == "select":
            return df.select(*[F.expr(c) for c in step.value])
        return df.drop(*step.value)
    except PipelineError:
        raise
    except Exception as e:  # analysis errors (unknown column, bad SQL) point at the step
        raise PipelineError(f"{where}: {type(e).__name__}: {str(e).splitlines()[0]}") from e


def build(spark: SparkSession, p: Pipeline, observe: bool = False) -> DataFrame | tuple[DataFrame, list]:
    """The pipeline's DataFrame (lazy: nothing runs until it is written or collected).

    With ``observe``, also the observations ``(column, operator, Observation)``: first the rows leaving
    the source, then every column a step adds that carries an error (media values, model outputs with
    ``error``, ``error`` strings), observed right after that step during the same job, so rows a later
    filter drops are still counted and the source is read once.
    """
    df = source(spark, p)
    base = Path(p.path).resolve().parent
    taps: list[tuple[str, str, Any]] = []
    if observe:  # rows in, counted as they leave the source, in the same job as the write
        from pyspark.sql import Observation

        tap = Observation("sparkmm_rows_in")
        df = df.observe(tap, F.count(F.lit(1)).alias("rows"))
        taps.append(("", "source", tap))
    for step in p.steps:
        before = set(df.columns)
        df = apply_step(df, step, base)
        if observe:
            for column in error_columns(df, ("error", "__error__")):
                if column not in before or step.spec.get("output") == column:
                    df, tap = _observe(df, column, len(taps))
                    taps.append((column, str(step.value if step.kind in ("op", "infer") else step.kind), tap))
    return (df, taps) if observe else df


def _observe(df: DataFrame, column: str, n: int) -> tuple[DataFrame, Any]:
    from pyspark.sql import Observation

    err = error_of(df, column)
    tap = Observation(f"sparkmm_failures_{n}")
    # categories of failed rows (short words) to count by reason; one full reason as an example
    df = df.observe(tap, F.count_if(err.isNotNull()).alias("failed"),
                    F.collect_list(F.split(err, ":").getItem(0)).alias("reasons"),
                    F.min(err).alias("example"))
    return df, tap


def run(spark: SparkSession, p: Pipeline, progress: bool = True) -> dict[str, Any]:
    """Run a pipeline and return its summary (JSON-ready)."""
    import sparkmm

    start = time.time()
    with Progress(spark, enabled=progress, label=p.name) as bar:
        df, taps = build(spark, p, observe=True)
        (_, _, rows_tap), taps = taps[0], taps[1:]
        sink = p.sink
        output: dict[str, Any] | None = None
        if sink is None:
            bar.phase("running")
            rows_out = df.count()
        elif "delta" in sink:
            target = sink["delta"] if isinstance(sink["delta"], dict) else {"path": sink["delta"]}
            bar.phase(f"writing {target['path']}")
            result = sparkmm.delta.write(df, target["path"], target.get("mode", "append"),
                                         target.get("partition_by"), bool(target.get("merge_schema", True)))
            rows_out = sparkmm.delta.read(spark, target["path"], result.version).count()
            output = {"kind": "delta", "path": target["path"], "version": result.version, "engine": result.engine}
        else:
            target = sink["table"] if isinstance(sink["table"], dict) else {"name": sink["table"]}
            bar.phase(f"writing table {target['name']}")
            df.write.mode(target.get("mode", "append")).saveAsTable(target["name"])
            rows_out = spark.table(target["name"]).count()
            output = {"kind": "table", "name": target["name"]}
        rows_in = (_metrics(rows_tap) or {}).get("rows")
        if rows_in is None:  # the write never ran the source (an empty plan): count it
            rows_in = source(spark, p).count()
        failures = []
        for column, operator, tap in taps:
            metrics = _metrics(tap) if rows_in else None
            if not metrics or not metrics["failed"]:
                continue
            counts = Counter(metrics["reasons"])
            example_reason = (metrics["example"] or "").split(":")[0]
            for reason, rows in counts.most_common():
                failures.append({"column": column, "operator": operator, "reason": reason, "rows": rows,
                                 "example": metrics["example"] if reason == example_reason else None})
    seconds = time.time() - start
    return {
        "pipeline": p.name, "file": p.path, "rows_in": rows_in, "rows_out": rows_out,
        # a bad input fails every step after it too: the most failures seen at one step
        "failed_rows": max((sum(f["rows"] for f in failures if f["column"] == c) for c in
                            {f["column"] for f in failures}), default=0),
        "failures": failures,
        "seconds": round(seconds, 2), "rows_per_second": round(rows_in / seconds, 2) if seconds > 0 else None,
        "output": output, "stages": bar.stages,
    }


def _metrics(tap: Any, timeout: float = 60.0) -> dict[str, Any] | None:
    """An observation's metrics; None if its job never ran them (``Observation.get`` would wait forever)."""
    import threading

    box: dict[str, Any] = {}
    t = threading.Thread(target=lambda: box.setdefault("m", tap.get), daemon=True)
    t.start()
    t.join(timeout)
    return box.get("m")


def format_summary(s: dict[str, Any]) -> str:
    """The summary as text for a terminal or a notebook cell."""
    lines = [f"pipeline {s['pipeline']} ({s['file']})",
             f"  rows in {s['rows_in']}, out {s['rows_out']}, in {s['seconds']} s ({s['rows_per_second']} rows/s)"]
    if s["output"]:
        o = s["output"]
        lines.append(f"  output: {o['kind']} {o.get('path') or o.get('name')}"
                     + (f" version {o['version']} ({o['engine']})" if o["kind"] == "delta" else ""))
    if s["failures"]:
        lines.append("  failures:")
        for f in s["failures"]:
            example = f"  e.g. {f['example'][:80]}" if f["example"] else ""
            lines.append(f"    {f['column']:<14} {f['operator']:<18} {f['reason']:<14} {f['rows']:>6}{example}")
    else:
        lines.append("  failures: none")
    return "\n".join(lines)
