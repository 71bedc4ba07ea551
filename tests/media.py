"""Real photos and a corpus of bad files for the tests (and the demo job)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image

from sparkmm.jobs.samples import sample_photos


def write_photos(directory: Path) -> list[Path]:
    """Copy the public-domain sample photos into ``directory``; plus a JPEG with EXIF rotation."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sample_photos():
        dst = directory / src.name
        dst.write_bytes(src.read_bytes())
        out.append(dst)
    rotated = directory / "rotated_exif.jpg"
    im = Image.open(sample_photos()[0]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    im.save(rotated, "JPEG", quality=92, exif=exif)
    out.append(rotated)
    return out


def _png_bomb(width: int, height: int) -> bytes:
    """A real, valid PNG of width x height grey pixels (all zero), small on disk."""
    raw_row = b"\x00" + b"\x00" * width
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(raw_row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def write_bad_files(directory: Path, good_jpeg: Path) -> dict[str, str]:
    """Bad inputs and the reason category each must produce."""
    directory.mkdir(parents=True, exist_ok=True)
    jpeg = good_jpeg.read_bytes()
    cases = {
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "zero.jpg": (b"", "empty"),
        "notes.jpg": (b"this is a text file, not a picture\n" * 20, "not_an_image"),
        "vector.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>', "unsupported_format"),
        "photo.heic": (b"\x00\x00\x00\x18ftypheic" + os.urandom(200), "unsupported_format"),
        "bomb.png": (_png_bomb(10_000, 9_000), "too_many_pixels"),
    }
    expected = {}
    for name, (data, category) in cases.items():
        (directory / name).write_bytes(data)
        expected[name] = category
    return expected


def jpeg_bytes(size=(64, 48), color=(10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def encode_audio(fmt: str, codec: str, rate: int = 22050, channels: int = 2, seconds: float = 1.5) -> bytes:
    """A 440 Hz tone encoded with PyAV (any container/codec its ffmpeg has)."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo" if channels == 2 else "mono")
        t = np.arange(int(rate * seconds)) / rate
        tone = np.stack([(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)] * channels)
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo" if channels == 2 else "mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=stream.codec_context.layout,
                                      rate=rate, frame_size=stream.codec_context.frame_size or None)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# Real speech installed by scripts/install.sh (Debian pocketsphinx-testdata, asterisk-core-sounds-*-wav).
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ASTERISK = {"en": Path("/usr/share/asterisk/sounds/en_US_f_Allison"),
            "fr": Path("/usr/share/asterisk/sounds/fr_CA_f_June"),
            "es": Path("/usr/share/asterisk/sounds/es_MX_f_Allison")}


def longest_prompts(language: str, count: int, max_seconds: float = 8.0) -> list[Path]:
    """The ``count`` longest Asterisk prompts of a language up to ``max_seconds`` (8 kHz 16-bit mono)."""
    files = [p for p in ASTERISK[language].rglob("*.wav")
             if p.stat().st_size <= max_seconds * 16000 + 44 and "silence" not in p.parts]
    return sorted(files, key=lambda p: (-p.stat().st_size, p.name))[:count]


def espeak(text: str, path: Path, voice: str = "en-us", rate: int = 120) -> Path:
    """Synthetic speech for ``text`` (espeak-ng), as a 22.05 kHz mono WAV."""
    import subprocess

    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(path), text], check=True,
                   capture_output=True)
    return path


def pad_with_silence(src: Path, dst: Path, before: float, after: float) -> tuple[float, float]:
    """Write ``src`` with silence around it; returns (start, end) in seconds of its audible part in ``dst``."""
    import numpy as np
    import soundfile as sf

    pcm, rate = sf.read(src, dtype="float32")
    loud = np.flatnonzero(np.abs(pcm) > 0.02 * np.abs(pcm).max())
    padded = np.concatenate([np.zeros(int(before * rate), np.float32), pcm, np.zeros(int(after * rate), np.float32)])
    sf.write(dst, padded, rate)
    return before + loud[0] / rate, before + (loud[-1] + 1) / rate
