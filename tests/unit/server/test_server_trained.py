"""Models trained by forja's own trainers (tiny, from scratch), served and answering
as the trainer's architecture does. This is the trainer -> artifact -> server path
a TrainingJob -> ModelVersion -> InferenceService takes, minus the cluster."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from fastapi.testclient import TestClient
from PIL import Image

import forja_architectures as architectures
import forja_storage as storage
from forja_api.serving import StageArtifact
from forja_trainer.geo.synthetic import make_geotiff_dataset

from ._server_helpers import isolated_ultralytics, serve, train_stage

Train = Callable[..., StageArtifact]


@pytest.fixture(scope="module", autouse=True)
def _own_ultralytics() -> Iterator[None]:
    with isolated_ultralytics():
        yield


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> Train:
    root = tmp_path_factory.mktemp("trained")
    counter = iter(range(100))
    torch.set_num_threads(1)  # two shared cores

    def run(trainer: str, name: str, uri: str, fmt: str, hp: dict[str, Any]) -> StageArtifact:
        return train_stage(root, next(counter), trainer, name, uri, fmt, hp)

    return run


def _rebuilt(stage: StageArtifact) -> tuple[torch.nn.Module, Any]:
    from forja_api.artifact import ModelManifest

    manifest = ModelManifest.model_validate_json(storage.read_bytes(stage.uri))
    base = stage.uri.rsplit("/", 1)[0]
    weights = storage.local_path(storage.join(base, manifest.files["weights"].path))
    model = architectures.build(manifest.architecture or "", manifest.arch_config)
    model.load_state_dict(torch.load(weights, weights_only=True))
    return model.eval(), manifest


def _v2(client: TestClient, name: str, x: np.ndarray) -> np.ndarray:
    r = client.post(f"/v2/models/{name}/infer", json={"inputs": [{
        "name": "input", "shape": list(x.shape), "datatype": "FP32",
        "data": x.reshape(-1).tolist()}]})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


@pytest.fixture(scope="module")
def sai(train: Train, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[TestClient, StageArtifact]]:
    verifier = train("smoke-verifier", "verifier",
                     "generated://smoke-sequences?n=24&frames=4&size=24", "generated",
                     {"epochs": 1, "crop_size": 24, "width": 8, "hidden": 16})
    detector = train("yolo-detector", "detector",
                     "generated://yolo-boxes?train=8&val=4&size=64", "generated",
                     {"epochs": 1, "imgsz": 64, "batch_size": 4})
    detector = detector.model_copy(update={"parameters": {"conf": 0.0001}})
    _, client = serve([detector, verifier], tmp_path_factory.mktemp("sai-cache"), name="sai")
    with client:
        yield client, verifier


@pytest.mark.slow
def test_trained_verifier_answers_as_its_architecture(sai) -> None:
    client, verifier = sai
    model, manifest = _rebuilt(verifier)
    assert manifest.architecture == "smokeynet-lite"
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 24, 24)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_v2(client, "verifier", x).reshape(expected.shape), expected,
                               rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_trained_sai_pipeline_answers_with_both_timings(sai) -> None:
    client, _ = sai
    img = np.random.default_rng(2).integers(0, 255, (96, 128, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    r = client.post("/predict", files={"file": ("f.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()["prediction"]
    assert {"detector", "verifier", "total"} <= body["timings_ms"].keys()
    assert body["detections"], "confidence 1e-4 makes even a 1-epoch detector propose boxes"
    for det in body["detections"]:
        assert 0.0 <= det["verification"]["probability"] <= 1.0
        x1, y1, x2, y2 = det["box"]
        assert -1 <= x1 <= x2 <= 129 and -1 <= y1 <= y2 <= 97  # letterboxed back to the image
    assert body["sequence"] == {"length": 4, "frames_given": 1, "mode": "repeated",
                                "note": body["sequence"]["note"]}


@pytest.mark.slow
def test_trained_classifier_and_unet(train: Train, tmp_path: Path) -> None:
    clf = train("image-classifier", "shapes", "generated://shapes?classes=3&per_class=12&size=16",
                "generated", {"epochs": 1, "image_size": 16, "width": 8, "batch_size": 16})
    scenes = make_geotiff_dataset(tmp_path / "scenes", scenes=2, size=(96, 96))
    unet = train("unet-segmentation", "unet", scenes.as_uri(), "geotiff",
                 {"epochs": 1, "patch": 32, "stride": 32, "batch_size": 16})
    _, client = serve([clf, unet], tmp_path / "cache", name="vision")
    with client:
        model, manifest = _rebuilt(clf)
        x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(_v2(client, "shapes", x), expected, rtol=1e-4, atol=1e-4)
        r = client.post("/predict?model=shapes",
                        json={"tensor": x[0].tolist()})
        assert r.json()["prediction"]["label"] == manifest.class_names[int(expected[0].argmax())]

        scene = scenes / "val" / "images" / "val0.tif"
        r = client.post("/predict/geotiff?model=unet", content=scene.read_bytes(),
                        headers={"content-type": "image/tiff"})
        assert r.status_code == 200, r.text
        with rasterio.MemoryFile(r.content) as mem, mem.open() as out, \
                rasterio.open(scene) as src:
            assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
            assert set(np.unique(out.read(1))) <= {0, 1}
