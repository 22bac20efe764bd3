"""PyTorch state dicts with metadata (format ``torch-state-dict``).

The server serves the ONNX graph the trainer exported beside the weights (role
``onnx``). Only when there is none, or the stage asks ``runtime: torch``, and
only where torch is installed (the default image has none), are the weights
loaded into an architecture built from trusted code (``manifest.architecture``
looked up by name): tensors only, via ``torch.load(weights_only=True)`` with no
allowed globals beyond torch's own, so no class named in the file is ever
constructed. Without torch such an artifact is refused at load with the reason.
Checkpoints with metadata (``model_state_dict`` beside ``epoch``, ``metrics``...)
and bare state dicts both load.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy.typing as npt

from forja_server.architectures import build_architecture
from forja_server.errors import ArtifactError
from forja_server.model import Model, Outputs, TensorInfo
from forja_server.runtimes import OnnxSession, TorchModule

__all__ = ["TorchStateDictModel", "extract_state_dict", "load_module", "load_tensors"]

_TORCH_DEFAULT_MODULES = ("builtins", "torch", "traceback")
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


def _torch_importable() -> bool:
    try:
        importlib.import_module("torch")
    except ImportError:
        return False
    return True


def load_tensors(path: Path) -> Any:
    """The tensors in a weights file, never anything a pickle could construct."""
    import torch

    # Globals allowed process-wide (add_safe_globals) would widen weights_only to the
    # classes they name: tensors only means nothing beyond torch's own defaults.
    extra = [g for g in torch.serialization.get_safe_globals()
             if str(getattr(g, "__module__", "")).split(".")[0] not in _TORCH_DEFAULT_MODULES]
    if extra:
        raise ArtifactError(
            f"weights: refusing to unpickle while extra globals are allowed ({extra})",
            field="weights",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for anything but plain tensors
        raise ArtifactError(
            f"weights: not loadable with weights_only=True (refusing to unpickle): {exc}",
            field="weights",
        ) from exc


def load_module(model: Model) -> Any:
    """Rebuild the manifest's architecture and load the verified weights into it."""
    manifest = model.manifest
    if not manifest.architecture:
        raise ArtifactError("manifest: a torch-state-dict needs 'architecture'",
                            field="architecture")
    module = build_architecture(manifest.architecture, manifest.arch_config)
    raw = load_tensors(model.artifact.file("weights"))
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
        wants_torch = self.parameters.get("runtime") == "torch"
        if self.artifact.has("onnx") and not wants_torch:
            self._engine = OnnxSession(self.artifact.file("onnx"))
            self.runtime = "onnxruntime"
        elif not _torch_importable():
            why = ("the stage asks runtime 'torch'" if wants_torch else
                   f"the artifact has no ONNX graph (role 'onnx'; it has "
                   f"{sorted(self.artifact.files)})")
            raise ArtifactError(
                f"stage {self.name}: {why}, and this server serves graphs (ONNX, TFLite) "
                "without torch: export ONNX beside the weights (forja trainers do) or "
                "serve it from an image that has torch",
                field="onnx",
            )
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
