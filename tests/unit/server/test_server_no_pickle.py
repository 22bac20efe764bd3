"""No pickle reaches the model server: graphs are served, a ``.pt`` that would run code
is refused (and the code provably did not run), and the server starts, loads and
answers in a process where torch and Ultralytics cannot even be imported."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from forja_api.serving import StageArtifact
from forja_server.artifacts import fetch_artifact
from forja_server.errors import ArtifactError
from forja_server.models import model_for

from . import _server_tiny_models as tm
from ._server_helpers import isolated_ultralytics

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _own_ultralytics() -> Iterator[None]:
    with isolated_ultralytics():
        yield


def _single_file(path: Path, fmt: str, **params: Any) -> StageArtifact:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return StageArtifact(name="m", uri=f"file://{path}", sha256=sha, format=fmt,
                         task="detection", parameters=params)


class _ActivationPayload:
    """Pickles as ``DetectionModel(cfg)``: Ultralytics' constructor ``eval``s the cfg's
    activation string, which here creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.cfg = {
            "nc": 1,
            "activation": f"__import__('pathlib').Path({str(marker)!r}).touch() or nn.SiLU()",
            "backbone": [[-1, 1, "Conv", [16, 3, 2]]],
            "head": [[-1, 1, "Detect", ["nc"]]],
        }

    def __reduce__(self) -> tuple[Any, ...]:
        from ultralytics.nn.tasks import DetectionModel

        return (DetectionModel, (self.cfg,))


class _ExecPayload:
    """The classic: unpickling calls exec, which creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _ultralytics_checkpoint(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    marker = d / "code-ran"
    os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0", YOLO_CONFIG_DIR=str(d / "cfg"))
    torch.save({"model": _ActivationPayload(marker), "epoch": -1}, d / "best.pt")
    return d / "best.pt", marker


def test_the_payload_really_runs_code_under_a_class_allow_list(tmp_path: Path) -> None:
    """What the old loader did (weights_only with Ultralytics classes allowed) runs it."""
    from ultralytics.nn.tasks import DetectionModel

    pt, marker = _ultralytics_checkpoint(tmp_path)
    with torch.serialization.safe_globals([DetectionModel]), contextlib.suppress(Exception):
        torch.load(pt, map_location="cpu", weights_only=True)
    assert marker.exists()


@pytest.mark.parametrize("params", [{}, {"runtime": "torch"}])
def test_an_ultralytics_pt_is_refused_and_its_code_never_runs(
    params: dict[str, Any], tmp_path: Path
) -> None:
    pt, marker = _ultralytics_checkpoint(tmp_path / "art")
    stage = _single_file(pt, "ultralytics", **params)
    model = model_for(stage, fetch_artifact(stage, tmp_path / "cache"))
    with pytest.raises(ArtifactError) as refused:
        model.load()
    assert not marker.exists(), "the pickle's code ran"
    assert "never unpickles" in refused.value.message or \
        "runtime 'torch' is not served" in refused.value.message


def test_runtime_torch_on_an_ultralytics_onnx_artifact_is_refused(
    artifacts: Path, tmp_path: Path
) -> None:
    stage = tm.bright_box_detector(artifacts / "det")
    stage = stage.model_copy(update={"parameters": {"runtime": "torch"}})
    model = model_for(stage, fetch_artifact(stage, tmp_path))
    with pytest.raises(ArtifactError, match="remove 'runtime: torch'"):
        model.load()


def test_a_state_dict_that_would_run_code_is_refused(artifacts: Path, tmp_path: Path) -> None:
    stage = tm.classifier(artifacts / "evil", onnx=False)
    marker = tmp_path / "code-ran"
    weights = Path(stage.uri[len("file://"):]).parent / "model.pt"
    torch.save({"model_state_dict": _ExecPayload(marker)}, weights)
    manifest = tm.manifest_json(stage)
    manifest["files"]["weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest["files"]["weights"]["size"] = weights.stat().st_size
    mpath = Path(stage.uri[len("file://"):])
    mpath.write_text(json.dumps(manifest))
    stage = stage.model_copy(update={"sha256": hashlib.sha256(mpath.read_bytes()).hexdigest()})
    model = model_for(stage, fetch_artifact(stage, tmp_path / "cache"))
    with pytest.raises(ArtifactError, match="refusing to unpickle"):
        model.load()
    assert not marker.exists()


def test_extra_allowed_globals_are_not_trusted(artifacts: Path, tmp_path: Path) -> None:
    stage = tm.classifier(artifacts / "globals", onnx=False)
    model = model_for(stage, fetch_artifact(stage, tmp_path))
    with torch.serialization.safe_globals([_ExecPayload]), \
            pytest.raises(ArtifactError, match="extra globals"):
        model.load()


# A meta-path finder that makes torch, Ultralytics and TensorFlow unimportable, as in
# the server image; then the server is built, loads ONNX artifacts and answers.
_NO_TORCH = r"""
import importlib.abc, json, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "ultralytics", "tensorflow"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocked())
import warnings; warnings.simplefilter("ignore")
from pathlib import Path
from fastapi.testclient import TestClient
import forja_server.cli  # the entry point imports without torch
from forja_api.serving import ServingConfig, StageArtifact
from forja_server.app import create_app
from forja_server.errors import ArtifactError
from forja_server.repository import ModelRepository

stages = [StageArtifact.model_validate(s) for s in json.loads(sys.argv[1])]
out = {}
repo = ModelRepository(ServingConfig(name=stages[0].name, stages=stages[:1]), Path(sys.argv[2]))
repo.load_all()
with TestClient(create_app(repo)) as client:
    r = client.post(f"/v2/models/{stages[0].name}/infer", json={"inputs": [{
        "name": "input", "shape": [2, 3, 32, 32], "datatype": "FP32",
        "data": [0.5] * (2 * 3 * 32 * 32)}]})
    out["infer"] = [r.status_code, r.json()["outputs"][0]["shape"]]
    out["runtime"] = repo.models[stages[0].name].runtime
for stage in stages[1:]:
    try:
        ModelRepository(ServingConfig(name=stage.name, stages=[stage]),
                        Path(sys.argv[2])).load_all()
        out[stage.name] = "loaded"
    except ArtifactError as exc:
        out[stage.name] = exc.message
out["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "ultralytics"})
print(json.dumps(out))
"""


def test_the_server_serves_onnx_where_torch_cannot_be_imported(
    artifacts: Path, tmp_path: Path
) -> None:
    onnx = tm.classifier(artifacts / "plain")
    no_graph = tm.classifier(artifacts / "nograph", onnx=False).model_copy(
        update={"name": "no-graph"})
    pt, marker = _ultralytics_checkpoint(tmp_path / "yolo")
    yolo = _single_file(pt, "ultralytics").model_copy(update={"name": "yolo-pt"})
    stages = json.dumps([s.model_dump(mode="json") for s in (onnx, no_graph, yolo)])
    # The image's PYTHONPATH: operator, server_image, and of trainer_image only the
    # shared tile maths (server_image/Dockerfile copies nothing else of it).
    shared = tmp_path / "trainer_image"
    shared.mkdir()
    (shared / "forja_tiles").symlink_to(ROOT / "trainer_image" / "forja_tiles")
    path = os.pathsep.join([*(str(ROOT / p) for p in ("operator", "server_image")), str(shared)])
    run = subprocess.run([sys.executable, "-c", _NO_TORCH, stages, str(tmp_path / "cache")],
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "PYTHONPATH": path})
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["infer"] == [200, [2, 3]]
    assert out["runtime"] == "onnxruntime"
    assert "has no ONNX graph" in out["no-graph"] and "without torch" in out["no-graph"]
    assert "never unpickles" in out["yolo-pt"]
    assert out["imported"] == []
    assert not marker.exists()
