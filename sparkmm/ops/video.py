"""Video kernels (probe, properties, frames, audio track). No Spark here.

The video value has the shape of the image and audio values (:mod:`sparkmm.ops.value`)::

    struct<
      data: binary,            -- the encoded container (mp4, webm, mkv, mov, ...)
      meta: struct<
        duration: double,      -- seconds (video stream, else container)
        fps: double,           -- average frame rate
        width: int,            -- coded picture size
        height: int,
        codec: string,         -- h264, vp9, hevc, mpeg4, ...
        frame_count: bigint,   -- from the container index, else counted from packets (no decoding)
        has_audio: boolean,    -- the container has an audio stream (see ``audio``)
        format: string,        -- container: mov, matroska, avi, ...
        size: bigint,          -- encoded bytes
        ops: string,           -- pending steps as JSON (none yet for video)
        error: string,         -- "<category>: <detail>", null when fine
        source: string         -- local path when ``data`` is null (by reference)
      >
    >

``decode``/``load`` only read the container header (PyAV). ``probe`` is the descriptor
itself. ``frames`` decodes frames into sparkmm image values, decoding only what the
sampling needs: keyframes are fed to the decoder alone (``skip_frame``), fps sampling
leaves the packets of a GOP undecoded until one of them is wanted and skips whole GOPs
(seeking over long gaps). ``audio`` turns the container's audio track into an audio value
that refers to the same bytes, so ``audio.samples``/``transcribe``/``vad_detect`` apply.

Example:
    >>> v = decode(pa.array([_clip(seconds=1.0)]))
    >>> m = v.field("meta")[0].as_py()
    >>> m["codec"], m["width"], m["height"], m["fps"], m["frame_count"], m["has_audio"]
    ('mpeg4', 64, 48, 10.0, 10, False)
    >>> [f["frame_index"] for f in frames(v, fps=2.0)[0].as_py()]
    [0, 5]
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import pyarrow as pa

from sparkmm.errors import SparkmmError, check_errors_mode, reason
from sparkmm.ops import audio as _audio
from sparkmm.ops import image as _image
from sparkmm.ops import url as _url
from sparkmm.ops.registry import ERRORS, Param, operator
from sparkmm.ops.storage import StorageOptions
from sparkmm.ops.value import LazyValues, Meta, load_values, property_operator, raise_bad

META_DDL = ("STRUCT<duration: DOUBLE, fps: DOUBLE, width: INT, height: INT, codec: STRING, frame_count: BIGINT, "
            "has_audio: BOOLEAN, format: STRING, size: BIGINT, ops: STRING, error: STRING, source: STRING>")
META_TYPE = pa.struct([
    ("duration", pa.float64()), ("fps", pa.float64()), ("width", pa.int32()), ("height", pa.int32()),
    ("codec", pa.string()), ("frame_count", pa.int64()), ("has_audio", pa.bool_()), ("format", pa.string()),
    ("size", pa.int64()), ("ops", pa.string()), ("error", pa.string()), ("source", pa.string()),
])
VIDEO_DDL = f"STRUCT<data: BINARY, meta: {META_DDL}>"
FRAME_DDL = f"STRUCT<frame_index: BIGINT, timestamp: DOUBLE, is_keyframe: BOOLEAN, image: {_image.IMAGE_DDL}>"
FRAME_TYPE = pa.struct([("frame_index", pa.int64()), ("timestamp", pa.float64()), ("is_keyframe", pa.bool_()),
                        ("image", _image.IMAGE_TYPE)])
_V = LazyValues(META_TYPE)
_IMG = LazyValues(_image.META_TYPE)
_AUDIO = LazyValues(_audio.META_TYPE)

DEFAULT_MAX_DURATION = 4 * 3600.0
DEFAULT_MAX_PIXELS = 7680 * 4320  # 8K UHD per frame
DEFAULT_MAX_FRAMES = 10_000  # frames one video may yield in extract_frames
MODES = ("all", "keyframes", "intra", "no_bidir")
# FFmpeg's AVDiscard levels for each mode (EasyVision's decode_type).
_SKIP = {"all": "DEFAULT", "keyframes": "NONKEY", "intra": "NONINTRA", "no_bidir": "BIDIR"}
FRAME_FORMATS = ("JPEG", "PNG", "WEBP")
SEEK_GAP = 10.0  # seconds: skip over longer gaps between wanted frames with a seek instead of demuxing
_MAX_PENDING = 1024  # undecoded packets held while skipping (streams without keyframe flags)
_EPS = 1e-6


# --------------------------------------------------------------------------- probe


def _mp4_truncation(fp: BinaryIO, size: int) -> str | None:
    """For ISO-BMFF files: a top-level box that claims to run past the end of the file (cut short)."""
    fp.seek(0)
    head = fp.read(12)
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    pos, seen = 0, []
    while pos + 8 <= size and len(seen) < 10_000:
        fp.seek(pos)
        hdr = fp.read(16)
        box_size, kind = struct.unpack(">I4s", hdr[:8])
        if box_size == 1 and len(hdr) == 16:
            box_size = struct.unpack(">Q", hdr[8:16])[0]
        elif box_size == 0:  # runs to the end of the file
            box_size = size - pos
        if box_size < 8:
            return None
        seen.append(kind)
        if pos + box_size > size:
            return f"MP4 {kind.decode('latin-1')!r} box needs {pos + box_size} bytes, the file has {size}"
        pos += box_size
    if b"moov" not in seen:
        return "MP4 file has no 'moov' index box"
    return None


def probe(fp: BinaryIO, size: int, max_duration_sec: float | None = DEFAULT_MAX_DURATION,
          max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Meta:
    """Descriptor of one encoded video in a seekable binary file of ``size`` bytes (header only).

    Example:
        >>> probe(io.BytesIO(_clip(seconds=0.5)), len(_clip(seconds=0.5)))["frame_count"]
        5
    """
    import av

    if size == 0:
        return _V.bad(reason("empty", "zero-byte input"), 0)
    cut = _mp4_truncation(fp, size)
    if cut:
        return _V.bad(reason("truncated", cut), size)
    fp.seek(0)
    try:
        with av.open(fp, "r") as container:
            fmt = container.format.name.split(",")[0]
            if fmt.endswith("_pipe") or fmt in ("image2", "gif", "apng", "webp"):
                return _V.bad(reason("not_video", f"a still image ({fmt}), not a video"), size)
            if not container.streams.video:
                what = "audio only" if container.streams.audio else "no video stream"
                return _V.bad(reason("no_video", f"{fmt} container: {what}"), size)
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if ctx is None or ctx.codec is None or not ctx.width or not ctx.height:
                tag = getattr(stream, "codec_tag", None) or "unknown"
                return _V.bad(reason("unsupported_codec", f"no decoder for the video stream (codec tag {tag!r}) "
                                                          f"in {fmt}"), size)
            width, height = int(ctx.width), int(ctx.height)
            if max_pixels is not None and width * height > max_pixels:
                return _V.bad(reason("too_many_pixels", f"{width}x{height} = {width * height} pixels per frame "
                                                        f"exceeds max_pixels={max_pixels}"), size)
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = None
            if max_duration_sec is not None and duration is not None and duration > max_duration_sec:
                return _V.bad(reason("too_long", f"{duration:.1f} s exceeds max_duration_sec={max_duration_sec}"),
                              size)
            count = stream.frames or None
            if not count:  # Matroska/WebM have no frame count in the header: count packets, decoding nothing
                count = sum(1 for p in container.demux(stream) if p.size)
            if duration is None and fps:
                duration = count / fps
            return {"duration": None if duration is None else round(duration, 6),
                    "fps": None if fps is None else round(fps, 6), "width": width, "height": height,
                    "codec": ctx.name, "frame_count": int(count), "has_audio": bool(container.streams.audio),
                    "format": fmt, "size": size, "ops": "[]", "error": None, "source": None}
    except av.error.InvalidDataError:
        return _V.bad(reason("not_video", "cannot read the data as a video container"), size)
    except (av.error.FFmpegError, ValueError, ZeroDivisionError, struct.error) as e:
        return _V.bad(reason("corrupt", str(e) or type(e).__name__), size)


DECODE_PARAMS = (
    Param("max_duration_sec", (("max_duration_sec", "DOUBLE"),), DEFAULT_MAX_DURATION,
          doc="longer videos are refused (too_long)"),
    Param("max_pixels", (("max_pixels", "BIGINT"),), DEFAULT_MAX_PIXELS,
          doc="videos with larger frames are refused (too_many_pixels)"),
)


@operator("video", wiring="decode", input_type="BINARY", output_type=VIDEO_DDL, params=DECODE_PARAMS + (ERRORS,))
def decode(data: pa.Array, max_duration_sec: float | None = DEFAULT_MAX_DURATION,
           max_pixels: int | None = DEFAULT_MAX_PIXELS, errors: str = "ignore") -> pa.Array:
    """Decode encoded video bytes into a video value (reads the container header only).

    Example:
        >>> decode(pa.array([b"not a video"])).field("meta").field("error")[0].as_py()
        'not_video: cannot read the data as a video container'
    """
    check_errors_mode(errors)
    data = data.combine_chunks() if isinstance(data, pa.ChunkedArray) else data
    metas = [None if b is None else probe(io.BytesIO(b), len(b), max_duration_sec, max_pixels)
             for b in data.to_pylist()]
    if errors == "raise":
        raise_bad(metas, None, "video decode")
    return _V.build(data, metas)


@operator("video", wiring="udf", input_type="STRING", output_type=VIDEO_DDL, storage_options=True,
          params=_url.FETCH_PARAMS + DECODE_PARAMS + (ERRORS,))
def load(urls: pa.Array, max_connections: int = 16, timeout: float = 30.0, retries: int = 3,
         max_bytes: int | None = None, max_duration_sec: float | None = DEFAULT_MAX_DURATION,
         max_pixels: int | None = DEFAULT_MAX_PIXELS, errors: str = "ignore",
         storage_options: dict | None = None) -> pa.Array:
    """Download and probe videos in one step; local files are kept by reference (never read whole).

    Example:
        >>> load(pa.array(["/no/such.mp4"]), storage_options={"allow_local_files": True}
        ...      ).field("meta").field("error")[0].as_py()
        'not_found: /no/such.mp4'
    """
    check_errors_mode(errors)
    fetch = {"max_connections": max_connections, "timeout": timeout, "retries": retries, "max_bytes": max_bytes}
    return load_values(_V, urls, lambda f, n: probe(f, n, max_duration_sec, max_pixels), "video load", errors, fetch, storage_options)


# --------------------------------------------------------------------------- properties


def _property(name: str, ddl: str, doc: str):
    return property_operator("video", VIDEO_DDL, name, ddl, doc)


duration = _property("duration", "DOUBLE", "Duration in seconds.")
fps = _property("fps", "DOUBLE", "Average frame rate (frames per second).")
width = _property("width", "INT", "Frame width in pixels.")
height = _property("height", "INT", "Frame height in pixels.")
codec = _property("codec", "STRING", "Video codec: h264, hevc, vp9, av1, mpeg4, ...")
frame_count = _property("frame_count", "BIGINT", "Number of frames (container index, else counted packets).")
has_audio = _property("has_audio", "BOOLEAN", "Whether the container has an audio track.")
format = _property("format", "STRING", "Container format: mov (mp4/mov/m4v), matroska (mkv/webm), avi, ...")
size = _property("size", "BIGINT", "Encoded size of the source in bytes.")
error = _property("error", "STRING", "Why the row is bad ('<category>: <detail>'), null when it is fine.")


def _probe_struct(values: pa.Array) -> pa.Array:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    meta = values.field("meta")
    return pa.compute.if_else(values.is_valid(), meta, pa.scalar(None, meta.type))


_probe_struct.__name__ = "probe"
_probe_struct.__doc__ = """Everything the header says: struct<duration, fps, width, height, codec, frame_count,
has_audio, format, size, ops, error, source> (the value's descriptor; a property).

Example:
    >>> _probe_struct(decode(pa.array([_clip(seconds=0.5)])))[0].as_py()["duration"]
    0.5
"""
probe_struct = operator("video", wiring="field", input_type=VIDEO_DDL, output_type=META_DDL, name="probe",
                        field_path=("meta",))(_probe_struct)


# --------------------------------------------------------------------------- audio track


@operator("video", input_type=VIDEO_DDL, output_type=_audio.AUDIO_DDL,
          params=(Param("max_duration_sec", (("max_duration_sec", "DOUBLE"),), _audio.DEFAULT_MAX_DURATION,
                        doc="longer audio is refused (too_long)"), ERRORS))
def audio(values: pa.Array, max_duration_sec: float | None = _audio.DEFAULT_MAX_DURATION,
          errors: str = "ignore") -> pa.Array:
    """The audio track as an audio value over the same bytes (or file): transcribe, VAD, samples apply.

    Example:
        >>> audio(decode(pa.array([_clip(seconds=0.5)]))).field("meta").field("error")[0].as_py()
        'no_audio: mov container has no audio stream'
    """
    check_errors_mode(errors)
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    data, metas = _V.split(values)
    out: list[Meta | None] = []
    for b, m in zip(data, metas):
        if m is None:
            out.append(None)
        elif m.get("error"):
            out.append({**_AUDIO.bad(m["error"], m.get("size")), "source": m.get("source")})
        elif not m.get("has_audio"):
            out.append({**_AUDIO.bad(reason("no_audio", f"{m['format']} container has no audio stream"), m["size"]),
                        "source": m.get("source")})
        else:
            try:
                with _open_source(b, m) as f:
                    a = _audio.probe(f, m["size"], max_duration_sec)
            except _url.FetchFailed as e:
                a = _AUDIO.bad(str(e), m.get("size"))
            a["source"] = m.get("source")
            out.append(a)
    if errors == "raise":
        raise_bad(out, [m and m.get("source") for m in metas], "video audio")
    return _AUDIO.build(values.field("data"), out)


def _open_source(data: bytes | None, m: Meta) -> BinaryIO:
    """A seekable file of the video: its bytes, or the local file it refers to (vetted at load)."""
    if data is not None:
        return io.BytesIO(data)
    if not m.get("source"):
        raise _url.FetchFailed(reason("no_data", "video value has neither data nor source"))
    vetted = _url.FetchOptions(retries=1, storage_options=StorageOptions.of({"allow_local_files": True}))
    f, size = _url.open_local(m["source"], vetted)
    if size != m["size"]:
        f.close()
        raise _url.FetchFailed(reason("changed", f"{m['source']} is {size} bytes, was {m['size']} when loaded"))
    return f


# --------------------------------------------------------------------------- frames


@dataclass(frozen=True)
class FrameOptions:
    """What to extract from each video (see ``frames`` for the meaning of each field)."""

    fps: float | None = None
    mode: str = "all"
    size: tuple[int, int] | None = None
    max_frames: int | None = None
    start: float | None = None
    end: float | None = None
    image_format: str = "JPEG"
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not one of {list(MODES)}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        if self.image_format.upper() not in FRAME_FORMATS:
            raise ValueError(f"image_format={self.image_format!r} is not one of {list(FRAME_FORMATS)}")
        if self.size is not None:
            w, h = self.size
            if w < 1 or h < 1 or w * h > self.max_pixels:
                raise ValueError(f"size must be positive and at most max_pixels={self.max_pixels}, got {self.size}")


def _error_frame(why: str) -> dict[str, Any]:
    return {"frame_index": None, "timestamp": None, "is_keyframe": None, "image": {"data": None, "meta": _IMG.bad(why)}}


class _Sampler:
    """Decides which decoded frames to keep and when the next wanted one is due."""

    def __init__(self, opts: FrameOptions, first: float, fps: float | None) -> None:
        self.opts, self.fps = opts, fps
        self.base = opts.start if opts.start is not None else first
        self.first = first
        self.want = self.base  # earliest timestamp still wanted
        self.kept = 0
        self.limit = opts.max_frames or DEFAULT_MAX_FRAMES
        self.done = False

    def take(self, ts: float) -> bool:
        if self.done or ts < self.want - _EPS:
            return False
        if self.opts.end is not None and ts > self.opts.end + _EPS:
            self.done = True
            return False
        if self.opts.fps is not None:
            self.want = self.base + (math.floor((ts - self.base) * self.opts.fps + _EPS) + 1) / self.opts.fps
        self.kept += 1
        self.done = self.kept >= self.limit
        return True

    def index(self, ts: float) -> int:
        # Position at the average rate: exact for constant-frame-rate video, which lets skipped
        # (never decoded) frames count without decoding them.
        return int(round((ts - self.first) * self.fps)) if self.fps else self.kept - 1


def _encode_frame(frame: Any, opts: FrameOptions) -> dict[str, Any]:
    if opts.size is not None:
        im = frame.to_image(width=opts.size[0], height=opts.size[1])
    else:
        im = frame.to_image()
    buf = io.BytesIO()
    fmt = opts.image_format.upper()
    if fmt == "PNG":
        im.save(buf, "PNG", compress_level=1)
    else:
        im.save(buf, fmt, quality=opts.quality)
    raw = buf.getvalue()
    return {"data": raw, "meta": {"format": fmt, "width": im.width, "height": im.height, "mode": im.mode,
                                  "size": len(raw), "orientation": None, "ops": "[]", "error": None, "source": None}}


def iter_frames(data: bytes | None, m: Meta | None, opts: FrameOptions,
                stats: dict[str, int] | None = None) -> Iterator[dict[str, Any]]:
    """Frames of one video value as ``{frame_index, timestamp, is_keyframe, image}`` records.

    A bad value yields one record whose image carries the reason; so does a stream that stops
    decoding part way (after the frames decoded so far) and a range that selects no frame.
    ``stats``, when given, counts what the decoder did: ``packets`` demuxed, ``decoded`` frames.

    Example:
        >>> clip = _clip(seconds=1.0)
        >>> [(f["frame_index"], f["timestamp"], f["is_keyframe"])
        ...  for f in iter_frames(clip, probe(io.BytesIO(clip), len(clip)), FrameOptions(fps=4.0))]
        [(0, 0.0, True), (3, 0.3, False), (5, 0.5, True), (8, 0.8, False)]
    """
    if m is None:
        return
    if m.get("error"):
        yield _error_frame(m["error"])
        return
    try:
        f = _open_source(data, m)
    except _url.FetchFailed as e:
        yield _error_frame(str(e))
        return
    with f:
        yield from _decode_frames(f, m, opts, stats if stats is not None else {})


class _TooLarge(Exception):
    pass


def _decode_frames(fp: BinaryIO, m: Meta, opts: FrameOptions, stats: dict[str, int]) -> Iterator[dict[str, Any]]:
    import av

    container = av.open(fp, "r")
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.skip_frame = _SKIP[opts.mode]
        tb = stream.time_base
        first = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        sampler = _Sampler(opts, first, m.get("fps"))
        emitted = 0
        last_ts = None
        keep = {"intra": ("I", "SI"), "no_bidir": ("I", "SI", "P", "SP", "S")}.get(opts.mode)
        if keep is not None:
            keep = {int(getattr(av.video.frame.PictureType, k)) for k in keep}
        stats.setdefault("packets", 0)
        stats.setdefault("decoded", 0)

        def out(decoded: list[Any]) -> Iterator[dict[str, Any]]:
            nonlocal emitted, last_ts
            for fr in decoded:
                stats["decoded"] += 1
                if fr.pts is None or sampler.done:
                    continue
                if fr.width * fr.height > opts.max_pixels:
                    raise _TooLarge(f"{fr.width}x{fr.height} frame exceeds max_pixels={opts.max_pixels}")
                ts = float(fr.pts * tb)
                last_ts = ts
                if keep is not None and int(fr.pict_type) not in keep:
                    continue  # a decoder that ignores skip_frame (VP9 for 'intra') still decodes these
                if sampler.take(ts):
                    emitted += 1
                    yield {"frame_index": sampler.index(ts), "timestamp": round(ts, 6),
                           "is_keyframe": bool(fr.key_frame), "image": _encode_frame(fr, opts)}

        try:
            if opts.start is not None and opts.start > first + 1.0:
                container.seek(int(opts.start / tb), stream=stream, backward=True)
            sequential = opts.mode != "keyframes" and opts.fps is None
            pending: list[Any] = []  # packets of the current GOP not given to the decoder (yet)
            dirty = False  # the decoder has had input since its last reset
            sought = None
            packets = container.demux(stream)
            while not sampler.done:
                packet = next(packets, None)
                if packet is None:  # end of stream: frames still in the decoder come out
                    yield from out(ctx.decode(None))
                    break
                if packet.size == 0:
                    continue
                stats["packets"] += 1
                t = None if packet.pts is None else float(packet.pts * tb)
                if opts.end is not None and packet.is_keyframe and t is not None and t > opts.end + _EPS:
                    yield from out(ctx.decode(None))
                    break
                if sequential:
                    yield from out(ctx.decode(packet))
                    continue
                if opts.mode == "keyframes":  # only keyframes reach the decoder, and only wanted ones
                    if packet.is_keyframe and (t is None or t >= sampler.want - _EPS):
                        # a keyframe stands alone: take it out now rather than after the decoder's
                        # reordering delay, so the next wanted time is known before the next keyframe
                        yield from out(ctx.decode(packet))
                        yield from out(ctx.decode(None))
                        ctx.flush_buffers()
                    continue
                # fps sampling: a GOP's packets wait undecoded until one of them is wanted; a GOP
                # none of whose frames is wanted is never decoded, a long gap is crossed by a seek.
                if packet.is_keyframe:
                    if t is not None and sampler.want - t > SEEK_GAP and sought != sampler.want:
                        sought = sampler.want  # at most one seek per wanted frame
                        if dirty:
                            yield from out(ctx.decode(None))
                            ctx.flush_buffers()
                            dirty = False
                        pending = []
                        container.seek(int(sampler.want / tb), stream=stream, backward=True)
                        continue
                    if pending and t is not None and t > sampler.want + _EPS:
                        # a wanted frame may show before this keyframe yet follow it in decode order
                        # (open GOPs: MPEG-4 part 2, HEVC CRA): keep the references it needs
                        for p in pending:
                            yield from out(ctx.decode(p))
                        dirty, pending = True, []
                    if pending:  # the decoder missed packets: drain it and restart at this keyframe
                        if dirty:
                            yield from out(ctx.decode(None))
                            ctx.flush_buffers()
                            dirty = False
                        pending = []
                        if sampler.done:
                            break
                if packet.is_keyframe and t is not None and abs(t - sampler.want) <= _EPS:
                    # the wanted frame is this keyframe: take it out now instead of feeding the packets
                    # behind it through the decoder's reordering delay; the GOP's later frames, if one is
                    # wanted, decode again from this keyframe on a clean decoder
                    if dirty:
                        yield from out(ctx.decode(None))
                        ctx.flush_buffers()
                    yield from out(ctx.decode(packet))
                    yield from out(ctx.decode(None))
                    ctx.flush_buffers()
                    dirty, pending = False, [packet]
                    continue
                pending.append(packet)
                if t is None or t >= sampler.want - _EPS or len(pending) > _MAX_PENDING:
                    for p in pending:  # in decode order, from the keyframe or from where it paused
                        yield from out(ctx.decode(p))
                        dirty = True
                        if sampler.done:
                            break
                    pending = []
        except (av.error.FFmpegError, _TooLarge) as e:
            at = f" at {last_ts:.2f} s" if last_ts is not None else ""
            category = "too_many_pixels" if isinstance(e, _TooLarge) else (
                "truncated" if isinstance(e, (av.error.InvalidDataError, av.error.EOFError)) else "decode_failed")
            yield _error_frame(reason(category, f"decoding stopped after {emitted} frames{at}: {e}"))
            return
        if emitted == 0:
            span = f"[{opts.start or 0:g}, {opts.end if opts.end is not None else 'end'}]"
            yield _error_frame(reason("no_frames", f"no frame decoded in {span} (mode={opts.mode})"))
        elif sampler.kept >= sampler.limit and opts.max_frames is None:
            yield _error_frame(reason("too_many_frames", f"stopped after {sampler.limit} frames; "
                                                         f"set max_frames or fps to take fewer"))
    finally:
        container.close()


FRAME_PARAMS = (
    Param("fps", (("fps", "DOUBLE"),), None, doc="frames per second to keep (first frame at or after each "
                                                 "1/fps step); None keeps every frame the mode decodes"),
    Param("mode", (("mode", "STRING"),), "all", MODES,
          doc="which frames the decoder decodes: all, keyframes only, intra only, no B-frames"),
    Param("size", (("width", "INT"), ("height", "INT")), None, doc="(width, height) of the frames; None = coded"),
    Param("max_frames", (("max_frames", "INT"),), 32, doc="at most this many frames per video"),
    Param("start", (("start", "DOUBLE"),), None, doc="seconds; frames before are skipped (with a seek)"),
    Param("end", (("end", "DOUBLE"),), None, doc="seconds; frames after are not decoded"),
    Param("image_format", (("image_format", "STRING"),), "JPEG", FRAME_FORMATS, doc="encoding of the frame images"),
    Param("quality", (("quality", "INT"),), 90, doc="JPEG/WEBP quality"),
)


@operator("video", input_type=VIDEO_DDL, output_type=f"ARRAY<{FRAME_DDL}>", params=FRAME_PARAMS + (ERRORS,))
def frames(values: pa.Array, fps: float | None = None, mode: str = "all", size: tuple[int, int] | None = None,
           max_frames: int | None = 32, start: float | None = None, end: float | None = None,
           image_format: str = "JPEG", quality: int = 90, errors: str = "ignore") -> pa.Array:
    """A few frames per video in one row: array<struct<frame_index, timestamp, is_keyframe, image>>.

    Images are sparkmm image values (``.image.width``, ``.image.resize`` apply). For many
    frames per video use ``df.mm.extract_frames``, which streams one row per frame. A bad
    video is null (its reason is ``.video.error``).

    Example:
        >>> v = decode(pa.array([_clip(seconds=1.0)]))
        >>> [f["timestamp"] for f in frames(v, mode="keyframes")[0].as_py()]
        [0.0, 0.5]
    """
    check_errors_mode(errors)
    opts = FrameOptions(fps, mode, size, max_frames, start, end, image_format, quality)
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    data, metas = _V.split(values)
    out: list[Any] = []
    for i, (b, m) in enumerate(zip(data, metas)):
        if m is None or m.get("error"):
            if errors == "raise" and m is not None:
                raise SparkmmError(f"video frames failed for {m.get('source') or f'row {i}'}: {m['error']}")
            out.append(None)
            continue
        rows = list(iter_frames(b, m, opts))
        bad = [r for r in rows if r["frame_index"] is None and not r["image"]["meta"]["error"].startswith("no_frames")]
        if bad and errors == "raise":
            raise SparkmmError(f"video frames failed for {m.get('source') or f'row {i}'}: "
                               f"{bad[0]['image']['meta']['error']}")
        out.append([r for r in rows if r["frame_index"] is not None or r in bad])
    return pa.array(out, pa.list_(FRAME_TYPE))


def frame_batches(values: pa.Array, opts: FrameOptions, max_rows: int = 256,
                  max_bytes: int = 64 << 20) -> Iterator[tuple[pa.Array, pa.StructArray]]:
    """Stream the frames of a batch of videos as (input row index, frames) Arrow chunks.

    Each chunk holds at most ``max_rows`` frames or about ``max_bytes`` of images, so a long
    video never sits in memory whole. A bad video gives one row whose image has the reason.

    Example:
        >>> v = decode(pa.array([_clip(seconds=1.0), b"junk"]))
        >>> [(rows.to_pylist(), f.field("frame_index").to_pylist()) for rows, f in
        ...  frame_batches(v, FrameOptions(fps=2.0))]
        [([0, 0, 1], [0, 5, None])]
    """
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    data, metas = _V.split(values)
    rows: list[int] = []
    recs: list[dict[str, Any]] = []
    held = 0
    for i, (b, m) in enumerate(zip(data, metas)):
        for rec in iter_frames(b, m, opts):
            rows.append(i)
            recs.append(rec)
            held += rec["image"]["meta"]["size"] or 0
            if len(rows) >= max_rows or held >= max_bytes:
                yield pa.array(rows, pa.int64()), pa.array(recs, FRAME_TYPE)
                rows, recs, held = [], [], 0
    if rows:
        yield pa.array(rows, pa.int64()), pa.array(recs, FRAME_TYPE)


def _clip(seconds: float = 1.0, fps: int = 10, keyint: int = 5, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small MPEG-4 video in MP4 (a moving gradient), for examples and tests."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.gop_size = keyint
        y, x = np.mgrid[0:size[1], 0:size[0]]
        for i in range(int(seconds * fps)):
            px = np.stack([(x * 4 + i * 8) % 256, (y * 4) % 256, np.full_like(x, i * 20 % 256)], -1)
            for p in s.encode(av.VideoFrame.from_ndarray(px.astype(np.uint8), format="rgb24")):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return buf.getvalue()


__all__ = ["VIDEO_DDL", "META_DDL", "FRAME_DDL", "FrameOptions", "audio", "decode", "frame_batches", "frames",
           "iter_frames", "load", "probe"]
