"""Transcription benchmark: sparkmm on local[2] vs plain faster-whisper loops on the same 2 cores.

Real human speech installed by scripts/install.sh: the LibriVox readings of pocketsphinx-testdata
and the English Asterisk prompts (speech only, no silence files), longest first, until at least
``--minutes`` of audio. Every runner transcribes every file with the same model, language and beam
size; throughput is audio seconds per wall second (x real time). The plain loops load the model
once, outside the timing; sparkmm's time is the whole Spark job (listing, decode, VAD, inference),
after one warm-up job. Prints a table and saves JSON under bench/results/.

    .venv/bin/python bench/audio_transcribe.py --minutes 10
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from report import compare, save, table  # noqa: E402

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK_EN = Path("/usr/share/asterisk/sounds/en_US_f_Allison")


def corpus(minutes: float) -> tuple[list[str], float]:
    """LibriVox clips, then the longest English prompts, until ``minutes`` of audio."""
    import soundfile as sf

    prompts = sorted((p for p in ASTERISK_EN.rglob("*.wav") if "silence" not in p.parts),
                     key=lambda p: (-p.stat().st_size, str(p)))
    files, total = [], 0.0
    for p in sorted(LIBRIVOX.glob("*.wav")) + prompts:
        if total >= minutes * 60:
            break
        files.append(str(p))
        total += sf.info(p).duration
    if total < minutes * 60:
        raise SystemExit(f"only {total:.0f} s of speech found; run scripts/install.sh")
    return files, total


def run_sparkmm(spark, files: list[str], args) -> dict[str, str]:
    from pyspark.sql import functions as F

    import sparkmm

    df = sparkmm.read.files(spark, files)
    t = F.col("path").audio.load().audio.transcribe(model=args.model, language=args.language,
                                                    beam_size=args.beam_size, batch_size=args.batch_size)
    rows = df.select("path", t.alias("t")).select("path", "t.text", "t.error").collect()
    bad = [r for r in rows if r.error is not None and not r.error.startswith("no_speech")]
    if bad:
        raise SystemExit(f"sparkmm failed on {len(bad)} files, e.g. {bad[0].path}: {bad[0].error}")
    return {r.path.removeprefix("file:"): r.text or "" for r in rows}


def run_loop(model, files: list[str], args) -> dict[str, str]:
    """What a user writes without Spark: transcribe file after file."""
    out = {}
    for f in files:
        segments, _ = model.transcribe(f, language=args.language, beam_size=args.beam_size)
        out[f] = "".join(s.text for s in segments).strip()
    return out


def run_batched_loop(pipeline, files: list[str], args) -> dict[str, str]:
    """The same loop through faster-whisper's batched pipeline (batching within each file)."""
    out = {}
    for f in files:
        segments, _ = pipeline.transcribe(f, language=args.language, beam_size=args.beam_size,
                                          batch_size=args.batch_size or 8)
        out[f] = "".join(s.text for s in segments).strip()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--language", default="en")
    ap.add_argument("--beam-size", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=0, help="sparkmm batch size (0 = its default)")
    ap.add_argument("--skip", action="append", default=[], help="runner to skip (batched_loop, ...)")
    ap.add_argument("--out", default=str(ROOT / "results" / "audio_transcribe.json"))
    args = ap.parse_args()

    files, audio_seconds = corpus(args.minutes)
    print(f"{len(files)} files, {audio_seconds:.0f} s of speech, model {args.model}, beam {args.beam_size}",
          flush=True)
    results: dict[str, dict] = {}
    texts: dict[str, dict[str, str]] = {}

    def record(name: str, fn) -> None:
        t = time.perf_counter()
        texts[name] = fn()
        seconds = time.perf_counter() - t
        results[name] = {"seconds": round(seconds, 2), "x_real_time": round(audio_seconds / seconds, 2)}
        print(f"  {name:<14} {seconds:7.1f} s  {audio_seconds / seconds:6.1f} x real time", flush=True)

    import sparkmm

    spark = sparkmm.session(**{"spark.master": "local[2]"})
    run_sparkmm(spark, files[:8], args)  # warm-up: Python workers up, model loaded in them
    record("sparkmm", lambda: run_sparkmm(spark, files, args))
    spark.stop()

    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from sparkmm.ops.speech import word_error_rate

    from sparkmm.models.whisper import resolve_model

    model = WhisperModel(resolve_model(args.model), device="cpu", compute_type="int8", cpu_threads=os.cpu_count())
    run_loop(model, files[:2], args)
    record("plain_loop", lambda: run_loop(model, files, args))
    if "batched_loop" not in args.skip:
        record("batched_loop", lambda: run_batched_loop(BatchedInferencePipeline(model), files, args))

    compare(results, "x_real_time", {"plain_loop": 1.5})
    for name, r in results.items():
        if name != "plain_loop":
            errs, words = map(sum, zip(*(word_error_rate(texts[name][f], texts["plain_loop"][f]) for f in files)))
            r["word_difference_vs_plain_loop"] = round(errs / max(words, 1), 4)
    print("\n" + table(results, [("seconds", "seconds"), ("x real time", "x_real_time"),
                                 ("words differing from plain loop", "word_difference_vs_plain_loop")]))
    save(args.out, "audio_transcribe", results, files=len(files), audio_seconds=round(audio_seconds, 1),
         model=args.model, beam_size=args.beam_size, language=args.language)


if __name__ == "__main__":
    main()
