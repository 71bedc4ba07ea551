"""Aesthetic score and tag (seed 003): AESTHETIC_SCORE and AESTHETIC_TAG for each image.

args: ``model`` (an aesthetic model directory with aesthetic.json: a regression head over an
embedding model, see sparkmm.models.vision.save_aesthetic_model), ``path_column`` ("path"),
``device`` ("auto"). Process runs the embedding model and the head; PostProcess applies seed 003's
tag thresholds (> 7.1 very aesthetic, (5.5, 7.1] aesthetic, (3.7, 5.5] displeasing, else very
displeasing).
"""

import numpy as np
import pandas as pd

from sparkmm.models import vision
from sparkmm.ops.image_models import aesthetic_tag, model_inputs


def _model(args):
    if "model" not in args:
        raise ValueError("aesthetic_score needs args['model']: an aesthetic model directory")
    return vision.load_vision(args["model"], vision.placement(args.get("device", "auto")))


class PreProcess:
    output_schema = "path string, pixels array<float>, error string"

    def __init__(self, args):
        self.args = args
        if "model" not in args:
            raise ValueError("aesthetic_score needs args['model']: an aesthetic model directory")
        self.prep = vision.preprocessing_of(args["model"])  # from its config: this CPU stage loads no weights

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        paths = frame[self.args.get("path_column", "path")].tolist()
        pixels, errors = model_inputs(paths, self.prep)
        return pd.DataFrame({"path": paths, "pixels": pixels, "error": errors})


class Process:
    output_schema = "path string, AESTHETIC_SCORE float, error string"
    gpus = 1

    def __init__(self, args):
        self.model = _model(args)
        if not isinstance(self.model, vision.AestheticModel):
            raise ValueError(f"{args['model']} is not an aesthetic model directory (aesthetic.json)")

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        ok = [i for i, p in enumerate(frame["pixels"]) if p is not None]
        scores = np.full(len(frame), np.nan, np.float32)
        if ok:
            batch = self.model.preprocessing.stack([frame["pixels"].iloc[i] for i in ok])
            scores[ok] = self.model.scores(batch)
        return pd.DataFrame({"path": frame["path"], "AESTHETIC_SCORE": scores, "error": frame["error"]})


class PostProcess:
    output_schema = "path string, AESTHETIC_SCORE float, AESTHETIC_TAG string, error string"

    def __init__(self, args):
        pass

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        scores = [None if np.isnan(s) else float(s) for s in frame["AESTHETIC_SCORE"]]
        return pd.DataFrame({"path": frame["path"], "AESTHETIC_SCORE": scores,
                             "AESTHETIC_TAG": [aesthetic_tag(s) for s in scores], "error": frame["error"]})
