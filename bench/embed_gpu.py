"""Inference-kernel benchmark (no Spark): sparkmm's image.embed kernel vs the bare model forward.

A DINOv2-large-sized ViT (24 layers, 1024 wide, patch 14, 224x224; random init, saved to a
directory and loaded through the same path a user's model takes) in bfloat16. The kernel's time
covers everything from JPEG bytes to embeddings (decode - nvJPEG on CUDA -, resize, crop, normalise,
forward, copy back); the bare model's covers the forward pass on a ready tensor on the device, at
the same batch size. Prints a table and saves JSON under bench/results/.

    python bench/embed_gpu.py                    # on a CUDA machine
    python bench/embed_gpu.py --tiny --device cpu --images 64 --batch 16   # a smoke run anywhere
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))


def build_model(directory: Path, tiny: bool) -> str:
    import torch
    import transformers as T

    torch.manual_seed(0)
    if tiny:
        config = T.Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                image_size=224, patch_size=14)
    else:  # DINOv2-large
        config = T.Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                intermediate_size=4096, image_size=224, patch_size=14)
    T.Dinov2Model(config).save_pretrained(directory)
    T.BitImageProcessor(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, do_center_crop=True,
                        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(directory)
    return str(directory)


def make_jpegs(n: int) -> list[bytes]:
    """Photo-like JPEGs of 500x375 (smooth gradients + noise), distinct per index."""
    from PIL import Image

    out = []
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:375, 0:500]
    for i in range(n):
        base = np.stack([(xx * (i % 7 + 1)) % 256, (yy * (i % 5 + 1)) % 256, ((xx + yy) * (i % 3 + 1)) % 256], -1)
        px = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model (smoke test)")
    ap.add_argument("--out", default=str(ROOT / "results" / "embed_gpu.json"))
    args = ap.parse_args()

    import pyarrow as pa
    import torch

    from sparkmm.models import vision
    from sparkmm.ops import image, image_models

    directory = build_model(Path(tempfile.mkdtemp(prefix="dinov2-")), args.tiny)
    jpegs = make_jpegs(args.images)
    values = image.decode(pa.array(jpegs))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def kernel() -> int:
        out = image_models.embed(values, model=directory, batch_size=args.batch, device=args.device, dtype=args.dtype)
        return out.null_count

    model = vision.load_vision(directory, vision.placement(args.device), args.dtype)
    x = torch.randn(args.batch, 3, 224, 224).to(model.device, model.dtype)

    def bare() -> int:
        with torch.inference_mode():
            for _ in range(0, args.images, args.batch):
                model.net(pixel_values=x).last_hidden_state[:, 0].float().cpu()
        sync()
        return 0

    results = {}
    for name, fn in (("sparkmm_kernel", kernel), ("bare_forward", bare)):
        assert fn() == 0  # warm-up (and every image embedded)
        best = float("inf")
        for _ in range(args.reps):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            best = min(best, time.perf_counter() - t)
        results[name] = {"seconds": round(best, 3), "images_per_second": round(args.images / best, 1)}
        print(f"  {name:<15} {best:7.3f} s  {args.images / best:8.1f} img/s", flush=True)
    ratio = round(results["sparkmm_kernel"]["images_per_second"] / results["bare_forward"]["images_per_second"], 3)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"\n| runner | images/s | vs bare forward | target |\n|---|---:|---:|---:|\n"
          f"| sparkmm kernel (JPEG bytes -> embeddings) | {results['sparkmm_kernel']['images_per_second']} | "
          f"{ratio} | >= 0.8 |\n| bare model forward | {results['bare_forward']['images_per_second']} | 1.0 | |")
    report = {"benchmark": "embed_gpu", "device": device, "model": "dinov2-large (random init)" if not args.tiny
              else "dinov2-tiny", "dtype": args.dtype, "batch": args.batch, "images": args.images,
              "results": results, "kernel_vs_bare": ratio, "meets_target": ratio >= 0.8,
              "nvjpeg": vision.gpu_decoder_available(vision.placement(args.device)),
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
