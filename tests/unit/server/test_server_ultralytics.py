"""Ultralytics detectors: the ONNX export through ONNX Runtime, boxes in image pixels.
(A bare .pt is refused: tests/unit/server/test_server_no_pickle.py.)"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from copy import deepcopy
from pathlib import Path

import numpy as np
import pytest
import torch

from forja_api.artifact import MANIFEST_NAME, ArtifactFile, ModelManifest
from forja_api.serving import StageArtifact
from forja_server.artifacts import fetch_artifact
from forja_server.models import model_for

from ._server_helpers import isolated_ultralytics, serve


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def _own_ultralytics() -> Iterator[None]:
    with isolated_ultralytics():
        yield


@pytest.fixture(scope="module")
def yolo_stage(tmp_path_factory: pytest.TempPathFactory) -> StageArtifact:
    d = tmp_path_factory.mktemp("yolo")
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_CONFIG_DIR=str(d / "cfg"))
    from ultralytics import YOLO

    torch.manual_seed(0)
    yolo = YOLO("yolov8n.yaml")  # built from its yaml: no download
    # What an Ultralytics trainer saves: the pickled model beside metadata.
    torch.save({"model": deepcopy(yolo.model).half(), "train_args": {"imgsz": 64},
                "epoch": -1, "version": "8.4.190"}, d / "best.pt")
    cwd = Path.cwd()
    os.chdir(d)  # the exporter writes next to the model's name, i.e. into the cwd
    try:
        onnx = d / Path(yolo.export(format="onnx", imgsz=64, simplify=False, dynamic=True))
    finally:
        os.chdir(cwd)
    files = {"weights": ArtifactFile(path="best.pt", sha256=_sha(d / "best.pt"),
                                     size=(d / "best.pt").stat().st_size),
             "onnx": ArtifactFile(path=onnx.name, sha256=_sha(onnx), size=onnx.stat().st_size)}
    manifest = ModelManifest(format="ultralytics", task="detection", files=files,
                             class_names=[f"c{i}" for i in range(80)],
                             preprocessing={"resize": [64, 64]},
                             postprocessing={"confidence": 0.0001})
    (d / MANIFEST_NAME).write_text(manifest.to_json())
    return StageArtifact(name="yolo", uri=f"file://{d / MANIFEST_NAME}",
                         sha256=_sha(d / MANIFEST_NAME), format="ultralytics")


@pytest.mark.slow
def test_the_onnx_export_answers_raw_head_outputs(yolo_stage: StageArtifact, tmp_path: Path
                                                  ) -> None:
    model = model_for(yolo_stage, fetch_artifact(yolo_stage, tmp_path))
    model.load()
    assert model.runtime == "onnxruntime"
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    assert model.predict(x)["output0"].shape == (2, 84, 84)  # 4 box + 80 classes, 84 anchors


@pytest.mark.slow
def test_detector_answers_boxes_in_image_pixels(yolo_stage: StageArtifact, tmp_path: Path
                                                ) -> None:
    import io

    from PIL import Image

    _, client = serve([yolo_stage], tmp_path)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (96, 128, 3), np.uint8)).save(
        buf, format="PNG")
    with client:
        r = client.post("/predict", files={"file": ("f.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    dets = r.json()["prediction"]["detections"]
    assert dets, "an untrained detector at confidence 1e-4 still proposes boxes"
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        assert x1 <= x2 and y1 <= y2 and d["label"].startswith("c")
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
