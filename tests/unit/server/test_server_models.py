"""Each format loads from a verified artifact and answers correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from forja_server.artifacts import fetch_artifact
from forja_server.errors import ArtifactError, InvalidInput
from forja_server.models import model_for

from . import _server_tiny_models as tm


def _load(stage, cache: Path, **params):
    stage = stage.model_copy(update={"parameters": params})
    model = model_for(stage, fetch_artifact(stage, cache))
    model.load()
    return model


def test_onnx_runtime_matches_torch(clf_stage, tmp_path: Path) -> None:
    fast = _load(clf_stage, tmp_path)
    eager = _load(clf_stage, tmp_path, runtime="torch")
    assert (fast.runtime, eager.runtime) == ("onnxruntime", "torch")
    x = np.random.default_rng(0).random((5, 3, 32, 32), dtype=np.float32)
    a, b = fast.predict(x)["output"], eager.predict(x)["output"]
    assert a.shape == (5, 3)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # and torch itself agrees with the module the artifact came from
    torch.manual_seed(0)
    ref = tm.TinyClassifier(3).eval()
    with torch.no_grad():
        np.testing.assert_allclose(b, ref(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)


def test_checkpoint_with_metadata_loads(artifacts: Path, tmp_path: Path) -> None:
    stage = tm.classifier(artifacts / "meta", onnx=False, metadata=True)
    model = _load(stage, tmp_path)
    assert model.runtime == "torch"
    assert model.predict(np.zeros((1, 3, 32, 32), np.float32))["output"].shape == (1, 3)


def test_unknown_architecture_names_it(artifacts: Path, tmp_path: Path) -> None:
    stage = tm.write_artifact(
        artifacts / "unknown", name="u", module=tm.TinyClassifier(3), architecture="no-such-net",
        arch_config={}, task="classification", input_shape=[None, 3, 32, 32], onnx=False)
    with pytest.raises(ArtifactError, match="no-such-net"):
        _load(stage, tmp_path)


def test_wrong_input_shape_is_a_client_error(clf_stage, tmp_path: Path) -> None:
    model = _load(clf_stage, tmp_path)
    with pytest.raises(InvalidInput, match=r"expected shape \[batch, 3, 32, 32\]"):
        model.check_batch(np.zeros((1, 3, 16, 16), np.float32))


def test_classification_answer_uses_class_names(clf_stage, tmp_path: Path) -> None:
    model = _load(clf_stage, tmp_path)
    img = np.full((40, 50, 3), 200, np.uint8)
    sample = model.preprocess_image(img)
    assert sample.shape == (3, 32, 32) and sample.dtype == np.float32
    out = model.predict(sample[None])
    answer = model.postprocess({k: v[0] for k, v in out.items()})
    logits = out["output"][0]
    assert answer["label"] == ["cat", "dog", "smoke"][int(np.argmax(logits))]
    assert abs(sum(t["score"] for t in answer["top"]) - 1.0) < 1e-6


def test_verifier_repeats_a_single_crop(artifacts: Path, tmp_path: Path) -> None:
    model = _load(tm.verifier(artifacts), tmp_path)
    sample = model.preprocess_image(np.zeros((10, 12, 3), np.uint8))
    assert sample.shape == (4, 3, 24, 24)
    assert np.array_equal(sample[0], sample[3])
