"""Engine-free kernels (no Spark import): ``url`` and ``image``; see ``registry`` for the catalog."""

from sparkmm.ops import image, url
from sparkmm.ops.registry import OPERATORS, Operator

__all__ = ["OPERATORS", "Operator", "image", "url"]
