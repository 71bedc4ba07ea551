"""Engine-free kernels (no Spark import): ``url``, ``image``, ``audio``, ``video``; see ``registry`` for the catalog."""

from sparkmm.ops import audio, image, image_models, speech, url, video
from sparkmm.ops.registry import OPERATORS, Operator

__all__ = ["OPERATORS", "Operator", "audio", "image", "image_models", "speech", "url", "video"]
