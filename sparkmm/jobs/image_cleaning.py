"""The main job: seed 000's use cases 1 and 2 on local Spark.

1. Extract and filter image properties (width, height, size, format, mode).
2. Preprocess: resize to 224x224, crop (100, 100, 500, 500), convert to RGB.

Writes Delta tables (``<output>/properties``, ``<output>/preprocessed``) and prints a summary.

Example:
    >>> from sparkmm.jobs.image_cleaning import run
    >>> summary = run(spark, "photos/*.jpg", "out/images")     # doctest: +SKIP
    >>> summary["rows_in"]                                     # doctest: +SKIP
    12
"""

from __future__ import annotations

import time
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import sparkmm


def run(spark: SparkSession, inputs: str | list[str], output: str,
        min_size: tuple[int, int] = (400, 300), max_size: tuple[int, int] = (5000, 6000)) -> dict[str, Any]:
    """Run both use cases and return the summary (also printed by the CLI)."""
    start = time.time()
    df = (sparkmm.read.files(spark, inputs)
          .withColumn("id", F.element_at(F.split("path", "/"), -1))
          .withColumn("img", F.col("path").image.load())
          .mm.image_properties("img")
          .cache())
    rows_in = df.count()

    # Use case 1: properties, filtered by width and height ranges.
    kept = df.where(F.col("width").between(min_size[0], max_size[0])
                    & F.col("height").between(min_size[1], max_size[1]))
    props = kept.select("id", "path", "width", "height", "size", "format", "mode") \
        .mm.write_delta(f"{output}/properties", mode="overwrite")

    # Use case 2: preprocessing for training; each output decodes its source once.
    img = F.col("img")
    pre = df.where(F.col("error").isNull()).select(
        "id", "path",
        img.image.resize((224, 224)).image.convert("RGB").image.encode("JPEG").alias("img_resized"),
        img.image.crop((100, 100, 500, 500)).image.encode("PNG").alias("img_cropped"),
        img.image.convert("RGB").image.encode("JPEG").alias("img_rgb"),
    )
    written = pre.mm.write_delta(f"{output}/preprocessed", mode="overwrite")
    failures = [r.asDict() for r in df.mm.error_summary("img").collect()]
    summary = {
        "rows_in": rows_in,
        "rows_kept_by_filter": sparkmm.delta.read(spark, f"{output}/properties").count(),
        "rows_preprocessed": sparkmm.delta.read(spark, f"{output}/preprocessed").count(),
        "rows_failed": sum(f["rows"] for f in failures),
        "failures": failures,
        "seconds": round(time.time() - start, 2),
        "outputs": {"properties": f"{output}/properties", "preprocessed": f"{output}/preprocessed"},
        "format": "delta",
        "engine": written.engine,
        "versions": {"properties": props.version, "preprocessed": written.version},
    }
    summary["images_per_second"] = round(rows_in / summary["seconds"], 2) if summary["seconds"] else None
    df.unpersist()
    return summary


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        "sparkmm image cleaning + preprocessing",
        f"  rows in            {s['rows_in']}",
        f"  kept by filter     {s['rows_kept_by_filter']}",
        f"  preprocessed       {s['rows_preprocessed']}",
        f"  failed             {s['rows_failed']}",
    ]
    for f in s["failures"]:
        lines.append(f"    {f['reason']:<20} {f['rows']:>5}  e.g. {f['example']}")
    lines += [
        f"  time               {s['seconds']} s ({s['images_per_second']} images/s)",
        f"  output             {s['outputs']['properties']} (v{s['versions']['properties']}), "
        f"{s['outputs']['preprocessed']} (v{s['versions']['preprocessed']}) ({s['format']}, engine {s['engine']})",
    ]
    return "\n".join(lines)
