"""Image kernels. No Spark here: Arrow arrays in, Arrow arrays out.

The image value
---------------
``decode()`` returns a lazy *image value*, a struct of the untouched encoded bytes and
a small descriptor::

    struct<
      data: binary,            -- the encoded source bytes, never re-encoded between steps
      meta: struct<
        format: string,        -- codec of ``data`` (JPEG, PNG, WEBP, ...)
        width: int,            -- geometry and mode *after* the pending steps
        height: int,
        mode: string,          -- PIL mode: RGB, RGBA, L, P, ...
        size: bigint,          -- encoded size of ``data`` in bytes (as MaxFrame's image.size)
        orientation: int,      -- EXIF orientation of the source (1-8), null when absent
        ops: string,           -- pending steps as JSON, e.g. [["resize",224,224,"lanczos"]]
        error: string,         -- "<category>: <detail>" when the row is bad, else null
        source: string         -- local path of the bytes when ``data`` is null (by reference)
      >
    >

``load()`` of a local path keeps the value *by reference* (``data`` null, ``source``
the path): bytes then never cross between the JVM and Python; the step that needs
pixels reads the file itself, and fails with ``changed`` if the file's size differs
from when it was loaded. ``load(by_reference=False)`` and ``decode()`` keep the bytes.

Decoding reads only the header. ``resize``/``crop``/``convert``/``thumbnail``/
``resample``/``exif_transpose`` only append a step to ``meta.ops`` and update the
geometry, so properties of a transformed image are known without touching pixels.
Pixels are decoded once, when a step needs them (``encode``, ``to_base64``, ``phash``,
``dhash``), and a leading shrink uses the JPEG decoder's DCT-domain downscaling
(``draft``) so a 12 MP JPEG resized to 224x224 never materialises at full size.

Example:
    >>> import io, pyarrow as pa
    >>> from PIL import Image
    >>> buf = io.BytesIO(); Image.new("RGB", (640, 480), "red").save(buf, "JPEG")
    >>> img = decode(pa.array([buf.getvalue()]))
    >>> small = resize(img, (224, 224))
    >>> small.field("meta").field("width")[0].as_py()
    224
    >>> Image.open(io.BytesIO(encode(small, "PNG")[0].as_py())).size
    (224, 224)
"""

from __future__ import annotations

import base64
import io
import math
import struct
import warnings
from typing import Any, BinaryIO, Callable

import numpy as np
import pyarrow as pa
from PIL import Image, ImageOps, UnidentifiedImageError

from sparkmm.errors import SparkmmError, check_errors_mode, reason
from sparkmm.ops import url as _url
from sparkmm.ops.registry import ERRORS, Param, operator
from sparkmm.ops.storage import StorageOptions
from sparkmm.ops.value import LazyValues, Meta, property_operator, raise_bad, steps

Image.MAX_IMAGE_PIXELS = None  # sparkmm enforces its own, per-call max_pixels limit

# Spark DDL of the image value (see the module docstring).
META_DDL = ("STRUCT<format: STRING, width: INT, height: INT, mode: STRING, size: BIGINT, "
            "orientation: INT, ops: STRING, error: STRING, source: STRING>")
IMAGE_DDL = f"STRUCT<data: BINARY, meta: {META_DDL}>"
META_TYPE = pa.struct([
    ("format", pa.string()), ("width", pa.int32()), ("height", pa.int32()), ("mode", pa.string()),
    ("size", pa.int64()), ("orientation", pa.int32()), ("ops", pa.string()), ("error", pa.string()),
    ("source", pa.string()),
])
IMAGE_TYPE = pa.struct([("data", pa.binary()), ("meta", META_TYPE)])  # = LazyValues(META_TYPE).value_type
META_FIELDS = [f.name for f in META_TYPE]

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default bomb limit
METHODS = {
    "nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
}
MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
         "LAB", "HSV", "I", "I;16", "F")
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# Transpose orientations 5-8 swap width and height.
_SWAPS = {5, 6, 7, 8}
# Formats PIL cannot read, recognised by magic bytes so the reason says what they are.
_UNSUPPORTED_MAGIC = (
    (4, b"ftypheic", "HEIC"), (4, b"ftypheix", "HEIC"), (4, b"ftypmif1", "HEIF"),
    (0, b"\xff\x0a", "JPEG XL"), (0, b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (0, b"<svg", "SVG"), (0, b"<?xml", "SVG/XML"), (0, b"%PDF", "PDF"),
)


# --------------------------------------------------------------------------- values

_V = LazyValues(META_TYPE)
_bad, _metas, _values, _image_array, _like_input, _append = (
    _V.bad, _V.metas, _V.split, _V.build, _V.like_input, _V.append)
_steps = steps


# --------------------------------------------------------------------------- decode


def _truncation(tail: bytes, fmt: str) -> str | None:
    """Cheap structural completeness checks on the last bytes; no pixel decoding."""
    end = tail.rstrip(b"\x00\r\n ")
    if fmt == "JPEG" and not end.endswith(b"\xff\xd9"):
        return "JPEG data ends without its end-of-image marker"
    if fmt == "PNG" and b"IEND" not in tail:
        return "PNG data ends without its IEND chunk"
    if fmt == "GIF" and not end.endswith(b";"):
        return "GIF data ends without its trailer"
    return None


def header(data: bytes | None, max_pixels: int = DEFAULT_MAX_PIXELS, validate: str = "header") -> Meta | None:
    """Descriptor of one encoded image, reading as little of it as possible."""
    if data is None:
        return None
    return read_header(io.BytesIO(data), len(data), max_pixels, validate)


def read_header(fp: BinaryIO, size: int, max_pixels: int = DEFAULT_MAX_PIXELS, validate: str = "header") -> Meta:
    """Descriptor of an encoded image in a seekable binary file of ``size`` bytes."""
    if size == 0:
        return _bad(reason("empty", "zero-byte input"), 0)
    head = fp.read(16)
    for offset, magic, name in _UNSUPPORTED_MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return _bad(reason("unsupported_format", f"{name} images are not supported"), size)
    fp.seek(max(0, size - 64))
    tail = fp.read(64)
    fp.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(fp)
            width, height = im.size
            if width * height > max_pixels:
                return _bad(reason("too_many_pixels",
                                   f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}"), size)
            fmt = im.format or "UNKNOWN"
            truncated = _truncation(tail, fmt)
            if truncated:
                return _bad(reason("truncated", truncated), size)
            if validate == "full":
                im.load()
            orientation = None
            try:
                orientation = im.getexif().get(0x0112)
            except Exception:  # malformed EXIF is not a bad image
                orientation = None
            return {"format": fmt, "width": width, "height": height, "mode": im.mode, "size": size,
                    "orientation": int(orientation) if orientation in range(1, 9) else None,
                    "ops": "[]", "error": None, "source": None}
    except UnidentifiedImageError:
        return _bad(reason("not_an_image", "cannot identify image data"), size)
    except Image.DecompressionBombError as e:
        return _bad(reason("too_many_pixels", str(e)), size)
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as e:
        text = str(e)
        category = "truncated" if "truncated" in text.lower() else "corrupt"
        return _bad(reason(category, text or type(e).__name__), size)


DECODE_PARAMS = (
    Param("max_pixels", (("max_pixels", "BIGINT"),), DEFAULT_MAX_PIXELS,
          doc="images with more pixels are refused (decompression bombs)"),
    Param("validate", (("validate", "STRING"),), "header", ("header", "full"),
          doc="'header': read the header and check the file is complete; 'full': also decode all pixels"),
)


@operator("image", wiring="decode", input_type="BINARY", output_type=IMAGE_DDL,
          params=DECODE_PARAMS + (ERRORS,))
def decode(data: pa.Array, max_pixels: int = DEFAULT_MAX_PIXELS, validate: str = "header",
           errors: str = "ignore") -> pa.Array:
    """Decode encoded image bytes into an image value (reads the header only).

    Example:
        >>> decode(pa.array([b"not an image"])).field("meta").field("error")[0].as_py()
        'not_an_image: cannot identify image data'
    """
    check_errors_mode(errors)
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks()
    metas = [header(b, max_pixels, validate) for b in data.to_pylist()]
    if errors == "raise":
        raise_bad(metas, None, "image decode")
    return _image_array(data, metas)


@operator("image", wiring="udf", input_type="STRING", output_type=IMAGE_DDL,
          params=_url.FETCH_PARAMS + DECODE_PARAMS + (
              Param("by_reference", (("by_reference", "BOOLEAN"),), True,
                    doc="keep local files as a path instead of their bytes"), ERRORS),
          storage_options=True)
def load(urls: pa.Array, max_connections: int = 16, timeout: float = 30.0, retries: int = 3,
         max_bytes: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS, validate: str = "header",
         by_reference: bool = True, errors: str = "ignore", storage_options: dict | None = None) -> pa.Array:
    """Download and decode in one step (``url.download`` then ``image.decode``), keeping download failures as reasons.

    Local files are kept by reference (see the module docstring) unless ``by_reference=False``.

    Example:
        >>> load(pa.array(["/no/such.jpg"]), storage_options={"allow_local_files": True}
        ...      ).field("meta").field("error")[0].as_py()
        'not_found: /no/such.jpg'
    """
    check_errors_mode(errors)
    if isinstance(urls, pa.ChunkedArray):
        urls = urls.combine_chunks()
    values = urls.to_pylist()
    # Local files kept by reference: read their header in place, never their bytes.
    by_ref = [by_reference and u is not None and _url.is_local(u) for u in values]
    remote = [u if not ref else None for u, ref in zip(values, by_ref)]
    data, reasons = _url.fetch(pa.array(remote, pa.string()), max_connections=max_connections,
                               timeout=timeout, retries=retries, max_bytes=max_bytes,
                               storage_options=storage_options)
    options = _url.FetchOptions(max_bytes=max_bytes, storage_options=StorageOptions.of(storage_options))
    metas: list[Meta | None] = []
    for u, ref, b, r in zip(values, by_ref, data.to_pylist(), reasons.to_pylist()):
        if not ref:
            metas.append(_bad(r) if r is not None else header(b, max_pixels, validate))
            continue
        try:
            f, size = _url.open_local(u, options)
        except _url.FetchFailed as e:
            metas.append(_bad(str(e)))
            continue
        with f:
            m = read_header(f, size, max_pixels, validate)
        m["source"] = u  # bad rows keep it too, so reasons name their file
        metas.append(m)
    if errors == "raise":
        raise_bad(metas, values, "image load")
    return _image_array(data, metas)


@operator("image", wiring="udf", input_type="STRING", output_type=IMAGE_DDL, params=DECODE_PARAMS + (ERRORS,))
def from_base64(text: pa.Array, max_pixels: int = DEFAULT_MAX_PIXELS, validate: str = "header",
                errors: str = "ignore") -> pa.Array:
    """Decode base64 text (as EasyVision's image_base64 columns) into an image value.

    Example:
        >>> from_base64(pa.array(["!!"])).field("meta").field("error")[0].as_py()[:14]
        'invalid_base64'
    """
    check_errors_mode(errors)
    raw: list[bytes | None] = []
    metas: list[Meta | None] = []
    for s in text.to_pylist():
        if s is None:
            raw.append(None), metas.append(None)
            continue
        try:
            b = base64.b64decode(s.split(",", 1)[1] if s.startswith("data:") else s, validate=True)
        except (ValueError, TypeError) as e:
            raw.append(None), metas.append(_bad(reason("invalid_base64", str(e))))
            continue
        raw.append(b), metas.append(header(b, max_pixels, validate))
    if errors == "raise":
        raise_bad(metas, None, "image from_base64")
    return _image_array(raw, metas)


# --------------------------------------------------------------------------- properties


def _property(name: str, ddl: str, doc: str) -> Callable[[pa.Array], pa.Array]:
    return property_operator("image", IMAGE_DDL, name, ddl, doc)


width = _property("width", "INT", "Width in pixels (after pending steps).")
height = _property("height", "INT", "Height in pixels (after pending steps).")
size = _property("size", "BIGINT", "Encoded size of the source in bytes.")
format = _property("format", "STRING", "Codec of the source: JPEG, PNG, WEBP, ...")
mode = _property("mode", "STRING", "PIL colour mode (after pending steps): RGB, RGBA, L, ...")
error = _property("error", "STRING", "Why the row is bad ('<category>: <detail>'), null when it is fine.")


# --------------------------------------------------------------------------- lazy steps


def fit_size(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """Largest size with the image's aspect ratio that fits in ``box`` (rounded as PIL's thumbnail)."""
    x, y = box
    aspect = width / height
    if x / y >= aspect:
        cands = {max(math.floor(y * aspect), 1), max(math.ceil(y * aspect), 1)}
        x = min(sorted(cands), key=lambda n: abs(aspect - n / y))
    else:
        cands = {max(math.floor(x / aspect), 1), max(math.ceil(x / aspect), 1)}
        y = min(sorted(cands), key=lambda n: abs(aspect - x / n))
    return x, y


def _check_size(w: int, h: int) -> None:
    if w is None or h is None or int(w) < 1 or int(h) < 1:
        raise ValueError(f"size must be two positive integers, got ({w}, {h})")


SIZE = Param("size", (("width", "INT"), ("height", "INT")), doc="(width, height) in pixels")
METHOD = Param("method", (("method", "STRING"),), "lanczos", tuple(METHODS), doc="resampling filter")


@operator("image", wiring="meta", input_type=META_DDL, output_type=IMAGE_DDL,
          params=(SIZE, METHOD, Param("keep_aspect", (("keep_aspect", "BOOLEAN"),), False,
                                      doc="fit inside size, keeping the aspect ratio")))
def resize(images: pa.Array, size: tuple[int, int], method: str = "lanczos", keep_aspect: bool = False) -> pa.Array:
    """Resize to (width, height); with keep_aspect, fit inside it keeping the aspect ratio.

    Example:
        >>> resize(decode(pa.array([_png(400, 200)])), (100, 100), keep_aspect=True).field("meta").field("height")[0].as_py()
        50
    """
    w, h = size
    _check_size(w, h)
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not one of {list(METHODS)}")

    def step(m: Meta) -> tuple[list[Any], dict[str, Any]]:
        tw, th = fit_size(m["width"], m["height"], (w, h)) if keep_aspect else (int(w), int(h))
        return ["resize", tw, th, method], {"width": tw, "height": th}

    return _like_input(images, _append(_metas(images), step))


@operator("image", wiring="meta", input_type=META_DDL, output_type=IMAGE_DDL, params=(SIZE, METHOD))
def thumbnail(images: pa.Array, size: tuple[int, int], method: str = "lanczos") -> pa.Array:
    """Shrink to fit inside (width, height) keeping the aspect ratio; never enlarges (PIL's thumbnail).

    Example:
        >>> thumbnail(decode(pa.array([_png(400, 200)])), (1000, 1000)).field("meta").field("width")[0].as_py()
        400
    """
    w, h = size
    _check_size(w, h)

    def step(m: Meta) -> tuple[list[Any], dict[str, Any]]:
        if w >= m["width"] and h >= m["height"]:
            tw, th = m["width"], m["height"]
        else:
            tw, th = fit_size(m["width"], m["height"], (w, h))
        return ["resize", tw, th, method], {"width": tw, "height": th}

    return _like_input(images, _append(_metas(images), step))


@operator("image", wiring="meta", input_type=META_DDL, output_type=IMAGE_DDL,
          params=(SIZE, Param("target_dpi", (("dpi_x", "INT"), ("dpi_y", "INT")), (72, 72),
                              doc="DPI written into the encoded output"), METHOD))
def resample(images: pa.Array, size: tuple[int, int], target_dpi: tuple[int, int] = (72, 72),
             method: str = "lanczos") -> pa.Array:
    """Resample to a standard size and DPI (seed 004's ImageResample: 224x224, 72 dpi, lanczos).

    Example:
        >>> resample(decode(pa.array([_png(400, 200)])), (224, 224)).field("meta").field("ops")[0].as_py()
        '[["resize",224,224,"lanczos"],["dpi",72,72]]'
    """
    w, h = size
    _check_size(w, h)
    dx, dy = target_dpi
    if dx is None or dy is None or dx <= 0 or dy <= 0:
        raise ValueError(f"target_dpi must be two positive numbers, got {target_dpi!r}")
    metas = _append(_metas(images), lambda m: (["resize", int(w), int(h), method], {"width": int(w), "height": int(h)}))
    metas = _append(metas, lambda m: (["dpi", int(dx), int(dy)], {}))
    return _like_input(images, metas)


@operator("image", wiring="meta", input_type=META_DDL, output_type=IMAGE_DDL,
          params=(Param("box", (("left", "INT"), ("top", "INT"), ("right", "INT"), ("bottom", "INT")),
                        doc="(left, top, right, bottom) in pixels, as PIL"),))
def crop(images: pa.Array, box: tuple[int, int, int, int]) -> pa.Array:
    """Crop to the box (left, top, right, bottom); areas outside the image are black, as in PIL.

    Example:
        >>> crop(decode(pa.array([_png(400, 200)])), (10, 10, 110, 60)).field("meta").field("width")[0].as_py()
        100
    """
    left, top, right, bottom = (int(v) for v in box)
    if right <= left or bottom <= top:
        raise ValueError(f"crop box must have right > left and bottom > top, got {box!r}")
    return _like_input(images, _append(_metas(images), lambda m: (
        ["crop", left, top, right, bottom], {"width": right - left, "height": bottom - top})))


@operator("image", wiring="meta", input_type=META_DDL, output_type=IMAGE_DDL,
          params=(Param("mode", (("mode", "STRING"),), choices=MODES, doc="target PIL mode"),))
def convert(images: pa.Array, mode: str) -> pa.Array:
    """Convert the colour mode (for example RGBA -> RGB), as PIL's Image.convert.

    Example:
        >>> convert(decode(pa.array([_png(4, 4)])), "L").field("meta").field("mode")[0].as_py()
        'L'
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(MODES)}")
    return _like_input(images, _append(_metas(images), lambda m: (["convert", mode], {"mode": mode})))


@operator("image", wiring="meta", input_type=META_DDL, output_type=IMAGE_DDL)
def exif_transpose(images: pa.Array) -> pa.Array:
    """Rotate/flip as the EXIF orientation says (PIL's ImageOps.exif_transpose).

    Example:
        >>> exif_transpose(decode(pa.array([_png(4, 2)]))).field("meta").field("width")[0].as_py()
        4
    """
    def step(m: Meta) -> tuple[list[Any], dict[str, Any]]:
        if m["orientation"] in _SWAPS:
            return ["exif_transpose"], {"width": m["height"], "height": m["width"], "orientation": 1}
        return ["exif_transpose"], {"orientation": 1 if m["orientation"] else None}

    return _like_input(images, _append(_metas(images), step))


# --------------------------------------------------------------------------- pixels


def _draft_box(m: Meta, steps: list[list[Any]]) -> tuple[int, int] | None:
    """Size to ask the JPEG decoder for, when the first geometric step shrinks.

    The decoder then scales by 1/2, 1/4 or 1/8 in the DCT domain (an averaging
    filter) to no less than the target, and LANCZOS finishes the job: on real photos
    this stays within ~1 grey level of LANCZOS on the full decode, at a fraction of
    the decoding work.
    """
    if m["format"] != "JPEG":
        return None
    swapped = False
    for step in steps:
        if step[0] == "convert" or step[0] == "dpi":
            continue
        if step[0] == "exif_transpose":
            swapped = m["orientation"] in _SWAPS
            continue
        if step[0] == "resize":
            w, h = step[1], step[2]
            if swapped:
                w, h = h, w
            return (w, h)
        return None
    return None


class RowError(ValueError):
    """A row-level failure whose message is already a sparkmm reason."""


def source_bytes(data: bytes | None, m: Meta) -> bytes:
    """The encoded bytes of a value: its ``data``, or the file it references."""
    if data is not None:
        return data
    if not m.get("source"):
        raise RowError(reason("no_data", "image value has neither data nor source"))
    try:
        # the path was checked when it was loaded; reading it again needs no second opt-in
        vetted = _url.FetchOptions(retries=1, storage_options=StorageOptions.of({"allow_local_files": True}))
        raw = _url.fetch_one(m["source"], vetted)
    except _url.FetchFailed as e:
        raise RowError(str(e)) from None
    if len(raw) != m["size"]:
        raise RowError(reason("changed", f"{m['source']} is {len(raw)} bytes, was {m['size']} when loaded"))
    return raw


def materialize(data: bytes | None, m: Meta) -> tuple[Image.Image, dict[str, Any]]:
    """Decode once and apply the pending steps: ``(PIL image, save options such as dpi)``."""
    steps = _steps(m)
    im = Image.open(io.BytesIO(source_bytes(data, m)))
    box = _draft_box(m, steps)
    if box is not None:
        im.draft(None, box)
    im.load()
    save: dict[str, Any] = {}
    for step in steps:
        kind = step[0]
        if kind == "resize":
            if im.size != (step[1], step[2]):
                im = im.resize((step[1], step[2]), METHODS[step[3]])
        elif kind == "crop":
            im = im.crop(tuple(step[1:5]))
        elif kind == "convert":
            if im.mode != step[1]:
                im = im.convert(step[1])
        elif kind == "exif_transpose":
            im = ImageOps.exif_transpose(im)
        elif kind == "dpi":
            save["dpi"] = (step[1], step[2])
        else:
            raise ValueError(f"unknown image step {kind!r}")
    return im, save


def _pixels_op(images: pa.Array, errors: str, what: str, fn: Callable[[bytes, Meta], Any],
               out_type: pa.DataType) -> pa.Array:
    check_errors_mode(errors)
    data, metas = _values(images)
    if data is None:
        raise TypeError(f"image.{what} needs full image values (data + meta), got only descriptors")
    out: list[Any] = []
    for i, (b, m) in enumerate(zip(data, metas)):
        if m is None or (b is None and not m.get("source")) or m.get("error"):
            if errors == "raise" and m is not None and m.get("error"):
                raise SparkmmError(f"image {what} failed for row {i} of the batch: {m['error']}")
            out.append(None)
            continue
        try:
            out.append(fn(b, m))
        except Exception as e:  # a bad row must not fail the batch
            if errors == "raise":
                why = str(e) if isinstance(e, RowError) else reason("decode_failed", f"{type(e).__name__}: {e}")
                where = m.get("source") or f"row {i} of the batch"
                raise SparkmmError(f"image {what} failed for {where}: {why}") from e
            out.append(None)
    return pa.array(out, out_type)


def _encode_one(b: bytes, m: Meta, fmt: str | None, quality: int | None) -> bytes:
    target = (fmt or m["format"]).upper()
    if target == "JPG":
        target = "JPEG"
    if _steps(m) == [] and target == m["format"] and quality is None:
        return source_bytes(b, m)  # nothing changed: the source bytes, no generational loss
    im, save = materialize(b, m)
    if target == "JPEG" and im.mode not in ("RGB", "L", "CMYK", "YCbCr", "1"):
        raise ValueError(f"cannot write mode {im.mode} as JPEG; convert('RGB') first")
    if target in ("JPEG", "WEBP"):
        save["quality"] = 90 if quality is None else int(quality)
    buf = io.BytesIO()
    im.save(buf, target, **save)
    return buf.getvalue()


FORMAT = Param("format", (("format", "STRING"),), None, FORMATS + (None,),
               doc="output codec; default: the source's")
QUALITY = Param("quality", (("quality", "INT"),), None, doc="JPEG/WEBP quality 1-95 (default 90)")


def _check_encode(fmt: str | None, quality: int | None) -> None:
    if fmt is not None and fmt.upper() not in FORMATS + ("JPG",):
        raise ValueError(f"format={fmt!r} is not one of {list(FORMATS)}")
    if quality is not None and not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")


@operator("image", input_type=IMAGE_DDL, output_type="BINARY", params=(FORMAT, QUALITY, ERRORS))
def encode(images: pa.Array, format: str | None = None, quality: int | None = None,
           errors: str = "ignore") -> pa.Array:
    """Apply pending steps and encode (JPEG, PNG, WEBP, ...); null with errors='ignore' when it fails.

    Example:
        >>> encode(decode(pa.array([_png(8, 8)])), "JPEG")[0].as_py()[:2]
        b'\\xff\\xd8'
    """
    _check_encode(format, quality)
    return _pixels_op(images, errors, "encode", lambda b, m: _encode_one(b, m, format, quality), pa.binary())


@operator("image", input_type=IMAGE_DDL, output_type="STRING", params=(FORMAT, QUALITY, ERRORS))
def to_base64(images: pa.Array, format: str | None = None, quality: int | None = None,
              errors: str = "ignore") -> pa.Array:
    """Base64 text of the encoded image (the source bytes when nothing changed).

    Example:
        >>> from_base64(to_base64(decode(pa.array([_png(3, 3)])))).field("meta").field("width")[0].as_py()
        3
    """
    _check_encode(format, quality)
    return _pixels_op(images, errors, "to_base64",
                      lambda b, m: base64.b64encode(_encode_one(b, m, format, quality)).decode("ascii"),
                      pa.string())


_DCT = {}


def _dct_matrix(n: int) -> np.ndarray:
    # Unnormalised DCT-II as a matrix: row k holds 2*cos(pi*k*(2i+1)/(2n)).
    if n not in _DCT:
        k = np.arange(n)[:, None]
        i = np.arange(n)[None, :]
        _DCT[n] = 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
    return _DCT[n]


def _bits_hex(bits: np.ndarray) -> str:
    flat = "".join("1" if b else "0" for b in bits.flatten())
    return f"{int(flat, 2):0{math.ceil(len(flat) / 4)}x}"


def _phash_one(b: bytes, m: Meta) -> str:
    im, _ = materialize(b, m)
    px = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    d = _dct_matrix(32)
    coeffs = d @ px @ d.T
    low = coeffs[:8, :8]
    return _bits_hex(low > np.median(low))


def _dhash_one(b: bytes, m: Meta) -> str:
    im, _ = materialize(b, m)
    px = np.asarray(im.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int32)
    return _bits_hex(px[:, 1:] > px[:, :-1])


@operator("image", input_type=IMAGE_DDL, output_type="STRING", params=(ERRORS,))
def phash(images: pa.Array, errors: str = "ignore") -> pa.Array:
    """64-bit perceptual (DCT) hash as 16 hex digits; equal to imagehash.phash.

    Example:
        >>> len(phash(decode(pa.array([_png(64, 64)])))[0].as_py())
        16
    """
    return _pixels_op(images, errors, "phash", _phash_one, pa.string())


@operator("image", input_type=IMAGE_DDL, output_type="STRING", params=(ERRORS,))
def dhash(images: pa.Array, errors: str = "ignore") -> pa.Array:
    """64-bit difference hash as 16 hex digits; equal to imagehash.dhash.

    Example:
        >>> len(dhash(decode(pa.array([_png(64, 64)])))[0].as_py())
        16
    """
    return _pixels_op(images, errors, "dhash", _dhash_one, pa.string())


def hash_distance(a: str | None, b: str | None) -> int | None:
    """Hamming distance between two hex hashes (near-duplicates are a few bits apart).

    Example:
        >>> hash_distance("ff00", "ff01")
        1
    """
    if a is None or b is None:
        return None
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _png(width: int, height: int) -> bytes:
    """A small PNG for examples and tests."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()
