"""Download benchmark: sparkmm url.download vs a sequential loop and a hand-written thread pool.

2,000 objects of ~100 KB, served on 127.0.0.1 by an S3-compatible endpoint (moto) and by an
HTTP server, each in its own process and answering after 20 ms as a real object store would
(bench/servers.py). Every way fetches every object and the byte count is checked. Prints a
table and saves JSON under bench/results/.

    .venv/bin/python bench/download.py --objects 2000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server at {url} did not start") from None
            time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--latency-ms", type=float, default=20.0, help="server latency per GET (object stores: 10-50)")
    ap.add_argument("--out", default=str(ROOT / "results" / "download.json"))
    args = ap.parse_args()

    import boto3
    import requests
    from pyspark.sql import functions as F

    import sparkmm

    work = Path(tempfile.mkdtemp(prefix="sparkmm-dl-"))
    files = work / "files"
    files.mkdir()
    payloads = {}
    for i in range(args.objects):
        data = os.urandom(args.size)
        payloads[f"obj_{i:05d}.bin"] = data
        (files / f"obj_{i:05d}.bin").write_bytes(data)
    total = sum(len(v) for v in payloads.values())

    http_port, s3_port = _port(), _port()
    servers = str(ROOT / "servers.py")
    lat = str(args.latency_ms)
    http = subprocess.Popen([sys.executable, servers, "http", str(http_port), lat, str(files)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    moto = subprocess.Popen([sys.executable, servers, "s3", str(s3_port), lat],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{http_port}/", http)
        _wait(f"http://127.0.0.1:{s3_port}/moto-api/", moto)
        options = {"endpoint_url": f"http://127.0.0.1:{s3_port}", "aws_access_key_id": "bench",
                   "aws_secret_access_key": "bench-secret", "region_name": "us-east-1"}
        s3 = boto3.client("s3", **options)
        s3.create_bucket(Bucket="bench")
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket="bench", Key=kv[0], Body=kv[1]), payloads.items()))

        sources = {
            "s3": [f"s3://bench/{k}" for k in payloads],
            "http": [f"http://127.0.0.1:{http_port}/{k}" for k in payloads],
        }

        def fetch_one(url: str, session) -> bytes:
            if url.startswith("s3://"):
                return s3.get_object(Bucket="bench", Key=url.rsplit("/", 1)[1])["Body"].read()
            return session.get(url, timeout=30).content

        def sequential(urls):
            with requests.Session() as session:
                return sum(len(fetch_one(u, session)) for u in urls)

        def thread_pool(urls):
            with requests.Session() as session, ThreadPoolExecutor(args.threads) as pool:
                return sum(pool.map(lambda u: len(fetch_one(u, session)), urls))

        spark = sparkmm.session(**{"spark.master": "local[2]"})

        def spark_download(urls):
            # --threads connections per task, url.download's default (two tasks run at a time here)
            df = spark.createDataFrame([(u,) for u in urls], "url string").repartition(4)
            got = df.select(F.length(F.col("url").url.download(max_connections=args.threads,
                                                             storage_options=options)).alias("n"))
            row = got.agg(F.sum("n"), F.count("n")).first()
            if row[1] != len(urls):
                raise SystemExit(f"sparkmm fetched {row[1]} of {len(urls)}")
            return row[0]

        spark_download(sources["http"][:50])  # start the Python workers
        results: dict[str, dict] = {}
        for source, urls in sources.items():
            for name, fn in [("sequential", sequential), ("thread_pool", thread_pool), ("sparkmm", spark_download)]:
                start = time.perf_counter()
                n = fn(urls)
                seconds = time.perf_counter() - start
                assert n == total, (source, name, n, total)
                results[f"{source}/{name}"] = {"seconds": round(seconds, 2),
                                               "objects_per_second": round(len(urls) / seconds, 1)}
                print(f"  {source:<5} {name:<12} {seconds:6.2f} s  {len(urls) / seconds:7.1f} obj/s", flush=True)
        spark.stop()
    finally:
        http.terminate()
        moto.terminate()
        shutil.rmtree(work, ignore_errors=True)

    print("\n| source | way | seconds | objects/s | sparkmm / way | target |")
    print("|---|---|---:|---:|---:|---|")
    for source in ("s3", "http"):
        base = results[f"{source}/sparkmm"]["objects_per_second"]
        for name, target in [("sequential", ">= 5"), ("thread_pool", ">= 0.9"), ("sparkmm", "")]:
            r = results[f"{source}/{name}"]
            r["sparkmm_ratio"] = round(base / r["objects_per_second"], 2)
            print(f"| {source} | {name} | {r['seconds']} | {r['objects_per_second']} | {r['sparkmm_ratio']} | {target} |")
    report = {"benchmark": "download", "objects": args.objects, "bytes_each": args.size, "threads": args.threads,
              "latency_ms": args.latency_ms,
              "results": results, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
