"""Engine-free image kernels against PIL and imagehash on real photos."""

from __future__ import annotations

import base64
import io
import json

import imagehash
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageOps

from sparkmm.errors import SparkmmError
from sparkmm.ops import image as K


def _load(path) -> pa.Array:
    return K.decode(pa.array([path.read_bytes()], pa.binary()))


def _pixels(b: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(b)), dtype=np.int16)


def _meta(arr: pa.Array) -> dict:
    return arr.field("meta")[0].as_py()


def test_properties_equal_pil(photo_dir):
    for path in sorted(photo_dir.iterdir()):
        im = Image.open(path)
        m = _meta(_load(path))
        assert (m["width"], m["height"], m["mode"], m["format"]) == (im.width, im.height, im.mode, im.format), path
        assert m["size"] == path.stat().st_size
        assert m["error"] is None and m["ops"] == "[]"


@pytest.mark.parametrize("name", ["rocket.jpg", "hubble_deep_field.jpg", "retina.jpg", "astronaut.png", "camera.png"])
def test_resize_close_to_pil_lanczos_on_full_decode(photo_dir, name):
    path = photo_dir / name
    ours = K.encode(K.resize(_load(path), (224, 224)), "PNG")[0].as_py()
    ref = Image.open(path)
    ref.load()
    ref = ref.resize((224, 224), Image.Resampling.LANCZOS)
    a, b = _pixels(ours), np.asarray(ref, dtype=np.int16)
    assert a.shape == b.shape
    mae = float(np.abs(a - b).mean())
    assert mae <= 2.0, f"{name}: mean absolute error {mae:.2f} grey levels"


def test_jpeg_shrink_uses_draft(photo_dir, monkeypatch):
    from PIL import JpegImagePlugin

    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append(size)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    K.encode(K.resize(_load(photo_dir / "retina.jpg"), (224, 224)), "PNG")
    assert calls == [(224, 224)]
    calls.clear()
    K.encode(K.crop(_load(photo_dir / "retina.jpg"), (0, 0, 100, 100)), "PNG")
    assert calls == []  # a crop first needs full resolution


def test_keep_aspect_and_thumbnail_match_pil(photo_dir):
    for path in sorted(photo_dir.iterdir()):
        ref = Image.open(path)
        ref.thumbnail((200, 150))
        thumb = K.thumbnail(_load(path), (200, 150))
        assert (_meta(thumb)["width"], _meta(thumb)["height"]) == ref.size, path
        out = Image.open(io.BytesIO(K.encode(thumb, "PNG")[0].as_py()))
        assert out.size == ref.size
        fit = K.resize(_load(path), (200, 150), keep_aspect=True)
        assert (_meta(fit)["width"], _meta(fit)["height"]) == ref.size


def test_crop_and_convert_exact(photo_dir):
    for name in ["astronaut.png", "coffee.png", "camera.png"]:
        path = photo_dir / name
        value = K.convert(K.crop(_load(path), (100, 100, 500, 300)), "L")
        ours = _pixels(K.encode(value, "PNG")[0].as_py())
        ref = np.asarray(Image.open(path).crop((100, 100, 500, 300)).convert("L"), dtype=np.int16)
        assert np.array_equal(ours, ref), name
        m = _meta(value)
        assert (m["width"], m["height"], m["mode"]) == (400, 200, "L")
        assert json.loads(m["ops"]) == [["crop", 100, 100, 500, 300], ["convert", "L"]]


def test_crop_outside_image_is_black_like_pil(photo_dir):
    path = photo_dir / "coins.png"
    ours = _pixels(K.encode(K.crop(_load(path), (300, 250, 450, 350)), "PNG")[0].as_py())
    ref = np.asarray(Image.open(path).crop((300, 250, 450, 350)), dtype=np.int16)
    assert np.array_equal(ours, ref)


def test_exif_transpose_matches_imageops(photo_dir):
    path = photo_dir / "rotated_exif.jpg"
    value = K.exif_transpose(_load(path))
    ref = ImageOps.exif_transpose(Image.open(path))
    assert (_meta(value)["width"], _meta(value)["height"]) == ref.size
    ours = _pixels(K.encode(value, "PNG")[0].as_py())
    assert np.array_equal(ours, np.asarray(ref, dtype=np.int16))


def test_encode_formats_and_quality(photo_dir):
    value = K.convert(K.resize(_load(photo_dir / "astronaut.png"), (128, 96)), "RGB")
    for fmt in ["JPEG", "PNG", "WEBP"]:
        out = Image.open(io.BytesIO(K.encode(value, fmt, 80)[0].as_py()))
        assert out.format == fmt and out.size == (128, 96)
    low = K.encode(value, "JPEG", 10)[0].as_py()
    high = K.encode(value, "JPEG", 95)[0].as_py()
    assert len(low) < len(high)


def test_encode_unchanged_returns_source_bytes(photo_dir):
    path = photo_dir / "rocket.jpg"
    assert K.encode(_load(path))[0].as_py() == path.read_bytes()


def test_encode_rgba_as_jpeg_fails_with_reason():
    buf = io.BytesIO()
    Image.new("RGBA", (8, 8)).save(buf, "PNG")
    value = K.decode(pa.array([buf.getvalue()]))
    assert K.encode(value, "JPEG")[0].as_py() is None
    with pytest.raises(SparkmmError, match="convert\\('RGB'\\)"):
        K.encode(value, "JPEG", errors="raise")


def test_resample_sets_size_and_dpi(photo_dir):
    value = K.resample(_load(photo_dir / "coffee.png"), (224, 224), (72, 72), "lanczos")
    out = Image.open(io.BytesIO(K.encode(value, "PNG")[0].as_py()))
    assert out.size == (224, 224)
    assert tuple(round(v) for v in out.info["dpi"]) == (72, 72)


def test_hashes_equal_imagehash(photo_dir):
    for path in sorted(photo_dir.iterdir()):
        value = _load(path)
        im = Image.open(path)
        assert K.phash(value)[0].as_py() == str(imagehash.phash(im)), path
        assert K.dhash(value)[0].as_py() == str(imagehash.dhash(im)), path


def test_near_duplicates_have_close_phash(photo_dir):
    value = _load(photo_dir / "chelsea.png")
    a = K.phash(value)[0].as_py()
    b = K.phash(K.resize(value, (200, 133)))[0].as_py()
    c = K.phash(_load(photo_dir / "camera.png"))[0].as_py()
    assert K.hash_distance(a, b) <= 4 < K.hash_distance(a, c)


def test_base64_round_trip(photo_dir):
    path = photo_dir / "flower.jpg"
    text = K.to_base64(_load(path))[0].as_py()
    assert base64.b64decode(text) == path.read_bytes()
    back = K.from_base64(pa.array([text, "data:image/jpeg;base64," + text, "@@@", None]))
    metas = back.field("meta").to_pylist()
    assert metas[0]["width"] == 640 and metas[1]["width"] == 640
    assert metas[2]["error"].startswith("invalid_base64")
    assert not back.is_valid()[3].as_py()


def test_bad_inputs_get_reasons(bad_dir):
    directory, expected = bad_dir
    names = sorted(expected)
    value = K.decode(pa.array([(directory / n).read_bytes() for n in names] + [None], pa.binary()))
    metas = value.field("meta").to_pylist()
    for name, m in zip(names, metas):
        assert m["error"].split(":")[0] == expected[name], (name, m["error"])
        assert m["width"] is None
    assert not value.is_valid()[len(names)].as_py()  # null in, null out
    assert K.encode(value).to_pylist() == [None] * (len(names) + 1)
    assert K.width(value).to_pylist() == [None] * (len(names) + 1)


def test_max_pixels_is_configurable(photo_dir):
    value = K.decode(pa.array([(photo_dir / "astronaut.png").read_bytes()]), max_pixels=1000)
    assert _meta(value)["error"].startswith("too_many_pixels: 512x512")


def test_full_validation_catches_corruption_inside_the_file(photo_dir):
    data = bytearray((photo_dir / "astronaut.png").read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64  # damage the middle, keep IEND
    assert _meta(K.decode(pa.array([bytes(data)])))["error"] is None
    assert _meta(K.decode(pa.array([bytes(data)]), validate="full"))["error"].split(":")[0] in ("corrupt", "truncated")


def test_errors_raise_names_the_problem(bad_dir):
    directory, _ = bad_dir
    with pytest.raises(SparkmmError, match="truncated"):
        K.decode(pa.array([(directory / "truncated.jpg").read_bytes()]), errors="raise")


def test_invalid_arguments_fail_early():
    with pytest.raises(ValueError, match="method"):
        K.resize(K.decode(pa.array([K._png(4, 4)])), (2, 2), method="fancy")
    with pytest.raises(ValueError, match="right > left"):
        K.crop(K.decode(pa.array([K._png(4, 4)])), (5, 5, 1, 1))
    with pytest.raises(ValueError, match="mode"):
        K.convert(K.decode(pa.array([K._png(4, 4)])), "XYZ")


def test_local_files_load_by_reference(photo_dir, tmp_path, http):
    path = tmp_path / "rocket.jpg"
    path.write_bytes((photo_dir / "rocket.jpg").read_bytes())
    local = {"allow_local_files": True}
    value = K.load(pa.array([str(path), f"{http.url}/files/rocket.jpg"]), storage_options=local)
    data, metas = value.field("data").to_pylist(), value.field("meta").to_pylist()
    assert data[0] is None and metas[0]["source"] == str(path)  # path, not bytes
    assert data[1] == path.read_bytes() and metas[1]["source"] is None  # remote: bytes kept
    assert K.encode(value).to_pylist() == [path.read_bytes()] * 2
    kept = K.load(pa.array([str(path)]), by_reference=False, storage_options=local)
    assert K.load(pa.array([str(path)])).field("meta")[0]["error"].as_py().startswith("local_file_refused")
    assert kept.field("data")[0].as_py() == path.read_bytes()

    small = K.resize(value, (32, 32))
    path.write_bytes(b"replaced by something else")
    assert K.encode(small, "PNG")[0].as_py() is None
    with pytest.raises(SparkmmError, match="changed: .*rocket.jpg"):
        K.encode(small, "PNG", errors="raise")
    path.unlink()
    with pytest.raises(SparkmmError, match="not_found"):
        K.encode(small, "PNG", errors="raise")
