"""Detector -> crops -> verifier as one endpoint."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from forja_server.pipeline import crop_box

from . import _server_tiny_models as tm
from ._server_helpers import serve


@pytest.fixture(scope="module")
def pipeline(artifacts, tmp_path_factory) -> Iterator[TestClient]:
    stages = [tm.bright_box_detector(artifacts), tm.verifier(artifacts)]
    _, client = serve(stages, tmp_path_factory.mktemp("pcache"), name="smoke")
    with client:
        yield client


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_crop_box_clips_and_grows() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    assert crop_box(img, [10, 10, 30, 50], 0.0).shape == (40, 20, 3)
    assert crop_box(img, [10, 10, 30, 50], 0.5).shape == (70, 40, 3)  # clipped at 0
    assert crop_box(img, [190, 90, 400, 400], 0.0).shape == (10, 10, 3)


def test_bright_half_is_detected_and_verified(pipeline: TestClient) -> None:
    img = np.zeros((128, 128, 3), np.uint8)
    img[:, :64] = 255  # the left half is bright: only anchor 0 passes confidence 0.5
    r = pipeline.post("/predict", files={"file": ("f.png", _png(img), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()["prediction"]
    (det,) = body["detections"]
    # anchor 0 is the box over the left half, scaled from 64x64 network pixels to 128x128
    assert det["box"] == pytest.approx([0, 0, 64, 128], abs=1e-3)
    assert det["label"] == "smoke" and 0.9 < det["score"] <= 1.0
    assert "probability" in det["verification"]
    assert body["confirmed"] == [d for d in body["detections"] if d["verification"]["confirmed"]]
    assert body["sequence"]["mode"] == "repeated" and body["sequence"]["length"] == 4
    assert "repeated" in body["sequence"]["note"]
    assert {"detector", "verifier", "total"} <= body["timings_ms"].keys()
    assert body["versions"] == {"detector": "1.0.0", "verifier": "1.0.0"}


def test_dark_image_has_no_detections(pipeline: TestClient) -> None:
    r = pipeline.post("/predict", files={"file": ("f.png", _png(np.zeros((64, 64, 3),
                                                                         np.uint8)), "image/png")})
    body = r.json()["prediction"]
    assert body["detections"] == [] and body["confirmed"] == []


def test_stages_stay_reachable_and_metrics_label_them(pipeline: TestClient) -> None:
    assert pipeline.get("/v2/models/detector/ready").json() == {"ready": True}
    assert pipeline.get("/v2/models/verifier").json()["inputs"][0]["shape"] == [-1, 4, 3, 24, 24]
    pipeline.post("/predict", files={"file": ("f.png", _png(np.full((64, 64, 3), 255, np.uint8)),
                                              "image/png")})
    text = pipeline.get("/metrics").text
    assert 'model="smoke",stage="detector"' in text and 'model="smoke",stage="verifier"' in text
    assert pipeline.post("/predict", json={"tensor": [1.0]}).status_code == 400
