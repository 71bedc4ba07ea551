"""Audio kernels (decode, properties, resample, to_mono, samples). No Spark here.

The audio value has the shape of the image value (:mod:`sparkmm.ops.value`)::

    struct<
      data: binary,            -- the encoded source (wav, flac, mp3, ogg/opus, m4a/aac, ...)
      meta: struct<
        format: string,        -- container: wav, flac, mp3, ogg, mp4, matroska, ...
        codec: string,         -- pcm_s16le, flac, mp3float, opus, aac, ...
        sample_rate: int,      -- after pending steps (resample)
        channels: int,         -- after pending steps (to_mono)
        duration: double,      -- seconds
        size: bigint,          -- encoded bytes
        ops: string,           -- pending steps as JSON
        error: string,         -- "<category>: <detail>", null when fine
        source: string         -- local path when ``data`` is null (by reference)
      >
    >

``decode`` probes the container (PyAV) without decoding samples; ``resample`` and
``to_mono`` are pending steps; ``samples`` decodes once and applies them.

Example:
    >>> a = decode(pa.array([_tone(16000, 1, 0.5)]))
    >>> a.field("meta").field("duration")[0].as_py(), a.field("meta").field("sample_rate")[0].as_py()
    (0.5, 16000)
    >>> len(samples(resample(a, 8000))[0].as_py())
    4000
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa

from sparkmm.errors import SparkmmError, check_errors_mode, reason
from sparkmm.ops import url as _url
from sparkmm.ops.registry import ERRORS, Param, operator
from sparkmm.ops.storage import StorageOptions
from sparkmm.ops.value import LazyValues, Meta, load_values, property_operator, raise_bad, steps

META_DDL = ("STRUCT<format: STRING, codec: STRING, sample_rate: INT, channels: INT, duration: DOUBLE, "
            "size: BIGINT, ops: STRING, error: STRING, source: STRING>")
META_TYPE = pa.struct([
    ("format", pa.string()), ("codec", pa.string()), ("sample_rate", pa.int32()), ("channels", pa.int32()),
    ("duration", pa.float64()), ("size", pa.int64()), ("ops", pa.string()), ("error", pa.string()),
    ("source", pa.string()),
])
AUDIO_DDL = f"STRUCT<data: BINARY, meta: {META_DDL}>"
_V = LazyValues(META_TYPE)
DEFAULT_MAX_DURATION = 4 * 3600.0


def probe(fp: Any, size: int, max_duration_sec: float | None = DEFAULT_MAX_DURATION) -> Meta:
    """Descriptor of one encoded audio file, from its container header."""
    import av

    if size == 0:
        return _V.bad(reason("empty", "zero-byte input"), 0)
    try:
        with av.open(fp, "r") as container:
            if not container.streams.audio:
                return _V.bad(reason("no_audio", f"{container.format.name} container has no audio stream"), size)
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:  # no duration in the header (raw streams): count the samples
                duration = sum(f.samples for f in container.decode(stream)) / ctx.sample_rate
            if max_duration_sec is not None and duration > max_duration_sec:
                return _V.bad(reason("too_long", f"{duration:.1f} s exceeds max_duration_sec={max_duration_sec}"),
                              size)
            return {"format": container.format.name.split(",")[0], "codec": ctx.name,
                    "sample_rate": int(ctx.sample_rate), "channels": int(ctx.layout.nb_channels),
                    "duration": round(duration, 6), "size": size, "ops": "[]", "error": None, "source": None}
    except av.error.InvalidDataError:
        return _V.bad(reason("not_audio", "cannot read the data as an audio container"), size)
    except (av.error.FFmpegError, ValueError, ZeroDivisionError) as e:
        return _V.bad(reason("corrupt", str(e) or type(e).__name__), size)


DECODE_PARAMS = (Param("max_duration_sec", (("max_duration_sec", "DOUBLE"),), DEFAULT_MAX_DURATION,
                       doc="longer audio is refused (too_long)"),
                 Param("target_sample_rate", (("target_sample_rate", "INT"),), None,
                       doc="resample to this rate when samples are decoded; null keeps the source's"))


def _check_rate(rate: int | None) -> int | None:
    if rate is not None and int(rate) < 1000:
        raise ValueError(f"target_sample_rate must be at least 1000 Hz, got {rate}")
    return None if rate is None else int(rate)


def _at_rate(metas: list[Meta | None], rate: int | None) -> list[Meta | None]:
    """Add a pending resample step to every good row (nothing when ``rate`` is None)."""
    if rate is None:
        return metas
    return _V.append(metas, lambda m: (["resample", rate], {"sample_rate": rate}))


@operator("audio", wiring="decode", input_type="BINARY", output_type=AUDIO_DDL, params=DECODE_PARAMS + (ERRORS,))
def decode(data: pa.Array, max_duration_sec: float | None = DEFAULT_MAX_DURATION, target_sample_rate: int | None = None,
           errors: str = "ignore") -> pa.Array:
    """Decode encoded audio bytes into an audio value (probes the container only).

    Example:
        >>> decode(pa.array([b"not audio"])).field("meta").field("error")[0].as_py()
        'not_audio: cannot read the data as an audio container'
        >>> decode(pa.array([_tone(44100, 1, 0.1)]), target_sample_rate=16000).field("meta").field("sample_rate")[0].as_py()
        16000
    """
    check_errors_mode(errors)
    rate = _check_rate(target_sample_rate)
    data = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
    metas = [None if b is None else probe(io.BytesIO(b), len(b), max_duration_sec) for b in data.to_pylist()]
    if errors == "raise":
        raise_bad(metas, None, "audio decode")
    return _V.build(data, _at_rate(metas, rate))


@operator("audio", wiring="udf", input_type="STRING", output_type=AUDIO_DDL, storage_options=True,
          params=_url.FETCH_PARAMS + DECODE_PARAMS + (ERRORS,))
def load(urls: pa.Array, max_connections: int = 16, timeout: float = 30.0, retries: int = 3,
         max_bytes: int | None = None, max_duration_sec: float | None = DEFAULT_MAX_DURATION,
         target_sample_rate: int | None = None, errors: str = "ignore",
         storage_options: dict | None = None) -> pa.Array:
    """Download and decode audio in one step; local files are kept by reference.

    Example:
        >>> load(pa.array(["/no/such.wav"]), storage_options={"allow_local_files": True}
        ...      ).field("meta").field("error")[0].as_py()
        'not_found: /no/such.wav'
    """
    check_errors_mode(errors)
    rate = _check_rate(target_sample_rate)
    fetch = {"max_connections": max_connections, "timeout": timeout, "retries": retries, "max_bytes": max_bytes}
    values = load_values(_V, urls, lambda f, n: probe(f, n, max_duration_sec), "audio load", errors, fetch,
                         storage_options)
    return values if rate is None else _V.like_input(values, _at_rate(_V.metas(values), rate))


def _property(name: str, ddl: str, doc: str):
    return property_operator("audio", AUDIO_DDL, name, ddl, doc)


channels = _property("channels", "INT", "Number of channels (after pending steps).")
sample_rate = _property("sample_rate", "INT", "Sample rate in Hz (after pending steps).")
duration = _property("duration", "DOUBLE", "Duration in seconds.")
size = _property("size", "BIGINT", "Encoded size of the source in bytes.")
format = _property("format", "STRING", "Container format: wav, flac, mp3, ogg, mp4, ...")
codec = _property("codec", "STRING", "Audio codec: pcm_s16le, flac, mp3float, opus, aac, ...")
error = _property("error", "STRING", "Why the row is bad ('<category>: <detail>'), null when it is fine.")


@operator("audio", wiring="meta", input_type=META_DDL, output_type=AUDIO_DDL,
          params=(Param("target_sample_rate", (("target_sample_rate", "INT"),), doc="Hz, e.g. 16000"),))
def resample(values: pa.Array, target_sample_rate: int) -> pa.Array:
    """Resample to ``target_sample_rate`` Hz (applied when samples are decoded).

    Example:
        >>> resample(decode(pa.array([_tone(8000, 1, 0.1)])), 16000).field("meta").field("sample_rate")[0].as_py()
        16000
    """
    if target_sample_rate is None:
        raise ValueError("target_sample_rate must be at least 1000 Hz, got None")
    return _V.like_input(values, _at_rate(_V.metas(values), _check_rate(target_sample_rate)))


@operator("audio", wiring="meta", input_type=META_DDL, output_type=AUDIO_DDL)
def to_mono(values: pa.Array) -> pa.Array:
    """Mix all channels down to one (applied when samples are decoded).

    Example:
        >>> to_mono(decode(pa.array([_tone(8000, 2, 0.1)]))).field("meta").field("channels")[0].as_py()
        1
    """
    return _V.like_input(values, _V.append(_V.metas(values), lambda m: (["to_mono"], {"channels": 1})))


def source_bytes(data: bytes | None, m: Meta) -> bytes:
    """The encoded bytes of a value: ``data``, or the local file it refers to (vetted at load)."""
    if data is not None:
        return data
    vetted = _url.FetchOptions(retries=1, storage_options=StorageOptions.of({"allow_local_files": True}))
    return _url.fetch_one(m["source"], vetted)


def decode_samples(data: bytes | None, m: Meta) -> np.ndarray:
    """Decode once and apply the pending steps: float32 array of shape (channels, samples) in [-1, 1]."""
    import av

    raw = source_bytes(data, m)
    layout = "mono" if m["channels"] == 1 else None
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=m["sample_rate"])
    chunks = []
    with av.open(io.BytesIO(raw), "r") as container:
        for frame in container.decode(container.streams.audio[0]):
            frame.pts = None
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return np.zeros((m["channels"], 0), np.float32)
    return np.concatenate(chunks, axis=1).astype(np.float32)


@operator("audio", input_type=AUDIO_DDL, output_type="ARRAY<FLOAT>", params=(ERRORS,))
def samples(values: pa.Array, errors: str = "ignore") -> pa.Array:
    """Decoded samples as float32 in [-1, 1], channels interleaved, after resample/to_mono.

    Example:
        >>> len(samples(to_mono(decode(pa.array([_tone(8000, 2, 0.25)]))))[0].as_py())
        2000
    """
    check_errors_mode(errors)
    data, metas = _V.split(values)
    if data is None:
        raise TypeError("audio.samples needs full audio values (data + meta)")
    out: list[Any] = []
    for i, (b, m) in enumerate(zip(data, metas)):
        if m is None or m.get("error") or (b is None and not m.get("source")):
            out.append(None)
            continue
        try:
            pcm = decode_samples(b, m)
            out.append(pcm.T.reshape(-1))
        except Exception as e:  # a bad row must not fail the batch
            if errors == "raise":
                raise SparkmmError(f"audio samples failed for {m.get('source') or f'row {i}'}: "
                                   f"{reason('decode_failed', f'{type(e).__name__}: {e}')}") from e
            out.append(None)
    return pa.array(out, pa.list_(pa.float32()))


def _tone(rate: int, channels: int, seconds: float, hz: float = 440.0) -> bytes:
    """A WAV sine tone, for examples and tests."""
    import wave

    t = np.arange(int(rate * seconds)) / rate
    pcm = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm[:, None], channels, axis=1).tobytes())
    return buf.getvalue()


__all__ = ["AUDIO_DDL", "META_DDL", "decode", "load", "samples", "resample", "to_mono", "steps"]
