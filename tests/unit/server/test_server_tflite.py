"""TFLite INT8 through ai-edge-litert (no tensorflow in the server process)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forja_api.artifact import MANIFEST_NAME, ArtifactFile, ModelManifest
from forja_api.serving import StageArtifact
from forja_server.artifacts import fetch_artifact
from forja_server.models import model_for

from ._server_helpers import serve

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tflite_stage(tmp_path_factory: pytest.TempPathFactory) -> StageArtifact:
    d = tmp_path_factory.mktemp("tflite")
    subprocess.run([sys.executable, str(HERE / "_server_make_tflite.py"), str(d)], check=True,
                   timeout=300, capture_output=True)

    def entry(name: str) -> ArtifactFile:
        p = d / name
        return ArtifactFile(path=name, sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
                            size=p.stat().st_size)

    manifest = ModelManifest(format="tflite", task="multilabel", files={
        "weights": entry("model_qat_int8.tflite"), "config": entry("inference_config.json"),
        "labels": entry("labels.txt")})
    (d / MANIFEST_NAME).write_text(manifest.to_json())
    return StageArtifact(name="mobile", uri=f"file://{d / MANIFEST_NAME}", format="tflite",
                         sha256=hashlib.sha256((d / MANIFEST_NAME).read_bytes()).hexdigest())


@pytest.mark.slow
def test_int8_model_matches_its_float_original(tflite_stage: StageArtifact,
                                               tmp_path: Path) -> None:
    art = fetch_artifact(tflite_stage, tmp_path)
    model = model_for(tflite_stage, art)
    model.load()
    assert model.runtime == "litert" and "tensorflow" not in sys.modules
    assert model.input.shape == (16, 16, 3) and model.input.dtype == "uint8"
    assert model.manifest.class_names == ["cloud", "smoke", "fire"]
    root = Path(tflite_stage.uri[len("file://"):]).parent
    x = np.load(root / "inputs.npy")
    probs = next(iter(model.predict(x).values()))
    np.testing.assert_allclose(probs, np.load(root / "float_probs.npy"), atol=0.03)
    one = next(iter(model.predict(x[:1]).values()))  # the interpreter resizes per batch
    np.testing.assert_allclose(one, probs[:1], atol=1e-6)


@pytest.mark.slow
def test_thresholds_from_inference_config_decide_labels(tflite_stage: StageArtifact,
                                                        tmp_path: Path) -> None:
    _, client = serve([tflite_stage], tmp_path)
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(buf, format="PNG")
    with client:
        r = client.post("/predict", files={"file": ("f.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200, r.text
    pred = r.json()["prediction"]
    th = {"cloud": 0.5, "smoke": 0.3, "fire": 0.9}
    assert pred["labels"] == [k for k, v in pred["scores"].items() if v >= th[k]]
    assert all(0.0 <= v <= 1.0 for v in pred["scores"].values())
