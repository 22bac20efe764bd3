"""PyTorch state dicts with metadata (format ``torch-state-dict``).

The manifest names the architecture and its constructor arguments; the weights
file holds plain tensors, loaded with ``weights_only=True`` (never an arbitrary
unpickle). Checkpoints with metadata (``model_state_dict`` beside ``epoch``,
``metrics``...) and bare state dicts both load. When the trainer exported an
exact ONNX graph too, ONNX Runtime runs it instead (faster on CPU), unless the
stage asks for ``runtime: torch``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy.typing as npt

from forja_server.architectures import build_architecture
from forja_server.errors import ArtifactError
from forja_server.model import Model, Outputs, TensorInfo
from forja_server.runtimes import OnnxSession, TorchModule

__all__ = ["TorchStateDictModel", "extract_state_dict", "load_module"]

_STATE_KEYS = ("model_state_dict", "state_dict", "model", "ema")


def extract_state_dict(obj: Any) -> dict[str, Any]:
    """The tensor mapping inside a checkpoint, with DataParallel prefixes removed."""
    import torch

    if isinstance(obj, Mapping):
        for key in _STATE_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(
                isinstance(v, torch.Tensor) for v in inner.values()
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ArtifactError("weights: no state dict of tensors found in the checkpoint")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_module(model: Model) -> Any:
    """Rebuild the manifest's architecture and load the verified weights into it."""
    import torch

    manifest = model.manifest
    if not manifest.architecture:
        raise ArtifactError("manifest: a torch-state-dict needs 'architecture'",
                            field="architecture")
    module = build_architecture(manifest.architecture, manifest.arch_config)
    try:
        raw = torch.load(model.artifact.file("weights"), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but plain tensors
        raise ArtifactError(
            f"weights: not loadable with weights_only=True (refusing to unpickle): {exc}",
            field="weights",
        ) from exc
    try:
        module.load_state_dict(extract_state_dict(raw), strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"weights do not fit architecture {manifest.architecture!r}: {exc}", field="weights"
        ) from exc
    return module.eval()


class TorchStateDictModel(Model):
    format = "torch-state-dict"

    _engine: OnnxSession | TorchModule

    def load(self) -> None:
        if not self.manifest.inputs:
            raise ArtifactError("manifest: 'inputs' must give the input shape", field="inputs")
        use_onnx = self.artifact.has("onnx") and self.parameters.get("runtime") != "torch"
        if use_onnx:
            self._engine = OnnxSession(self.artifact.file("onnx"))
            self.runtime = "onnxruntime"
        else:
            names = [o.name for o in self.manifest.outputs]
            self._engine = TorchModule(load_module(self), names)
            self.runtime = "torch"

    @property
    def input(self) -> TensorInfo:
        spec = self.manifest.inputs[0]
        return TensorInfo(spec.name, tuple(spec.shape[1:]), spec.dtype)

    def predict(self, batch: npt.NDArray[Any]) -> Outputs:
        return self._engine.run(batch)
