"""Public sample photos that install from PyPI (scikit-image: public domain; scikit-learn: CC-BY).

Example:
    >>> len(sample_photos()) >= 10
    True
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SKIMAGE = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "hubble_deep_field.jpg",
            "camera.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "coins.png")
_SKLEARN = ("china.jpg", "flower.jpg")


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def sample_photos() -> list[Path]:
    """Paths of the real photos shipped in the scikit-image and scikit-learn wheels."""
    found: list[Path] = []
    skimage = _package_dir("skimage")
    if skimage is not None:
        found += [skimage / "data" / n for n in _SKIMAGE if (skimage / "data" / n).exists()]
    sklearn = _package_dir("sklearn")
    if sklearn is not None:
        found += [sklearn / "datasets" / "images" / n for n in _SKLEARN if (sklearn / "datasets" / "images" / n).exists()]
    if not found:
        raise RuntimeError("no sample photos: install sparkmm[samples] (scikit-image, scikit-learn)")
    return found
