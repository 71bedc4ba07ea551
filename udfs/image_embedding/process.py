"""Image embedding (seed 004): resample to the model's input, embed with a ViT/DINOv2/CLIP or EfficientNet.

args: ``model`` (default "efficientnet-lite0"; or a Hugging Face model directory), ``pooling`` ("cls"),
``normalize`` (true), ``path_column`` ("path"), ``device`` ("auto").
PreProcess (CPU) decodes and preprocesses to model-ready pixels, Process (GPU when the task has one)
runs the model, PostProcess (CPU) normalises and reports the dimension.
"""

import numpy as np
import pandas as pd

from sparkmm.models import vision
from sparkmm.ops.image_models import model_inputs


def _model(args):
    return vision.load_vision(args.get("model", "efficientnet-lite0"), vision.placement(args.get("device", "auto")))


class PreProcess:
    output_schema = "path string, pixels array<float>, error string"

    def __init__(self, args):
        self.args = args
        # the model's own preprocessing, read from its config: this CPU stage loads no weights
        self.prep = vision.preprocessing_of(args.get("model", "efficientnet-lite0"))

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        paths = frame[self.args.get("path_column", "path")].tolist()
        pixels, errors = model_inputs(paths, self.prep)
        return pd.DataFrame({"path": paths, "pixels": pixels, "error": errors})


class Process:
    output_schema = "path string, embedding array<float>, error string"
    gpus = 1  # the inference stage asks for one GPU per task on clusters that have them

    def __init__(self, args):
        self.args = args
        self.model = _model(args)

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        ok = [i for i, p in enumerate(frame["pixels"]) if p is not None]
        out = [None] * len(frame)
        if ok:
            batch = self.model.preprocessing.stack([frame["pixels"].iloc[i] for i in ok])
            for i, e in zip(ok, self.model.embed(batch, self.args.get("pooling", "cls"))):
                out[i] = e
        return pd.DataFrame({"path": frame["path"], "embedding": out, "error": frame["error"]})


class PostProcess:
    output_schema = "path string, embedding array<float>, dim int, error string"

    def __init__(self, args):
        self.normalize = bool(args.get("normalize", True))

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        vectors = []
        for e in frame["embedding"]:
            if e is None:
                vectors.append(None)
                continue
            e = np.asarray(e, np.float32)
            vectors.append(e / max(float(np.linalg.norm(e)), 1e-12) if self.normalize else e)
        dims = [None if v is None else len(v) for v in vectors]
        return pd.DataFrame({"path": frame["path"], "embedding": vectors, "dim": pd.array(dims, "Int32"),
                             "error": frame["error"]})
