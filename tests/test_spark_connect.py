"""The same accessors, SQL functions and mixin on a Spark Connect session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from pyspark.sql import functions as F

import sparkmm

SCRIPT = textwrap.dedent("""
    import json, sys
    import sparkmm
    from pyspark.sql import functions as F
    spark = sparkmm.session(remote="local[2]")
    assert type(spark).__module__.startswith("pyspark.sql.connect"), type(spark)
    df = (sparkmm.read.files(spark, sys.argv[1]).withColumn("img", F.col("path").image.load())
          .withColumn("thumb", F.col("img").image.resize((40, 30)).image.convert("L").image.phash())
          .mm.image_properties("img"))
    rows = sorted((r.path, r.width, r.height, r.mode, r.thumb) for r in df.collect())
    sparkmm.register(spark)
    df.createOrReplaceTempView("photos")
    sql = sorted(tuple(r) for r in spark.sql(
        "SELECT path, mm_image_width(img), mm_image_height(img), mm_image_mode(img), "
        "mm_image_phash(mm_image_convert(mm_image_resize(img, 40, 30), 'L')) FROM photos").collect())
    summary = df.mm.error_summary("img").count()
    print("RESULT" + json.dumps({"api": rows, "sql": sql, "errors": summary}))
""")


@pytest.mark.slow
def test_connect_session_gives_the_classic_results(spark, photo_dir, tmp_path):
    pattern = str(photo_dir / "*.png")
    script = tmp_path / "connect_job.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    proc = subprocess.run([sys.executable, str(script), pattern], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.split("RESULT", 1)[1])
    classic = (sparkmm.read.files(spark, pattern).withColumn("img", F.col("path").image.load())
               .withColumn("thumb", F.col("img").image.resize((40, 30)).image.convert("L").image.phash())
               .mm.image_properties("img"))
    want = sorted([r.path, r.width, r.height, r.mode, r.thumb] for r in classic.collect())
    assert [list(r) for r in got["api"]] == want
    assert [list(r) for r in got["sql"]] == want
    assert got["errors"] == 0
