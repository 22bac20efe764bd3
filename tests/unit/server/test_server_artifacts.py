"""Fetch + verify: the manifest's digest, then each file's; refuse any mismatch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from forja_api.serving import StageArtifact
from forja_server.artifacts import fetch_artifact
from forja_server.errors import ArtifactError
from forja_server.models import model_for

from . import _server_tiny_models as tm


def test_verified_manifest_gives_every_file(clf_stage: StageArtifact, tmp_path: Path) -> None:
    art = fetch_artifact(clf_stage, tmp_path)
    assert set(art.files) == {"weights", "onnx"}
    assert art.manifest.architecture == "tiny-classifier"
    for role, path in art.files.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == art.manifest.files[role].sha256


def test_manifest_digest_mismatch_is_refused(clf_stage: StageArtifact, tmp_path: Path) -> None:
    bad = clf_stage.model_copy(update={"sha256": "0" * 64})
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        fetch_artifact(bad, tmp_path)


def test_tampered_weights_are_refused(artifacts: Path, tmp_path: Path) -> None:
    stage = tm.classifier(artifacts / "tampered")
    weights = Path(stage.uri[len("file://"):]).parent / "model.pt"
    weights.write_bytes(weights.read_bytes() + b"x")
    with pytest.raises(ArtifactError, match=r"model\.pt \(weights\) does not match"):
        fetch_artifact(stage, tmp_path)


def _rewrite_manifest(stage: StageArtifact, change: dict) -> StageArtifact:
    path = Path(stage.uri[len("file://"):])
    data = json.loads(path.read_text())
    data.update(change)
    path.write_text(json.dumps(data))
    return stage.model_copy(update={"sha256": hashlib.sha256(path.read_bytes()).hexdigest()})


def test_manifest_paths_cannot_escape(artifacts: Path, tmp_path: Path) -> None:
    stage = tm.classifier(artifacts / "escape")
    data = tm.manifest_json(stage)
    data["files"]["weights"]["path"] = "../../etc/passwd"
    stage = _rewrite_manifest(stage, {"files": data["files"]})
    with pytest.raises(ArtifactError, match=r"without '\.\.'"):
        fetch_artifact(stage, tmp_path)


def test_format_must_match_manifest(clf_stage: StageArtifact, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="format"):
        fetch_artifact(clf_stage.model_copy(update={"format": "tflite"}), tmp_path)


def test_single_file_artifact_gets_a_manifest(tmp_path: Path) -> None:
    onnx_stage = tm.write_artifact(
        tmp_path / "src", name="plain", module=tm.TinyClassifier(3), architecture=None,
        arch_config={}, task="classification", input_shape=[None, 3, 32, 32], fmt="onnx",
        with_weights=False)
    onnx_file = Path(onnx_stage.uri[len("file://"):]).parent / "model.onnx"
    stage = StageArtifact(name="plain", uri=f"file://{onnx_file}", format="onnx",
                          task="classification",
                          sha256=hashlib.sha256(onnx_file.read_bytes()).hexdigest())
    art = fetch_artifact(stage, tmp_path / "cache")
    assert art.manifest.task == "classification"
    model = model_for(stage, art)
    model.load()
    assert model.input.shape == (3, 32, 32)


def test_pickled_objects_are_never_unpickled(artifacts: Path, tmp_path: Path) -> None:
    """A weights file holding anything but tensors fails weights_only=True loading."""

    stage = tm.classifier(artifacts / "pickle", onnx=False)
    weights = Path(stage.uri[len("file://"):]).parent / "model.pt"
    torch.save({"model_state_dict": tm.TinyClassifier(3).state_dict(),
                "payload": _Evil()}, weights)
    data = tm.manifest_json(stage)
    data["files"]["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    data["files"]["weights"]["size"] = weights.stat().st_size
    stage = _rewrite_manifest(stage, {"files": data["files"]})
    model = model_for(stage, fetch_artifact(stage, tmp_path))
    with pytest.raises(ArtifactError, match="weights_only=True"):
        model.load()
    assert not _Evil.constructed


class _Evil:
    constructed = False

    def __reduce__(self):  # would run on a free unpickle
        return (_mark, ())


def _mark() -> None:
    _Evil.constructed = True
