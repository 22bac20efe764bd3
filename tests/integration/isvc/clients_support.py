"""The model the ecosystem's clients call (test_isvc_clients.py), and the way they are run.

A classifier trained by forja's own ``image-classifier`` trainer (a few seconds on
generated shapes), whose exported graph gets a second output, ``probabilities``
(a Softmax over ``logits``), so that asking for one output by name has something
to leave out. The clients run in their own venv (hack/client-venv.sh: their pins
conflict with the shared venv's), as a subprocess running clients_calls.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from forja_api.artifact import MANIFEST_NAME, ArtifactFile, ModelManifest, TensorSpec
from unit.server._server_helpers import train_stage

CHECKOUT = Path(__file__).resolve().parents[3]
CALLS = Path(__file__).with_name("clients_calls.py")
OUTPUTS = ("logits", "probabilities")


@dataclass(frozen=True)
class TrainedModel:
    manifest: Path
    onnx: Path
    input_shape: tuple[int, ...]
    """Per request: (1, C, H, W)."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_classifier(root: Path) -> Path:
    """forja's image-classifier trainer, in process, on generated shapes; its manifest."""
    import torch

    torch.set_num_threads(1)
    stage = train_stage(root, 0, "image-classifier", "shapes",
                        "generated://shapes?classes=3&per_class=12&size=16", "generated",
                        {"epochs": 1, "image_size": 16, "width": 8, "batch_size": 16})
    return Path(stage.uri.removeprefix("file://"))


def with_probabilities(manifest_path: Path) -> TrainedModel:
    """Add a Softmax output to the trained graph and re-sign the manifest."""
    import onnx
    from onnx import helper

    manifest = ModelManifest.model_validate_json(manifest_path.read_text())
    onnx_path = manifest_path.parent / manifest.files["onnx"].path
    graph_model = onnx.load(str(onnx_path))
    graph = graph_model.graph
    assert [o.name for o in graph.output] == ["logits"], graph.output
    graph.node.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    logits = graph.output[0].type.tensor_type
    dims = [d.dim_param or d.dim_value for d in logits.shape.dim]
    graph.output.append(helper.make_tensor_value_info("probabilities", logits.elem_type, dims))
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(onnx_path))
    manifest.files["onnx"] = ArtifactFile(path=onnx_path.name, sha256=sha256(onnx_path),
                                          size=onnx_path.stat().st_size)
    logits_spec = manifest.outputs[0]
    manifest.outputs = [logits_spec, TensorSpec(name="probabilities", shape=logits_spec.shape)]
    manifest_path.write_text(manifest.to_json())
    assert manifest_path.name == MANIFEST_NAME
    shape = manifest.inputs[0].shape
    return TrainedModel(manifest_path, onnx_path,
                        (1, *(int(d) for d in shape[1:] if d is not None)))


def expected_outputs(model: TrainedModel, x: npt.NDArray[np.float32]) -> dict[str, Any]:
    """What the graph answers, run here by ONNX Runtime (the server's runtime too)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUTS), {"input": x})
    return dict(zip(OUTPUTS, got, strict=True))


def client_venv() -> Path:
    out = subprocess.run(["bash", str(CHECKOUT / "hack" / "client-venv.sh")], check=True,
                         capture_output=True, text=True, timeout=1800)
    return Path(out.stdout.strip())


def run_clients(venv: Path, *, http: str, grpc: str, model: str, version: str,
                x_path: Path, project: str) -> dict[str, dict[str, Any]]:
    """One project's clients' calls, in the client venv; {client: {call: result or error}}."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(venv / "bin" / "python"), str(CALLS), "--http", http, "--grpc", grpc,
         "--model", model, "--version", version, "--input", str(x_path),
         "--project", project],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"clients_calls.py exited {proc.returncode}:\n{proc.stderr}"
    return dict(json.loads(proc.stdout))
