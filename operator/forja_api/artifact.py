"""The model manifest: how a trained model is laid out in the store.

A trainer writes its files (weights, an ONNX export, inference_config.json,
labels.txt, ...) under its artifact prefix and then ``forja-model.json``, this
manifest, listing each file with its sha256. The ModelVersion's
``artifact.uri`` points at the manifest and ``artifact.sha256`` is the
manifest's digest, so one checked digest covers every file: verify the manifest,
then each file against it.

A ModelVersion registered by hand may instead point at a single file (an
Ultralytics ``best.pt``, a ``.tflite``); then ``spec.format`` says how to load it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["MANIFEST_NAME", "ArtifactFile", "ModelManifest", "TensorSpec"]

MANIFEST_NAME = "forja-model.json"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=2)


class ArtifactFile(_Wire):
    path: str
    """Relative to the manifest's own location."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class TensorSpec(_Wire):
    name: str = "input"
    shape: list[int | None]
    """None for a dynamic dimension (batch, or image size for fully convolutional models)."""
    dtype: str = "float32"
    layout: str | None = None
    """e.g. NCHW or NHWC for images."""


class ModelManifest(_Wire):
    format: str
    """One of forja_api.v1alpha1.modelversion.ModelFormat."""
    task: str
    """detection, verification, segmentation, anomaly, classification, restoration, multilabel."""
    files: dict[str, ArtifactFile]
    """By role: weights (always), onnx, config (inference_config.json), labels, history, curve."""
    architecture: str | None = None
    """For state dicts: the name of the architecture to rebuild before loading weights."""
    arch_config: dict[str, Any] = Field(default_factory=dict)
    """Constructor arguments of that architecture."""
    class_names: list[str] = Field(default_factory=list)
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    """e.g. {"resize": [64, 64], "scale": 1/255, "mean": [...], "std": [...]} or band statistics."""
    postprocessing: dict[str, Any] = Field(default_factory=dict)
    """e.g. {"threshold": 0.5} for anomaly maps, per-class thresholds for multi-label."""
    metrics: dict[str, float] = Field(default_factory=dict)
    trainer: str | None = None
    framework: dict[str, str] = Field(default_factory=dict)
    """Versions used to train, e.g. {"torch": "2.14.1"}."""
