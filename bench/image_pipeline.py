"""Image pipeline benchmark: decode -> properties -> resize 224x224 -> encode JPEG.

Runs side by side, in one process tree, over the same >= 1,000 JPEG photos of ~2 MP:

- sparkmm        local[2]: read.files -> image.load -> width/height -> resize -> encode
- naive PySpark  local[2]: binaryFile content -> row-at-a-time ``udf`` with PIL
- python floor   the same sparkmm kernels in a 2-process pool, no Spark
- daft           Daft's own download/decode/resize/encode functions

Prints a table (images/s and ratios) and saves it as JSON under bench/results/.

    .venv/bin/python bench/image_pipeline.py --images 1000
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from report import compare, save, table  # noqa: E402

SIZE = (224, 224)


# ----------------------------------------------------------------------------- data

def _make_photo(args: tuple[int, str, str]) -> None:
    i, src, dst = args
    rng = random.Random(i)
    im = Image.open(src).convert("RGB")
    w, h = im.size
    cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    target = (1600, 1200) if rng.random() < 0.75 else (1200, 1600)
    im = im.crop((x, y, x + cw, y + ch)).resize(target, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # sensor-like noise so files have the entropy (and decode cost) of real photos
    px = np.asarray(im, dtype=np.int16) + np.random.default_rng(i).normal(0, 6, (target[1], target[0], 3)).astype(np.int16)
    Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(dst, "JPEG", quality=90)


def make_photos(n: int, directory: Path) -> list[Path]:
    from sparkmm.jobs.samples import sample_photos

    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"photo_{i:05d}.jpg" for i in range(n)]
    todo = [(i, str(sample_photos()[i % len(sample_photos())]), str(p)) for i, p in enumerate(paths) if not p.exists()]
    if todo:
        print(f"generating {len(todo)} photos in {directory} ...", flush=True)
        with mp.Pool(2) as pool:
            pool.map(_make_photo, todo, chunksize=16)
    return paths


# ----------------------------------------------------------------------------- runners

def run_sparkmm(spark, pattern: str) -> tuple[int, int]:
    import sparkmm  # noqa: F401  (installs the accessors)
    from pyspark.sql import functions as F

    img = F.col("img")
    df = (sparkmm.read.files(spark, pattern)
          .select(F.col("path").image.load().alias("img"))
          .select(img.image.width.alias("w"), img.image.height.alias("h"),
                  img.image.resize(SIZE).image.encode("JPEG").alias("thumb")))
    row = df.agg(F.count("thumb"), F.sum(F.col("w") * F.col("h"))).first()
    return row[0], row[1]


def run_naive(spark, pattern: str) -> tuple[int, int]:
    from pyspark.sql import functions as F

    @F.udf("struct<w:int,h:int,thumb:binary>", useArrow=False)
    def process(content):
        im = Image.open(io.BytesIO(content))
        w, h = im.size
        out = io.BytesIO()
        im.resize(SIZE, Image.Resampling.LANCZOS).save(out, "JPEG", quality=90)
        return (w, h, out.getvalue())

    df = spark.read.format("binaryFile").load(pattern).select(process("content").alias("r"))
    row = df.agg(F.count("r.thumb"), F.sum(F.col("r.w") * F.col("r.h"))).first()
    return row[0], row[1]


def _floor_batch(paths: list[str]) -> tuple[int, int]:
    import pyarrow as pa

    from sparkmm.ops import image as K
    from sparkmm.ops import url as U

    data = U.download(pa.array(paths), storage_options={"allow_local_files": True})
    img = K.decode(data)
    pixels = int(np.nansum(np.array(K.width(img).to_pylist(), float) * np.array(K.height(img).to_pylist(), float)))
    thumbs = K.encode(K.resize(img, SIZE), "JPEG")
    return len(thumbs) - thumbs.null_count, pixels


def run_floor(pattern: str, pool) -> tuple[int, int]:
    import glob

    paths = sorted(glob.glob(pattern))
    batches = [paths[i:i + 64] for i in range(0, len(paths), 64)]
    results = pool.map(_floor_batch, batches, chunksize=1)
    return sum(r[0] for r in results), sum(r[1] for r in results)


def run_daft(pattern: str) -> tuple[int, int]:
    import daft
    from daft import col
    from daft import functions as dfn

    df = daft.from_glob_path(pattern)
    df = df.with_column("img", dfn.decode_image(dfn.download(col("path"))))
    df = df.select(dfn.image_width(col("img")).alias("w"), dfn.image_height(col("img")).alias("h"),
                   dfn.encode_image(dfn.resize(col("img"), SIZE[0], SIZE[1]), "JPEG").alias("thumb"))
    out = df.select(col("thumb").not_null().alias("ok"), (col("w") * col("h")).alias("px")).to_pydict()
    return sum(out["ok"]), int(sum(out["px"]))


# ----------------------------------------------------------------------------- main

def timed(fn, reps: int) -> tuple[float, tuple[int, int]]:
    best, result = float("inf"), None
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--reps", type=int, default=2, help="repetitions; the best time counts")
    ap.add_argument("--out", default=str(ROOT / "results" / "image_pipeline.json"))
    ap.add_argument("--skip", action="append", default=[], help="runner to skip (naive, daft, ...)")
    args = ap.parse_args()

    paths = make_photos(args.images, Path(args.data) / f"photos_{args.images}")
    pattern = str(paths[0].parent / "*.jpg")
    mp_per_image = float(np.mean([np.prod(Image.open(p).size) for p in paths[:50]])) / 1e6
    mb_per_image = float(np.mean([p.stat().st_size for p in paths])) / 1e6

    import sparkmm

    spark = sparkmm.session(**{"spark.master": "local[2]"})
    warm = str(paths[0].parent / "photo_0000[0-3]*.jpg")  # 40 files: start the Python workers
    run_sparkmm(spark, warm)
    run_naive(spark, warm)

    results: dict[str, dict] = {}

    def record(name: str, seconds: float, out: tuple[int, int]) -> None:
        ok, pixels = out
        if ok != len(paths):
            raise SystemExit(f"{name}: only {ok} of {len(paths)} images produced a thumbnail")
        results[name] = {"seconds": round(seconds, 3), "images_per_second": round(len(paths) / seconds, 1),
                         "megapixels_checked": round(pixels / 1e6, 1)}
        print(f"  {name:<14} {seconds:7.2f} s  {len(paths) / seconds:7.1f} img/s", flush=True)

    print(f"{len(paths)} JPEGs, {mp_per_image:.2f} MP, {mb_per_image:.2f} MB each; best of {args.reps}", flush=True)
    record("sparkmm", *timed(lambda: run_sparkmm(spark, pattern), args.reps))
    if "naive" not in args.skip:
        record("naive_udf", *timed(lambda: run_naive(spark, pattern), args.reps))
    spark.stop()
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_floor_batch, [[str(p)] for p in paths[:2]])  # import the kernels in both workers
        record("python_floor", *timed(lambda: run_floor(pattern, pool), args.reps))
    if "daft" not in args.skip:
        try:
            run_daft(warm)
            record("daft", *timed(lambda: run_daft(pattern), args.reps))
        except Exception as e:  # report, don't hide: the table says Daft did not run
            print(f"  daft failed: {type(e).__name__}: {e}", flush=True)
            results["daft"] = {"error": f"{type(e).__name__}: {e}"}

    compare(results, "images_per_second", {"naive_udf": 4.0, "python_floor": 0.8, "daft": 1.2})
    print("\n" + table(results, [("seconds", "seconds"), ("images/s", "images_per_second")]))
    save(args.out, "image_pipeline", results, images=len(paths), megapixels_per_image=round(mp_per_image, 2),
         mb_per_image=round(mb_per_image, 2), reps=args.reps)


if __name__ == "__main__":
    main()
