"""One ``Model`` class per artifact format, looked up by ModelVersion format."""

from __future__ import annotations

import importlib
from typing import Any

from forja_api.serving import StageArtifact
from forja_server.artifacts import LoadedArtifact
from forja_server.errors import ArtifactError
from forja_server.model import Model

__all__ = ["model_for"]


_CLASSES: dict[str, tuple[str, str]] = {
    "onnx": ("forja_server.models.onnx", "OnnxModel"),
    "torch-state-dict": ("forja_server.models.torch_state_dict", "TorchStateDictModel"),
    "ultralytics": ("forja_server.models.ultralytics", "UltralyticsDetector"),
    "tflite": ("forja_server.models.tflite", "TFLiteModel"),
}


def model_for(stage: StageArtifact, artifact: LoadedArtifact) -> Model:
    """The (unloaded) model for a verified artifact of the stage's format."""
    # Imports per format keep start-up light: a TFLite server never imports torch.
    where = _CLASSES.get(stage.format)
    if where is None:
        raise ArtifactError(
            f"stage {stage.name}: format {stage.format!r} cannot be served "
            f"({', '.join(_CLASSES)})",
            field="format",
        )
    module, name = where
    cls: type[Model] = getattr(importlib.import_module(module), name)
    params: dict[str, Any] = dict(stage.parameters)
    model = cls(stage.name, artifact, params)
    model.version = stage.version
    return model
