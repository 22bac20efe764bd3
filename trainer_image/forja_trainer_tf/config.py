"""The ``distill-qat-tflite`` configuration: a typed object parsed once at start.

Defaults are the mobile team's recipe (WORKLOADS.md §5): teacher EfficientNet-B3 at
300x300, student EfficientNet-Lite1 at 240x240, distillation alpha 0.7 (hard) /
0.3 (soft) at temperature 2.0, threshold grid 0.05..0.95 step 0.01 on macro F1,
uint8 input / int8 output, 200 representative samples, seed 1337.

``tiny-cnn`` is a deliberately small network for CPU tests and smoke runs; it is
not a production choice but obeys the same pipeline.

:func:`parse_config` turns ``spec.hyperparameters`` (plus per-attempt overrides,
which win) into a :class:`DistillQATConfig` and raises :class:`InvalidConfig` whose
message names every offending field, e.g.
``hyperparameters.distillation.alpha: Input should be less than or equal to 1``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forja_api.contract import InvalidConfig

__all__ = [
    "MIN_IMAGE_SIZE",
    "AugmentationConfig",
    "DistillQATConfig",
    "DistillationConfig",
    "ExportConfig",
    "GeneratedDatasetConfig",
    "QATConfig",
    "StudentArchitecture",
    "StudentConfig",
    "TeacherArchitecture",
    "TeacherConfig",
    "ThresholdSearchConfig",
    "parse_config",
]

TeacherArchitecture = Literal[
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnetv2_b0",
    "tiny-cnn",
]
StudentArchitecture = Literal[
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "efficientnet_b0",
    "tiny-cnn",
]

# EfficientNets downsample 32x; below that the last stage has no pixels left.
MIN_IMAGE_SIZE: dict[str, int] = {"tiny-cnn": 16}
_EFFICIENTNET_MIN = 32


class _Strict(BaseModel):
    # A misspelt key is an error, not a silently ignored default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class TeacherConfig(_Strict):
    architecture: TeacherArchitecture = "efficientnet_b3"
    image_size: int = Field(default=300, ge=16, le=1024)
    warmup_epochs: int = Field(default=2, ge=0, le=1000)
    """Head warm-up with the backbone frozen."""
    warmup_lr: float = Field(default=1e-3, gt=0, le=1)
    finetune_epochs: int = Field(default=3, ge=0, le=1000)
    """Whole-network fine-tune after the warm-up."""
    finetune_lr: float = Field(default=1e-4, gt=0, le=1)
    dropout: float = Field(default=0.3, ge=0, lt=1)

    @model_validator(mode="after")
    def _trains(self) -> TeacherConfig:
        if self.warmup_epochs + self.finetune_epochs == 0:
            raise ValueError("warmup_epochs + finetune_epochs must be at least 1")
        return self


class StudentConfig(_Strict):
    architecture: StudentArchitecture = "efficientnet_lite1"
    image_size: int = Field(default=240, ge=16, le=1024)
    epochs: int = Field(default=5, ge=1, le=1000)
    lr: float = Field(default=1e-3, gt=0, le=1)
    dropout: float = Field(default=0.2, ge=0, lt=1)


class DistillationConfig(_Strict):
    alpha: float = Field(default=0.7, ge=0, le=1)
    """Weight of the hard (label) loss; the soft (teacher) loss gets 1 - alpha."""
    temperature: float = Field(default=2.0, gt=0, le=100)


class QATConfig(_Strict):
    enabled: bool = True
    """False goes straight to post-training quantization."""
    epochs: int = Field(default=2, ge=1, le=1000)
    lr: float = Field(default=1e-5, gt=0, le=1)


class AugmentationConfig(_Strict):
    horizontal_flip: bool = True
    vertical_flip: bool = False
    brightness: float = Field(default=0.1, ge=0, le=1)
    """Max brightness delta as a fraction of the full range."""
    contrast: float = Field(default=0.1, ge=0, lt=1)
    """Contrast factor drawn from [1 - c, 1 + c]."""


class ThresholdSearchConfig(_Strict):
    start: float = Field(default=0.05, gt=0, lt=1)
    stop: float = Field(default=0.95, gt=0, lt=1)
    step: float = Field(default=0.01, gt=0, lt=1)
    objective: Literal["macro_f1"] = "macro_f1"
    min_improvement: float = Field(default=0.005, ge=0, lt=1)
    """A per-class threshold replaces the global one only if the objective gains more."""

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdSearchConfig:
        if self.start > self.stop:
            raise ValueError(f"start ({self.start}) must not exceed stop ({self.stop})")
        return self


class ExportConfig(_Strict):
    input_type: Literal["uint8", "int8"] = "uint8"
    output_type: Literal["int8", "uint8"] = "int8"
    representative_samples: int = Field(default=200, ge=1, le=100_000)


class GeneratedDatasetConfig(_Strict):
    """Size of the synthetic set made for ``generated://multilabel`` dataset URIs."""

    train: int = Field(default=256, ge=8, le=100_000)
    val: int = Field(default=96, ge=4, le=100_000)
    test: int = Field(default=96, ge=4, le=100_000)
    image_size: int = Field(default=48, ge=16, le=512)
    classes: int = Field(default=4, ge=2, le=8)


class DistillQATConfig(_Strict):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    distillation: DistillationConfig = Field(default_factory=DistillationConfig)
    qat: QATConfig = Field(default_factory=QATConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    thresholds: ThresholdSearchConfig = Field(default_factory=ThresholdSearchConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    generated: GeneratedDatasetConfig = Field(default_factory=GeneratedDatasetConfig)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    """Per replica; the global batch is this times the number of GPUs in use."""
    num_classes: int | None = Field(default=None, ge=1)
    """When set, the dataset must have exactly this many classes."""
    seed: int = 1337

    @model_validator(mode="after")
    def _sizes_fit_architectures(self) -> DistillQATConfig:
        for role, arch, size in (
            ("teacher", self.teacher.architecture, self.teacher.image_size),
            ("student", self.student.architecture, self.student.image_size),
        ):
            least = MIN_IMAGE_SIZE.get(arch, _EFFICIENTNET_MIN)
            if size < least:
                raise ValueError(
                    f"{role}.image_size: {arch} needs at least {least}px, got {size}"
                )
        return self


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def parse_config(
    hyperparameters: dict[str, Any], overrides: dict[str, Any] | None = None
) -> DistillQATConfig:
    """Validate hyperparameters (overrides win, shallowly) into the typed config."""
    merged = {**hyperparameters, **(overrides or {})}
    try:
        return DistillQATConfig.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _dotted(tuple(err["loc"]))
            problems.append(f"hyperparameters.{where}: {err['msg']}")
        raise InvalidConfig("; ".join(problems)) from None
