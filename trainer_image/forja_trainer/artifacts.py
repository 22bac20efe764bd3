"""Writing a trained model as files plus the manifest (``forja-model.json``).

Files are staged in a local directory, hashed, uploaded under the artifact prefix,
and the manifest goes last: a reader that finds the manifest finds every file it
lists, and one digest (the manifest's) covers them all.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

import forja_storage as storage
from forja_api.artifact import (
    MANIFEST_NAME,
    ArtifactFile,
    ModelManifest,
    Postprocessing,
    Preprocessing,
    TensorSpec,
)
from forja_api.contract import ArtifactRef

__all__ = ["ArtifactWriter", "export_onnx", "plain_state_dict"]

log = logging.getLogger(__name__)

ONNX_TOLERANCE = 1e-4
"""Max absolute difference between torch and ONNX Runtime outputs for an export to count
as exact; above it the ONNX file is not shipped (the server then rebuilds the state dict)."""


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors only: loadable with ``weights_only=True``."""
    return {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}


class ArtifactWriter:
    """Collects a model's files by role and publishes them with their manifest."""

    def __init__(
        self,
        local_dir: Path,
        artifact_uri: str,
        *,
        format: str,
        task: str,
        trainer: str,
    ) -> None:
        self.local_dir = Path(local_dir)
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.artifact_uri = artifact_uri
        self.format = format
        self.task = task
        self.trainer = trainer
        self.files: dict[str, str] = {}  # role -> relative path
        self.architecture: str | None = None
        self.arch_config: dict[str, Any] = {}
        self.class_names: list[str] = []
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.preprocessing = Preprocessing()
        self.postprocessing = Postprocessing()
        self.metrics: dict[str, float] = {}

    def path(self, name: str) -> Path:
        return self.local_dir / name

    def add_file(self, role: str, name: str) -> Path:
        """Register a file the caller writes (or wrote) at ``self.path(name)``."""
        self.files[role] = name
        return self.path(name)

    def save_state_dict(self, model: nn.Module, name: str = "model.pt") -> Path:
        target = self.add_file("weights", name)
        torch.save(plain_state_dict(model), target)
        return target

    def write_json(self, role: str, name: str, obj: Any) -> Path:
        target = self.add_file(role, name)
        target.write_text(json.dumps(obj, indent=2, sort_keys=True), encoding="utf-8")
        return target

    def write_labels(self, class_names: list[str]) -> None:
        self.class_names = list(class_names)
        self.add_file("labels", "labels.txt").write_text(
            "\n".join(class_names) + "\n", encoding="utf-8"
        )

    def manifest(self) -> ModelManifest:
        files = {}
        for role, name in sorted(self.files.items()):
            local = self.path(name)
            files[role] = ArtifactFile(
                path=name, sha256=storage.sha256_file(local), size=local.stat().st_size
            )
        return ModelManifest(
            format=self.format,
            task=self.task,
            files=files,
            architecture=self.architecture,
            arch_config=self.arch_config,
            class_names=self.class_names,
            inputs=self.inputs,
            outputs=self.outputs,
            preprocessing=self.preprocessing,
            postprocessing=self.postprocessing,
            metrics=self.metrics,
            trainer=self.trainer,
            framework={"torch": torch.__version__.split("+")[0]},
        )

    def publish(self) -> ArtifactRef:
        """Upload every file, then the manifest; return the reference for the Result."""
        manifest = self.manifest()
        for entry in manifest.files.values():
            storage.upload(self.path(entry.path), storage.join(self.artifact_uri, entry.path))
        data = manifest.to_json().encode()
        self.path(MANIFEST_NAME).write_bytes(data)
        uri = storage.join(self.artifact_uri, MANIFEST_NAME)
        storage.upload_bytes(data, uri)
        import hashlib  # noqa: PLC0415

        return ArtifactRef(
            uri=uri,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            format=self.format,
            task=self.task,
        )


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    target: Path,
    *,
    input_name: str = "input",
    output_names: list[str] | None = None,
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    opset: int = 17,
) -> bool:
    """Export to ONNX and keep the file only when ONNX Runtime reproduces torch's output.

    Returns True when ``target`` holds an exact export. ONNX Runtime is optional in
    the trainer image: without it the export is kept after onnx's checker passes.
    """
    output_names = output_names or ["output"]
    axes = dynamic_axes or {input_name: {0: "batch"}, **{n: {0: "batch"} for n in output_names}}
    model = model.eval().cpu()
    example = example.cpu()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(target),
                dynamo=False,  # the TorchScript exporter needs no onnxscript and is exact here
                input_names=[input_name],
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=opset,
            )
        import onnx  # noqa: PLC0415

        onnx.checker.check_model(str(target))
    except Exception as exc:
        log.warning("ONNX export failed, shipping the state dict only: %s", exc)
        target.unlink(missing_ok=True)
        return False
    try:
        import numpy as np  # noqa: PLC0415
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        return True
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    batch = torch.cat([example, example], dim=0)  # exercise the dynamic batch axis
    with torch.no_grad():
        expected = model(batch)
    expected_list = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = session.run(None, {input_name: batch.numpy()})
    worst = max(
        float(np.max(np.abs(np.asarray(g) - e.numpy())))
        for g, e in zip(got, expected_list, strict=True)
    )
    if worst > ONNX_TOLERANCE:
        log.warning("ONNX export differs from torch by %.2e; not shipping it", worst)
        target.unlink(missing_ok=True)
        return False
    log.info("ONNX export matches torch (max abs diff %.2e)", worst)
    return True
