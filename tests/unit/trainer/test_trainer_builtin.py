"""The built-in trainers, trained for real on small generated data that is learnable.

Each must beat a trivial baseline by a stated margin on its validation set:

* smoke-verifier: accuracy >= majority-class accuracy + 0.25
* image-classifier: accuracy >= majority-class accuracy + 0.25
* restoration-finetune: PSNR >= PSNR of the untouched degraded input + 1.5 dB

and write a complete artifact: manifest, weights rebuildable from the
architecture registry with ``weights_only=True``, and an ONNX export that matches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

import forja_architectures as architectures
import forja_storage as storage
from forja_api.artifact import ModelManifest
from forja_api.contract import ExitCode, RenderedSpec, Result
from forja_trainer.config import build_job_config
from forja_trainer.context import TrainingContext
from forja_trainer.progress import ProgressReporter
from forja_trainer.runtime import execute
from forja_trainer.trainers.restoration_finetune import RestorationTrainer


def _train(spec: str, tmp_path: Path) -> Result:
    code, result = execute(
        spec, workdir=tmp_path / "work", progress=ProgressReporter([]), install_signals=False
    )
    assert code == ExitCode.SUCCESS, result.message
    assert result.ok and result.artifact is not None
    return result


def _check_artifact(result: Result, example: torch.Tensor) -> ModelManifest:
    """Verify digests, rebuild the model from the manifest, compare torch and ONNX."""
    assert result.artifact is not None
    data = storage.read_bytes(result.artifact.uri)
    # the Result reports the manifest's own digest
    assert hashlib.sha256(data).hexdigest() == result.artifact.sha256
    manifest = ModelManifest.model_validate_json(data)
    base = result.artifact.uri.rsplit("/", 1)[0]
    for entry in manifest.files.values():
        local = storage.local_path(storage.join(base, entry.path))
        assert local is not None and storage.sha256_file(local) == entry.sha256
    assert {"weights", "history", "curve", "onnx"} <= set(manifest.files)
    assert manifest.format == "torch-state-dict" and manifest.inputs and manifest.outputs
    weights = storage.local_path(storage.join(base, manifest.files["weights"].path))
    assert weights is not None
    model = architectures.build(manifest.architecture or "", manifest.arch_config)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    with torch.no_grad():
        expected = model(example).numpy()
    onnx_path = storage.local_path(storage.join(base, manifest.files["onnx"].path))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})[0]
    assert np.allclose(got, expected, atol=1e-4)
    history = json.loads(
        Path(str(storage.local_path(storage.join(base, "history.json")))).read_text()
    )
    assert len(history["epochs"]) == int(result.metrics["epochs_trained"])
    return manifest


@pytest.mark.slow
def test_smoke_verifier_learns_motion(make_spec, tmp_path: Path) -> None:
    hp: dict[str, Any] = {"epochs": 6, "crop_size": 24, "width": 8, "hidden": 16, "lr": 0.01}
    spec = make_spec("smoke-verifier", "generated://smoke-sequences?n=64&frames=4&size=24", hp)
    result = _train(spec, tmp_path)
    m = result.metrics
    assert m["val_accuracy"] >= m["baseline_accuracy"] + 0.25, m
    manifest = _check_artifact(result, torch.randn(2, 4, 3, 24, 24))
    assert manifest.task == "verification" and manifest.class_names == ["no_smoke", "smoke"]
    assert manifest.postprocessing.threshold == 0.5
    # the checkpoint the SAI pipeline loads: a dict with these keys, weights_only-safe
    base = result.artifact.uri.rsplit("/", 1)[0]  # type: ignore[union-attr]
    ckpt = torch.load(
        storage.local_path(storage.join(base, manifest.files["checkpoint"].path)), weights_only=True
    )
    assert {"model_state_dict", "epoch", "metrics", "config"} <= set(ckpt)


@pytest.mark.slow
def test_image_classifier_balances_and_learns(make_spec, tmp_path: Path) -> None:
    hp = {
        "epochs": 8,
        "image_size": 24,
        "width": 8,
        "batch_size": 16,
        "target_per_class": 30,
        "augmentation": "light",
        "mixup_alpha": 0.2,
        "max_synthetic_fraction": 0.5,
    }
    uri = "generated://shapes?classes=4&per_class=30&size=24&imbalance=40"
    result = _train(make_spec("image-classifier", uri, hp), tmp_path)
    m = result.metrics
    assert m["val_accuracy"] >= m["baseline_accuracy"] + 0.25, m
    manifest = _check_artifact(result, torch.randn(2, 3, 24, 24))
    assert manifest.class_names == ["disk", "square", "hbar", "vbar"]
    base = result.artifact.uri.rsplit("/", 1)[0]  # type: ignore[union-attr]
    balance = json.loads(storage.read_bytes(storage.join(base, "balance.json")))
    # the smallest class (40% of 30 -> 12 images, 10 in training) got synthetic copies,
    # capped at 50% synthetic
    assert balance["vbar"]["real"] < 30 and balance["vbar"]["synthetic"] > 0
    assert balance["vbar"]["synthetic"] <= balance["vbar"]["real"]
    assert (
        balance["disk"]["synthetic"] == 30 - balance["disk"]["real"]
        or balance["disk"]["real"] >= 30
    )


@pytest.mark.slow
def test_restoration_beats_identity(make_spec, tmp_path: Path) -> None:
    hp = {"epochs": 6, "image_size": 24, "width": 8, "lr": 0.005}
    uri = "generated://restoration-pairs?n=40&size=24&noise_pct=20"
    result = _train(make_spec("restoration-finetune", uri, hp), tmp_path)
    m = result.metrics
    assert m["val_psnr"] >= m["baseline_psnr"] + 1.5, m
    manifest = _check_artifact(result, torch.rand(2, 3, 24, 24))
    assert manifest.task == "restoration"


@pytest.mark.slow
def test_restoration_partial_transfer_and_freeze(make_spec, tmp_path: Path) -> None:
    torch.manual_seed(3)
    donor = architectures.build("simple-nafnet", {"width": 8, "middle_blocks": 2})
    state = donor.state_dict()
    state["ending.weight"] = torch.randn(4, 8, 3, 3)  # a different head: must not move
    weights = tmp_path / "pretrained_models" / "nafnet" / "donor.pth"
    weights.parent.mkdir(parents=True)
    torch.save({"params": state}, weights)  # NAFNet checkpoints wrap the tensors in "params"
    digest = storage.sha256_file(weights)
    hp = {"epochs": 2, "image_size": 16, "width": 8, "lr": 0.005}
    spec = make_spec(
        "restoration-finetune",
        "generated://restoration-pairs?n=16&size=16",
        hp,
        pretrained={"uri": f"file://{weights}", "sha256": digest, "freezeBackbone": True},
    )
    result = _train(spec, tmp_path)
    base = result.artifact.uri.rsplit("/", 1)[0]  # type: ignore[union-attr]
    report = json.loads(storage.read_bytes(storage.join(base, "transfer.json")))
    assert "ending.weight" in report["shape_mismatch"]
    assert report["shape_mismatch"]["ending.weight"] == {
        "pretrained": [4, 8, 3, 3],
        "model": [3, 8, 3, 3],
    }
    assert "intro.weight" in report["transferred"] and "ending.bias" in report["transferred"]
    assert any(n.startswith("middle_blks.1.") for n in report["unused_from_pretrained"])
    trained = torch.load(storage.local_path(storage.join(base, "model.pt")), weights_only=True)
    # frozen backbone: transferred weights unchanged; the head trained
    assert torch.equal(trained["intro.weight"], state["intro.weight"])
    assert torch.equal(trained["middle_blks.0.conv1.weight"], state["middle_blks.0.conv1.weight"])
    assert not torch.equal(trained["ending.bias"], state["ending.bias"])
    # the verified copy was cached by digest; a second fetch reads nothing from the store
    cache = tmp_path / "work" / "cache" / "sha256" / digest / "donor.pth"
    assert cache.is_file()


@pytest.mark.slow
def test_restoration_backbone_learns_slower(make_spec, tmp_path: Path) -> None:
    donor = architectures.build("simple-nafnet", {"width": 8})
    weights = tmp_path / "donor.pth"
    torch.save(donor.state_dict(), weights)
    spec = json.loads(
        make_spec(
            "restoration-finetune",
            "generated://restoration-pairs?n=8&size=16",
            {"lr": 0.01, "width": 8, "image_size": 16},
            pretrained={"uri": f"file://{weights}", "backboneLrFactor": 0.1},
        )
    )
    config = build_job_config(
        RenderedSpec.model_validate(spec), RestorationTrainer.hyperparameters_model
    )
    trainer = RestorationTrainer(TrainingContext(config, torch.device("cpu"), tmp_path / "w"))
    model = trainer.build_model()
    groups = {g["name"]: g["lr"] for g in trainer.param_groups(model)}
    assert groups == {"backbone": pytest.approx(0.001), "head": pytest.approx(0.01)}
