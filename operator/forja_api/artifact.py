"""The model manifest: how a trained model is laid out in the store.

A trainer writes its files (weights, an ONNX export, inference_config.json,
labels.txt, ...) under its artifact prefix and then ``forja-model.json``, this
manifest, listing each file with its sha256. The ModelVersion's
``artifact.uri`` points at the manifest and ``artifact.sha256`` is the
manifest's digest, so one checked digest covers every file: verify the manifest,
then each file against it.

A ModelVersion registered by hand may instead point at a single file (an
Ultralytics ``best.pt``, a ``.tflite``); then ``spec.format`` says how to load it.

``preprocessing`` and ``postprocessing`` are the contract between the trainer that
writes a model and the server that runs it: typed here, written by both trainer
images, read by the server by attribute. Older spellings that artifacts already in
users' stores carry (``sequence_length``, ``patch_size``, ``band_mean``, ``conf``,
``imgsz``...) are accepted here and nowhere else. Unknown keys are ignored, as in the
rest of the manifest: artifacts written before these types carry descriptive keys
(``error``, ``output``, ``color``, ``quantize``...) that no reader ever used, and
refusing them would make registered versions unservable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "MANIFEST_NAME",
    "ArtifactFile",
    "InferenceConfig",
    "ModelManifest",
    "Postprocessing",
    "Preprocessing",
    "TensorSpec",
]

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


def _names(*names: str) -> AliasChoices:
    """Accepted spellings of one setting: the first present wins."""
    return AliasChoices(*names)


class _Settings(_Wire):
    def overlaid(self, settings: Mapping[str, Any]) -> Self:
        """A copy with ``settings`` (an InferenceService stage's parameters) on top.

        Keys that are not settings of this kind are left for the caller; a known key
        with a bad value raises ``pydantic.ValidationError`` naming it.
        """
        over = type(self).model_validate(settings)
        return self.model_copy(update=over.model_dump(exclude_unset=True))

    def filled_from(self, other: Self) -> Self:
        """A copy whose unset (None) fields are taken from ``other``."""
        return self.model_copy(update={
            k: v for k, v in other if v is not None and getattr(self, k) is None
        })


class Preprocessing(_Settings):
    """How the server turns an image or a scene into one model input sample.

    Every field is optional: None means "the reader's default" (images are scaled by
    1/255 and scenes by 1 unless ``scale`` says otherwise; the layout is NCHW).
    """

    resize: list[int] | None = Field(
        default=None, min_length=2, max_length=2,
        validation_alias=_names("resize", "imgsz"),
    )
    """[height, width] the image is resized to when the model's input leaves it free."""
    letterbox: bool | None = None
    """Resize keeping the aspect ratio and pad (Ultralytics) instead of stretching."""
    layout: Literal["NCHW", "NHWC", "CHW", "HWC"] | None = None
    scale: float | None = Field(default=None, gt=0)
    """Multiplies raw pixel or band values before ``mean`` and ``std``."""
    mean: list[float] | float | None = Field(
        default=None, validation_alias=_names("mean", "band_mean", "bandMean"),
    )
    """Per channel (or band), subtracted after ``scale``."""
    std: list[float] | float | None = Field(
        default=None, validation_alias=_names("std", "band_std", "bandStd"),
    )
    """Per channel (or band), divides after ``mean``."""
    frames: int | None = Field(
        default=None, ge=1,
        validation_alias=_names("frames", "sequenceLength", "sequence_length"),
    )
    """Frames per sample of a sequence model whose input leaves the count free."""
    tile: int | None = Field(
        default=None, ge=1, validation_alias=_names("tile", "patchSize", "patch_size"),
    )
    """Side of the square tiles a GeoTIFF scene is cut into."""
    tile_stride: int | float | None = Field(default=None, gt=0)
    """Step between tiles the model was validated with; sets the default overlap."""
    multiple_of: int | None = Field(default=None, ge=1)
    """Free side lengths must be multiples of this (a U-Net halving them ``depth`` times)."""

    @property
    def channels_first(self) -> bool:
        return self.layout in (None, "NCHW", "CHW")

    @field_validator("resize", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        return [v, v] if isinstance(v, int) else v

    @field_validator("layout", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class Postprocessing(_Settings):
    """How the server turns one sample's raw outputs into the task's answer.

    An InferenceService stage's parameters of the same names override these.
    """

    activation: Literal["softmax", "sigmoid", "none"] | None = None
    """What turns logits into scores; "none" when the outputs are probabilities already."""
    threshold: float | None = None
    """Decision threshold (verification, multi-label default, anomaly error, binary masks)."""
    thresholds: dict[str, float] | list[float] | None = None
    """Per-class thresholds of a multi-label model, by label or by index."""
    confidence: float | None = Field(
        default=None, ge=0, le=1, validation_alias=_names("confidence", "conf"),
    )
    """Least detection score kept."""
    iou: float | None = Field(default=None, ge=0, le=1)
    """IoU above which non-maximum suppression drops the weaker box."""
    top_k: int | None = Field(default=None, ge=1)
    """Classes listed in a classification answer."""
    max_detections: int | None = Field(default=None, ge=1)
    """Detections a pipeline passes to its verifier."""


class InferenceConfig(_Settings):
    """What the server reads of a TFLite artifact's ``inference_config.json``.

    The TF trainer writes more (input and output quantization, descriptions) for
    other consumers; hand-made configs may spell per-class thresholds
    ``per_class_thresholds`` and class names ``labels``.
    """

    class_names: list[str] | None = Field(
        default=None, validation_alias=_names("labels", "class_names", "classNames"),
    )
    thresholds: dict[str, float] | list[float] | None = Field(
        default=None,
        validation_alias=_names("thresholds", "per_class_thresholds", "perClassThresholds"),
    )
    threshold: float | None = None
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)


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
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    postprocessing: Postprocessing = Field(default_factory=Postprocessing)
    metrics: dict[str, float] = Field(default_factory=dict)
    trainer: str | None = None
    framework: dict[str, str] = Field(default_factory=dict)
    """Versions used to train, e.g. {"torch": "2.14.1"}."""
