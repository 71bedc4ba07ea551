"""Labelling a Delta table: sparkmm.delta.add_columns vs the naive read-all / withColumn / overwrite.

A table of >= 5,000 rows with an image-bytes column gets two label columns (score float,
tag string) from the same cheap function, both ways, side by side in one process tree.
Reports wall time, bytes read and written (from the Delta log: the files each way reads
and adds) and the number of commits; prints a table and saves JSON under bench/results/.

    .venv/bin/python bench/delta_labels.py --rows 5000
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
from PIL import Image

ROOT = Path(__file__).resolve().parent


def score_and_tag(jpg: pd.Series) -> pd.DataFrame:
    """The cheap labelling function both ways run: a size-based score and its tag."""
    n = jpg.map(len)
    score = (n / 4000.0).astype("float32")
    tag = pd.cut(score, [-1, 3.7, 5.5, 7.1, 1e9], labels=["very displeasing", "displeasing", "aesthetic",
                                                          "very aesthetic"]).astype(str)
    return pd.DataFrame({"score": score, "tag": tag})


def make_table(spark, path: str, rows: int) -> None:
    import random

    from pyspark.sql import functions as F

    import sparkmm  # noqa: F401  (installs df.mm)
    from sparkmm.jobs.samples import sample_photos

    photos = [Image.open(p).convert("RGB") for p in sample_photos()]
    rng = random.Random(0)

    def jpeg(i: int) -> bytes:  # a distinct real-photo crop per row, so no encoding can dedupe rows
        im = photos[i % len(photos)]
        w, h = im.size
        x, y = rng.randint(0, w // 3), rng.randint(0, h // 3)
        buf = io.BytesIO()
        im.crop((x, y, x + w // 2, y + h // 2)).resize((320, 240)).save(buf, "JPEG", quality=85 + i % 10)
        return buf.getvalue()

    df = spark.createDataFrame([(i, f"img_{i:06d}", jpeg(i)) for i in range(rows)],
                               "id long, name string, jpg binary").repartition(8)
    df.withColumn("width", F.lit(320)).mm.write_delta(path, mode="overwrite")


def snapshot_bytes(path: str, version: int) -> int:
    from deltalake import DeltaTable

    return int(pa.table(DeltaTable(path, version=version).get_add_actions(flatten=True)).column("size_bytes")
               .to_numpy().sum())


def added_bytes(path: str, before: int, after: int) -> int:
    """Bytes of the files that the versions after ``before`` up to ``after`` added."""
    from deltalake import DeltaTable

    old = set(pa.table(DeltaTable(path, version=before).get_add_actions()).column("path").to_pylist())
    now = pa.table(DeltaTable(path, version=after).get_add_actions(flatten=True))
    return int(sum(s for p, s in zip(now.column("path").to_pylist(), now.column("size_bytes").to_pylist())
                   if p not in old))


def run_add_columns(spark, path: str) -> None:
    import sparkmm

    sparkmm.delta.add_columns(spark, path, lambda df: score_and_tag(df["jpg"]), ["jpg"],
                              "score float, tag string")


def run_naive(spark, path: str) -> None:
    from pyspark.sql import functions as F

    import sparkmm

    @F.pandas_udf("score float, tag string")
    def label(jpg: pd.Series) -> pd.DataFrame:
        return score_and_tag(jpg)

    df = sparkmm.delta.read(spark, path).withColumn("l", label("jpg"))
    df = df.withColumn("score", F.col("l.score")).withColumn("tag", F.col("l.tag")).drop("l")
    df.mm.write_delta(path, mode="overwrite")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--out", default=str(ROOT / "results" / "delta_labels.json"))
    args = ap.parse_args()

    import sparkmm
    from deltalake import DeltaTable

    spark = sparkmm.session(**{"spark.master": "local[2]"})
    work = Path(tempfile.mkdtemp(prefix="sparkmm-bench-"))
    base = str(work / "base")
    make_table(spark, base, args.rows)
    table_bytes = snapshot_bytes(base, 0)
    print(f"table: {args.rows} rows, {table_bytes / 1e6:.1f} MB in "
          f"{pa.table(DeltaTable(base).get_add_actions()).num_rows} files", flush=True)

    results = {}
    for name, fn in [("warmup_add", run_add_columns), ("warmup_naive", run_naive),
                     ("add_columns", run_add_columns), ("naive_overwrite", run_naive)]:
        path = str(work / name)
        shutil.copytree(base, path)
        before = DeltaTable(path).version()
        read = snapshot_bytes(path, before)
        start = time.perf_counter()
        fn(spark, path)
        seconds = time.perf_counter() - start
        after = DeltaTable(path).version()
        rows = DeltaTable(path).to_pyarrow_table(columns=["id", "score", "tag"])
        assert rows.num_rows == args.rows and rows.column("score").null_count == 0, name
        if name.startswith("warmup"):
            continue
        results[name] = {"seconds": round(seconds, 2), "bytes_read": read, "bytes_written": added_bytes(path, before, after),
                         "commits": after - before}
        print(f"  {name:<16} {seconds:6.2f} s", flush=True)

    print("\n| way | seconds | MB read | MB written | commits |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']} | {r['bytes_read'] / 1e6:.1f} | {r['bytes_written'] / 1e6:.1f} | {r['commits']} |")
    speedup = results["naive_overwrite"]["seconds"] / results["add_columns"]["seconds"]
    print(f"\nadd_columns is {speedup:.2f}x the naive overwrite; one commit: {results['add_columns']['commits'] == 1}")
    report = {"benchmark": "delta_labels", "rows": args.rows, "table_bytes": table_bytes, "results": results,
              "speedup": round(speedup, 2), "python": sys.version.split()[0],
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"saved {args.out}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
