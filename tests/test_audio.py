"""Audio kernels and accessors on audio encoded in the tests (PyAV), compared with soundfile."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf
from pyspark.sql import functions as F

from media import encode_audio
from sparkmm.errors import SparkmmError
from sparkmm.ops import audio as A

FORMATS = [("wav", "pcm_s16le", 22050), ("flac", "flac", 22050), ("mp3", "libmp3lame", 22050),
           ("ogg", "libopus", 48000), ("ipod", "aac", 22050)]


@pytest.fixture(scope="module")
def clips():
    return {fmt: encode_audio(fmt, codec, rate) for fmt, codec, rate in FORMATS}


def _meta(values):
    return values.field("meta")[0].as_py()


def test_properties_of_every_format(clips):
    want_format = {"wav": "wav", "flac": "flac", "mp3": "mp3", "ogg": "ogg", "ipod": "mov"}
    for fmt, _, rate in FORMATS:
        m = _meta(A.decode(pa.array([clips[fmt]])))
        assert (m["format"], m["sample_rate"], m["channels"], m["error"]) == (want_format[fmt], rate, 2, None), fmt
        assert abs(m["duration"] - 1.5) < 0.06, (fmt, m["duration"])  # codec priming/padding
        assert m["size"] == len(clips[fmt])
        if fmt in ("wav", "flac"):
            info = sf.info(io.BytesIO(clips[fmt]))
            assert (m["sample_rate"], m["channels"], m["duration"]) == (info.samplerate, info.channels, info.duration)


def test_samples_equal_soundfile(clips):
    for fmt in ("wav", "flac"):
        ref, rate = sf.read(io.BytesIO(clips[fmt]), dtype="float32")
        got = np.array(A.samples(A.decode(pa.array([clips[fmt]])))[0].as_py(), np.float32)
        assert got.shape == (ref.size,) and np.abs(got - ref.reshape(-1)).max() < 1e-4, fmt


def test_to_mono_and_resample(clips):
    for fmt, _, _ in FORMATS:
        value = A.resample(A.to_mono(A.decode(pa.array([clips[fmt]]))), 16000)
        m = _meta(value)
        assert (m["channels"], m["sample_rate"]) == (1, 16000)
        pcm = np.array(A.samples(value)[0].as_py(), np.float32)
        assert abs(pcm.size - m["duration"] * 16000) <= 0.05 * 16000, (fmt, pcm.size)  # AAC/MP3 priming samples
        spectrum = np.abs(np.fft.rfft(pcm))
        assert abs(np.argmax(spectrum) * 16000 / pcm.size - 440) < 5, fmt  # still the 440 Hz tone


def test_bad_audio_gets_reasons(clips, photo_dir):
    bad = [b"", b"this is text, not sound" * 50, (photo_dir / "rocket.jpg").read_bytes(), None]
    metas = A.decode(pa.array(bad, pa.binary())).field("meta").to_pylist()
    assert metas[0]["error"].startswith("empty")
    assert metas[1]["error"].startswith("not_audio")
    assert metas[2]["error"].split(":")[0] in ("no_audio", "not_audio")
    long = A.decode(pa.array([clips["wav"]]), max_duration_sec=1.0)
    assert _meta(long)["error"].startswith("too_long: 1.5 s")
    assert A.samples(long).to_pylist() == [None]
    with pytest.raises(SparkmmError, match="not_audio"):
        A.decode(pa.array([bad[1]]), errors="raise")


def test_spark_accessors_sql_and_by_reference(spark, clips, tmp_path):
    for fmt, _, _ in FORMATS:
        (tmp_path / f"tone.{fmt}").write_bytes(clips[fmt])
    (tmp_path / "broken.wav").write_bytes(b"RIFF....")
    import sparkmm

    df = sparkmm.read.files(spark, str(tmp_path / "*")).withColumn("a", F.col("path").audio.load())
    rows = df.select("path", F.col("a").audio.sample_rate.alias("sr"), F.col("a").audio.channels.alias("ch"),
                     F.col("a").audio.duration.alias("d"), F.col("a").audio.error.alias("e"),
                     F.size(F.col("a").audio.to_mono().audio.resample(16000).audio.samples()).alias("n")).collect()
    by_name = {r.path.rsplit("/", 1)[1]: r for r in rows}
    assert by_name["broken.wav"].e is not None and by_name["broken.wav"].n in (None, -1)  # size(null) is -1 or null
    for fmt, _, rate in FORMATS:
        r = by_name[f"tone.{fmt}"]
        assert (r.sr, r.ch, r.e) == (rate, 2, None) and abs(r.n - r.d * 16000) <= 800, fmt
    df.createOrReplaceTempView("sounds")
    sql = spark.sql("SELECT path, mm_audio_sample_rate(a) sr, mm_audio_channels(a) ch, mm_audio_duration(a) d, "
                    "mm_audio_error(a) e, size(mm_audio_samples(mm_audio_resample(mm_audio_to_mono(a), 16000))) n "
                    "FROM sounds").collect()
    assert sorted(tuple(r) for r in sql) == sorted(tuple(r) for r in rows)
    assert {r.reason for r in df.mm.error_summary("a").collect()} == {by_name["broken.wav"].e.split(":")[0]}


def test_decode_and_load_with_target_sample_rate(clips, tmp_path):
    path = tmp_path / "tone.flac"
    path.write_bytes(clips["flac"])
    for value in (A.decode(pa.array([clips["flac"]]), target_sample_rate=16000),
                  A.load(pa.array([str(path)]), target_sample_rate=16000, storage_options={"allow_local_files": True})):
        m = _meta(value)
        assert m["sample_rate"] == 16000 and A.steps(m) == [["resample", 16000]]
        pcm = np.array(A.samples(value)[0].as_py(), np.float32)
        assert abs(pcm.size / 2 - 1.5 * 16000) <= 0.01 * 16000  # stereo interleaved, 1.5 s at 16 kHz
    assert _meta(A.decode(pa.array([b"junk"]), target_sample_rate=16000))["sample_rate"] is None
    with pytest.raises(ValueError, match="at least 1000 Hz"):
        A.decode(pa.array([clips["flac"]]), target_sample_rate=10)
