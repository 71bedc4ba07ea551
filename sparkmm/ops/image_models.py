"""Model operators on image values: embed, classify, aesthetic_score, nsfw_score. No Spark here.

Each kernel call gets one Arrow batch of image values; images are decoded and preprocessed in a
background thread one model batch ahead of the forward pass (:func:`sparkmm.models.vision.run_batched`),
and the model is loaded once per worker (:mod:`sparkmm.models.cache`). Rows whose image is bad
(see ``.image.error``) or cannot be decoded give null; the batch goes on.

Example:
    >>> from sparkmm.ops import image
    >>> embed(image.decode(pa.array([b"junk"])), model="efficientnet-lite0")[0].as_py() is None
    True
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np
import pyarrow as pa
from PIL import Image

from sparkmm.errors import SparkmmError, check_errors_mode, reason
from sparkmm.models import vision
from sparkmm.ops import image as _image
from sparkmm.ops.registry import ERRORS, Param, operator
from sparkmm.ops.value import LazyValues, steps

_V = LazyValues(_image.META_TYPE)

MODEL = Param("model", (("model", "STRING"),),
              doc="'efficientnet-lite0', a Hugging Face model directory, or an aesthetic model directory")
BATCH = Param("batch_size", (("batch_size", "INT"),), 0,
              doc="images per forward pass; 0 = 64 on GPU, 4 on CPU (small batches stay in cache: faster there)")


def auto_batch(batch_size: int, model: vision.VisionModel) -> int:
    """The batch size to use: the caller's, else one that suits the device.

    Example:
        >>> auto_batch(8, None), auto_batch(0, vision.load_vision("efficientnet-lite0", vision.Placement("cpu")))
        (8, 4)
    """
    if batch_size:
        return batch_size
    return 64 if model.placement.is_gpu else 4
DEVICE = Param("device", (("device", "STRING"),), "auto",
               doc="'auto' (the task's GPU, else CPU), 'cpu', 'cuda', 'cuda:N'")
DTYPE = Param("dtype", (("dtype", "STRING"),), "auto", ("auto", "float32", "bfloat16", "float16"),
              doc="model precision; auto = float32 on CPU, bfloat16 on GPU")

TAGS = ((7.1, "very aesthetic"), (5.5, "aesthetic"), (3.7, "displeasing"))  # seed 003's thresholds


def aesthetic_tag(score: float | None) -> str | None:
    """Seed 003's tag: > 7.1 very aesthetic, (5.5, 7.1] aesthetic, (3.7, 5.5] displeasing, else very displeasing.

    Example:
        >>> [aesthetic_tag(s) for s in (7.2, 7.1, 5.5, 3.71, 3.7)]
        ['very aesthetic', 'aesthetic', 'displeasing', 'displeasing', 'very displeasing']
    """
    if score is None or np.isnan(score):
        return None
    for threshold, tag in TAGS:
        if score > threshold:
            return tag
    return "very displeasing"


def _pixels(b: bytes | None, m: dict, prep: vision.Preprocessing) -> Image.Image:
    """Decode with the pending steps; a JPEG with none decodes straight at ~the model's input size."""
    if not steps(m) and m.get("format") == "JPEG":
        im = Image.open(io.BytesIO(_image.source_bytes(b, m)))
        w, h = prep.target(im.width, im.height)
        im.draft("RGB", (w, h))  # DCT-domain downscale, never below the target
        im.load()
        return im
    return _image.materialize(b, m)[0]


def model_inputs(paths: list[str | None], prep: vision.Preprocessing,
                 storage_options: dict | None = None) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Load images by path and preprocess them for a model: flat float32 arrays, and reasons for bad rows.

    Example:
        >>> x, why = model_inputs(["/no/such.jpg"], vision.EfficientNetLite0.preprocessing)
        >>> x, why
        ([None], ['not_found: /no/such.jpg'])
    """
    values = _image.load(pa.array(paths, pa.string()), storage_options=storage_options or {"allow_local_files": True})
    data, metas = _V.split(values)
    pixels: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for b, m in zip(data, metas):
        if m is None or m.get("error"):
            pixels.append(None)
            errors.append(None if m is None else m["error"])
            continue
        try:
            pixels.append(prep(_pixels(b, m, prep)).ravel())
            errors.append(None)
        except Exception as e:  # a bad file gives a reason, never a failed batch
            pixels.append(None)
            errors.append(str(e) if isinstance(e, _image.RowError) else reason("decode_failed", f"{type(e).__name__}: {e}"))
    return pixels, errors


def _infer(images: pa.Array, errors: str, what: str, model: Any,
           forward: Callable[[np.ndarray], np.ndarray], batch_size: int) -> tuple[list[Any], int]:
    """Run ``forward`` over the good rows; returns per-row outputs (None for bad rows) and the row count."""
    check_errors_mode(errors)
    data, metas = _V.split(images)
    if data is None:
        raise TypeError(f"image.{what} needs full image values (data + meta)")
    out: list[Any] = [None] * len(metas)
    good = []
    for i, m in enumerate(metas):
        if m is None:
            continue
        if m.get("error"):
            if errors == "raise":
                raise SparkmmError(f"image {what} failed for {m.get('source') or f'row {i}'}: {m['error']}")
            continue
        good.append(i)
    if not good:
        return out, len(metas)
    loaded = model()
    prep = loaded.preprocessing
    if isinstance(loaded, vision._TorchModel) and vision.gpu_decoder_available(loaded.placement):
        prepare, collate = _gpu_path(data, metas, prep, loaded.device)
    else:
        def prepare(i: int) -> np.ndarray:
            return prep(_pixels(data[i], metas[i], prep))

        collate = np.stack
    for positions, result, failed in vision.run_batched(good, prepare, forward, auto_batch(batch_size, loaded),
                                                        collate):
        for pos, e in failed.items():
            if errors == "raise":
                i = good[pos]
                why = str(e) if isinstance(e, _image.RowError) else reason("decode_failed", f"{type(e).__name__}: {e}")
                raise SparkmmError(f"image {what} failed for {metas[i].get('source') or f'row {i}'}: {why}") from e
        for pos, row in zip(positions, result if result is not None else []):
            out[good[pos]] = row
    return out, len(metas)


def _gpu_path(data: list, metas: list, prep: vision.Preprocessing, device: Any) -> tuple[Callable, Callable]:
    """On a GPU: plain JPEGs travel as bytes and are decoded by nvJPEG in the batch, everything else is
    decoded by PIL; the batch is preprocessed on the GPU and stays there up to the model."""
    import torch

    def prepare(i: int) -> tuple[str, Any]:
        m = metas[i]
        if m.get("format") == "JPEG" and not steps(m):
            return "jpeg", _image.source_bytes(data[i], m)
        im = _image.materialize(data[i], m)[0].convert("RGB")
        return "pixels", torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)

    def collate(items: list[tuple[str, Any]]) -> Any:
        raw = [x for kind, x in items if kind == "jpeg"]
        decoded = iter(vision.decode_jpegs(raw, device) if raw else [])
        images = [next(decoded) if kind == "jpeg" else x for kind, x in items]
        return vision.tensor_inputs(images, prep, device)

    return prepare, collate


def _model(name: str, device: str, dtype: str, head: str = "embed") -> Callable[[], vision.VisionModel]:
    cache: list[vision.VisionModel] = []

    def get() -> vision.VisionModel:
        if not cache:
            cache.append(vision.load_vision(name, vision.placement(device), dtype, head))
        return cache[0]

    return get


@operator("image", input_type=_image.IMAGE_DDL, output_type="ARRAY<FLOAT>", params=(
    MODEL,
    Param("pooling", (("pooling", "STRING"),), "cls", ("cls", "mean", "pooler"),
          doc="CLS token, mean of patch tokens, or the model's pooler (CNNs: global average)"),
    Param("normalize", (("normalize", "BOOLEAN"),), False, doc="L2-normalise each embedding"),
    DTYPE, BATCH, DEVICE, ERRORS))
def embed(images: pa.Array, model: str, pooling: str = "cls", normalize: bool = False, dtype: str = "auto",
          batch_size: int = 0, device: str = "auto", errors: str = "ignore") -> pa.Array:
    """Image embeddings from a vision model (ViT, DINOv2, CLIP/SigLIP vision tower, EfficientNet-Lite0).

    Example:
        >>> from sparkmm.ops import image
        >>> v = embed(image.decode(pa.array([image._png(64, 48)])), model="efficientnet-lite0")
        >>> len(v[0].as_py())
        1280
    """
    get = _model(model, device, dtype)

    def forward(batch: np.ndarray) -> np.ndarray:
        e = get().embed(batch, pooling)
        if normalize:
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return e.astype(np.float32)

    out, _ = _infer(images, errors, "embed", get, forward, batch_size)
    return pa.array([None if e is None else e for e in out], pa.list_(pa.float32()))


CLASSES_DDL = "ARRAY<STRUCT<label: STRING, score: FLOAT>>"
_CLASSES = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float32())]))


@operator("image", input_type=_image.IMAGE_DDL, output_type=CLASSES_DDL, params=(
    MODEL, Param("top_k", (("top_k", "INT"),), 5, doc="labels kept per image, best first"),
    DTYPE, BATCH, DEVICE, ERRORS))
def classify(images: pa.Array, model: str, top_k: int = 5, dtype: str = "auto", batch_size: int = 0,
             device: str = "auto", errors: str = "ignore") -> pa.Array:
    """Top-k labels with softmax scores ('efficientnet-lite0' with ImageNet labels, or an HF classifier).

    Example:
        >>> from sparkmm.ops import image
        >>> top = classify(image.decode(pa.array([image._png(64, 48)])), model="efficientnet-lite0", top_k=2)
        >>> len(top[0].as_py())
        2
    """
    if top_k is None or top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    get = _model(model, device, dtype, head="classify")

    def forward(batch: np.ndarray) -> list[list[dict]]:
        logits = get().logits(batch).astype(np.float64)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        labels = get().labels
        best = np.argsort(-p, axis=1)[:, :top_k]
        return [[{"label": labels[j], "score": float(p[r, j])} for j in best[r]] for r in range(len(p))]

    out, _ = _infer(images, errors, "classify", get, forward, batch_size)
    return pa.array(out, _CLASSES)


AESTHETIC_DDL = "STRUCT<score: FLOAT, tag: STRING>"
_AESTHETIC = pa.struct([("score", pa.float32()), ("tag", pa.string())])


@operator("image", input_type=_image.IMAGE_DDL, output_type=AESTHETIC_DDL,
          params=(MODEL, DTYPE, BATCH, DEVICE, ERRORS))
def aesthetic_score(images: pa.Array, model: str, dtype: str = "auto", batch_size: int = 0,
                    device: str = "auto", errors: str = "ignore") -> pa.Array:
    """Aesthetic score and seed 003's tag, from a regression head over an embedding model (a directory).

    Example:
        >>> aesthetic_score(pa.array([None], _image.IMAGE_TYPE), model="/models/aesthetic")[0].as_py() is None
        True
    """
    get = _model(model, device, dtype)

    def forward(batch: np.ndarray) -> list[dict]:
        scorer = get()
        if not isinstance(scorer, vision.AestheticModel):
            raise SparkmmError(f"model {model!r} is not an aesthetic model directory (aesthetic.json)")
        return [{"score": float(s), "tag": aesthetic_tag(float(s))} for s in scorer.scores(batch)]

    out, _ = _infer(images, errors, "aesthetic_score", get, forward, batch_size)
    return pa.array(out, _AESTHETIC)


@operator("image", input_type=_image.IMAGE_DDL, output_type="FLOAT",
          params=(Param("model", (("model", "STRING"),), "opennsfw", doc="'opennsfw' (the ONNX package)"),
                  BATCH, DEVICE, ERRORS))
def nsfw_score(images: pa.Array, model: str = "opennsfw", batch_size: int = 0, device: str = "auto",
               errors: str = "ignore") -> pa.Array:
    """Probability that the image is not safe for work (Open-NSFW).

    Example:
        >>> from sparkmm.ops import image
        >>> 0.0 <= nsfw_score(image.decode(pa.array([image._png(64, 48)])))[0].as_py() <= 1.0
        True
    """
    get = _model(model, device, "float32")

    def forward(batch: np.ndarray) -> np.ndarray:
        scorer = get()
        if not isinstance(scorer, vision.OpenNSFW):
            raise SparkmmError(f"model {model!r} is not an NSFW model")
        return scorer.nsfw(batch)

    out, _ = _infer(images, errors, "nsfw_score", get, forward, batch_size)
    return pa.array([None if s is None else float(s) for s in out], pa.float32())


__all__ = ["aesthetic_score", "aesthetic_tag", "classify", "embed", "nsfw_score"]
