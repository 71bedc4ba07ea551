"""Video frame sampling benchmark: 1 frame per second from ~1-minute 720p videos.

Videos: ``--videos`` files of ``--seconds`` s, 1280x720 at 25 fps, H.264 (x264 superfast, 3 Mb/s, with
temporal noise so frames cost what camera footage costs to decode) and AAC audio, made with ffmpeg
into bench/data/videos/ (git-ignored). The keyframe interval is fixed at ``--keyint`` frames
(default 25 = 1 s, scene-cut keyframes off), so at 1 fps every wanted frame is a keyframe: that is
the setting where keyframe sampling gives exactly 1 fps. With longer GOPs ``mode="keyframes"``
gives fewer frames, and fps sampling must decode the GOP prefix up to each wanted frame.

Runners, all producing the same output (a JPEG, quality 90, of each sampled frame), on the same
cores (sparkmm on local[N]; the plain loops in an N-process pool):

- decode_all_filter  plain PyAV: decode every frame, keep the first at or after each 1 s step
- plain_keyframes    plain PyAV: only keyframe packets reach the decoder (skip_frame=NONKEY)
- sparkmm_keyframes  df.mm.extract_frames(fps=1, mode="keyframes")
- sparkmm_fps        df.mm.extract_frames(fps=1): GOPs with no wanted frame are never decoded

Prints a markdown table and saves JSON under bench/results/.

    .venv/bin/python bench/video_frames.py --videos 20 --seconds 60
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def make_videos(n: int, seconds: int, keyint: int, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"video_{i:03d}_{seconds}s_k{keyint}.mp4" for i in range(n)]
    for i, p in enumerate(paths):
        if p.exists():
            continue
        print(f"  encoding {p.name}", flush=True)
        tmp = p.with_suffix(".part.mp4")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=1280x720:rate=25:duration={seconds}", "-f", "lavfi", "-i",
                        f"sine=frequency={200 + 20 * i}:sample_rate=48000:duration={seconds}",
                        "-vf", f"noise=alls=12:allf=t,hue=h={i * 17}", "-c:v", "libx264", "-preset", "superfast",
                        "-b:v", "3M", "-maxrate", "4M", "-bufsize", "8M", "-g", str(keyint), "-keyint_min",
                        str(keyint), "-sc_threshold", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
                        str(tmp)], check=True)
        tmp.rename(p)
    return paths


def _jpeg(frame) -> int:
    buf = io.BytesIO()
    frame.to_image().save(buf, "JPEG", quality=90)
    return len(buf.getvalue())


def decode_all_filter(path: str) -> tuple[int, int, int]:
    """Decode everything, keep 1 frame per second: (frames kept, JPEG bytes, frames decoded)."""
    import av

    kept = size = decoded = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        want = None
        for f in c.decode(s):
            decoded += 1
            t = float(f.pts * s.time_base)
            want = t if want is None else want
            if t >= want - 1e-6:
                kept, size = kept + 1, size + _jpeg(f)
                want = math.floor(t + 1e-6) + 1.0
    return kept, size, decoded


def plain_keyframes(path: str) -> tuple[int, int, int]:
    """Only keyframe packets reach the decoder."""
    import av

    kept = size = decoded = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        s.codec_context.skip_frame = "NONKEY"
        for packet in c.demux(s):
            if packet.is_keyframe or packet.size == 0:
                for f in s.codec_context.decode(packet if packet.size else None):
                    decoded += 1
                    kept, size = kept + 1, size + _jpeg(f)
    return kept, size, decoded


def run_pool(fn, files: list[str], cores: int) -> tuple[int, int, int]:
    with mp.Pool(cores) as pool:
        out = pool.map(fn, files, chunksize=1)
    return tuple(map(sum, zip(*out)))


def run_sparkmm(spark, files: list[str], mode: str) -> tuple[int, int, None]:
    from pyspark.sql import functions as F

    import sparkmm

    df = sparkmm.read.files(spark, files).withColumn("v", F.col("path").video.load())
    frames = df.mm.extract_frames("v", fps=1.0, mode=mode)
    row = frames.agg(F.count(F.col("frame_index")), F.sum(F.length(F.col("image.data"))),
                     F.count(F.col("image.meta.error"))).first()
    if row[2]:
        raise SystemExit(f"sparkmm: {row[2]} videos failed")
    return row[0], row[1], None


def decoded_by_sparkmm_kernel(path: str, mode: str) -> int:
    """Frames the decoder produced in sparkmm's kernel for one file (what each mode decodes)."""
    import pyarrow as pa

    from sparkmm.ops import video

    v = video.load(pa.array([path]), storage_options={"allow_local_files": True})
    stats: dict[str, int] = {}
    for _ in video.iter_frames(None, v.field("meta")[0].as_py(), video.FrameOptions(fps=1.0, mode=mode), stats):
        pass
    return stats["decoded"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--keyint", type=int, default=25, help="keyframe interval in frames (25 fps)")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--data", default=str(ROOT / "data" / "videos"))
    ap.add_argument("--out", default=str(ROOT / "results" / "video_frames.json"))
    args = ap.parse_args()

    paths = make_videos(args.videos, args.seconds, args.keyint, Path(args.data))
    files = [str(p) for p in paths]
    frames_total = args.videos * args.seconds * 25
    print(f"{len(files)} videos x {args.seconds} s, 1280x720 25 fps H.264, keyframe every {args.keyint} frames, "
          f"{sum(p.stat().st_size for p in paths) / 1e6:.0f} MB; {args.cores} cores", flush=True)

    results: dict[str, dict] = {}

    def record(name: str, fn) -> None:
        t = time.perf_counter()
        kept, size, decoded = fn()
        seconds = time.perf_counter() - t
        results[name] = {"seconds": round(seconds, 2), "frames_out": kept, "jpeg_mb": round(size / 1e6, 1),
                         "video_seconds_per_second": round(args.videos * args.seconds / seconds, 1)}
        if decoded is not None:
            results[name]["frames_decoded"] = decoded
        print(f"  {name:<18} {seconds:7.1f} s  {kept} frames", flush=True)

    record("decode_all_filter", lambda: run_pool(decode_all_filter, files, args.cores))
    record("plain_keyframes", lambda: run_pool(plain_keyframes, files, args.cores))

    import sparkmm

    spark = sparkmm.session(**{"spark.master": f"local[{args.cores}]"})
    run_sparkmm(spark, files[:2], "keyframes")  # warm-up: Python workers up
    record("sparkmm_keyframes", lambda: run_sparkmm(spark, files, "keyframes"))
    record("sparkmm_fps", lambda: run_sparkmm(spark, files, "all"))
    spark.stop()
    for name, mode in (("sparkmm_keyframes", "keyframes"), ("sparkmm_fps", "all")):
        results[name]["frames_decoded"] = decoded_by_sparkmm_kernel(files[0], mode) * len(files)  # same files

    comparisons = [
        ("plain_keyframes", "decode_all_filter", 5.0),
        ("sparkmm_keyframes", "decode_all_filter", 5.0),
        ("sparkmm_fps", "decode_all_filter", 5.0),
        ("sparkmm_keyframes", "plain_keyframes", 0.8),
    ]
    table = []
    for name, vs, target in comparisons:
        ratio = round(results[vs]["seconds"] / results[name]["seconds"], 2)
        table.append({"runner": name, "vs": vs, "speedup": ratio, "target": target, "met": ratio >= target})

    print("\n| runner | seconds | frames out | frames decoded | video s / s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']} | {r['frames_out']} | {r.get('frames_decoded', '')} | "
              f"{r['video_seconds_per_second']} |")
    print("\n| comparison | speedup | target | met |")
    print("|---|---:|---:|---|")
    for row in table:
        print(f"| {row['runner']} vs {row['vs']} | {row['speedup']} | >= {row['target']} | "
              f"{'yes' if row['met'] else 'NO'} |")

    report = {
        "benchmark": "video_frames", "videos": len(files), "seconds_each": args.seconds, "resolution": "1280x720",
        "fps": 25, "codec": "h264 (x264 superfast, 3 Mb/s) + aac", "keyframe_interval_frames": args.keyint,
        "total_frames": frames_total, "sample_rate": "1 frame per second, JPEG q90", "cores": args.cores,
        "python": sys.version.split()[0], "platform": platform.platform(), "results": results,
        "comparisons": table, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
