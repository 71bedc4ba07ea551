"""Driver program for ``sparkmm submit``: spark-submit runs this file with the pipeline's path.

    spark-submit [...] sparkmm/pipeline/driver.py pipeline.yaml [--set k=v ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sparkmm-driver")
    ap.add_argument("pipeline")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from pyspark.sql import SparkSession

    import sparkmm
    from sparkmm.pipeline import format_summary, load, run

    p = load(args.pipeline, args.sets)
    spark = SparkSession.builder.getOrCreate()  # spark-submit's master, conf and properties file
    sparkmm.register(spark)
    summary = run(spark, p)
    print(json.dumps(summary, default=str) if args.json else format_summary(summary), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
