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


def _unet(root: Path, preprocessing: dict[str, object]):
    torch.manual_seed(4)
    return tm.write_artifact(
        root, name="unet", module=tm.TinyUNet(4, 2), architecture="tiny-unet",
        arch_config={"in_channels": 4, "num_classes": 2}, task="segmentation",
        input_shape=[None, 4, None, None], preprocessing=preprocessing,
    )


def test_the_trainers_multiple_of_is_used_and_not_probed(artifacts: Path, tmp_path: Path) -> None:
    # TinyUNet runs at multiples of 4; a declared 8 (a deeper net's) must win over probing.
    declared = _load(_unet(artifacts / "unet8", {"tile": 32, "multiple_of": 8}), tmp_path)
    assert declared.probe_side_multiple() == 8
    probed = _load(_unet(artifacts / "unet-probed", {"tile": 32}), tmp_path)
    assert probed.probe_side_multiple() == 4
    with pytest.raises(InvalidInput, match="multiples of 8"):
        declared.check_batch(np.zeros((1, 4, 36, 36), np.float32))


def test_legacy_manifest_spellings_reach_the_readers(artifacts: Path, tmp_path: Path) -> None:
    # What geo artifacts written before the typed manifest carry.
    model = _load(_unet(artifacts / "unet-legacy", {
        "patch_size": 16, "band_mean": [0.5] * 4, "band_std": [2.0] * 4, "tile_stride": 8,
    }), tmp_path)
    pre = model.preprocessing
    assert (pre.tile, pre.tile_stride, pre.mean, pre.std) == (16, 8, [0.5] * 4, [2.0] * 4)
    assert model.concrete_input_shape() == (4, 16, 16)


def test_stage_parameters_override_the_manifest_and_bad_ones_name_the_field(
    artifacts: Path, tmp_path: Path
) -> None:
    stage = tm.verifier(artifacts / "ver-params")
    model = _load(stage, tmp_path, sequenceLength=6, threshold=0.9, crop_margin=0.2)
    assert model.preprocessing.frames == 6 and model.postprocessing.threshold == 0.9
    assert model.parameters["crop_margin"] == 0.2
    with pytest.raises(ArtifactError, match="confidence"):
        _load(stage, tmp_path, confidence=2)
