"""The typed configuration a trainer runs with, parsed once from ``FORJA_SPEC``.

Three layers, each validated with errors that name the field:

1. ``FORJA_SPEC`` -> :class:`forja_api.contract.RenderedSpec` (the envelope),
2. ``.spec`` -> :class:`TrainingJobSpec` (the admitted TrainingJob),
3. ``.spec.hyperparameters`` merged with ``.overrides`` (the operator's changes for
   this attempt win, e.g. ``batch_size`` halved after an OOM kill) -> the trainer's
   own pydantic model, a subclass of :class:`BaseHyperparameters`.

Unknown hyperparameters are refused, so a typo (``learning_rate`` for ``lr``) fails
at start instead of silently training with the default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from forja_api.contract import RenderedSpec
from forja_api.v1alpha1.common import Resources
from forja_api.v1alpha1.trainingjob import (
    Checkpointing,
    Dataset,
    Pretrained,
    RestartPolicy,
    TrainerName,
    TrainingJobSpec,
)
from forja_trainer.errors import InvalidConfig

__all__ = [
    "DEFAULT_SEED",
    "BaseHyperparameters",
    "JobConfig",
    "build_job_config",
    "format_validation_error",
    "parse_hyperparameters",
    "parse_rendered_spec",
    "trainer_name_of",
]

DEFAULT_SEED = 1337

H = TypeVar("H", bound="BaseHyperparameters")


class BaseHyperparameters(BaseModel):
    """Settings every loop-based trainer understands; trainers subclass to add theirs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(default=10, ge=1, le=100_000)
    batch_size: int = Field(default=32, ge=1, le=65_536)
    lr: float = Field(default=1e-3, gt=0, le=10)
    weight_decay: float = Field(default=0.01, ge=0, le=1)
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    """AdamW's learning-rate schedule: cosine annealing over the epochs, or step decay."""
    step_size: int = Field(default=10, ge=1)
    """Step schedule: epochs between decays."""
    gamma: float = Field(default=0.1, gt=0, le=1)
    """Step schedule: the decay factor."""
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1)
    """Cosine schedule: the final learning rate as a fraction of lr."""
    grad_clip_norm: float | None = Field(default=1.0, gt=0)
    """Clip the gradients' global L2 norm to this (None: no clipping)."""
    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop after this many epochs without improvement of ``monitor`` (None: never)."""
    early_stopping_min_delta: float = Field(default=0.0, ge=0)
    monitor: str = "val_loss"
    """The validation metric that decides `best` and early stopping."""
    monitor_mode: Literal["min", "max"] = "min"
    seed: int = Field(default=DEFAULT_SEED, ge=0, le=2**32 - 1)
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    num_workers: int = Field(default=0, ge=0, le=64)
    max_oom_retries: int = Field(default=3, ge=0, le=10)
    """CUDA OOMs absorbed in-process by halving the batch before giving up (exit 75)."""
    min_batch_size: int = Field(default=1, ge=1)
    max_recoverable_retries: int = Field(default=3, ge=0, le=20)
    """Declared recoverable errors (storage hiccups...) retried before exit 75."""
    deterministic: bool = True
    """Deterministic kernels: resume reproduces an uninterrupted run exactly on CPU."""

    @model_validator(mode="after")
    def _batch_floor(self) -> BaseHyperparameters:
        if self.min_batch_size > self.batch_size:
            raise ValueError(
                f"min_batch_size ({self.min_batch_size}) exceeds batch_size ({self.batch_size})"
            )
        return self


@dataclass(frozen=True)
class JobConfig(Generic[H]):
    """Everything a trainer needs to know about its job, typed."""

    name: str
    namespace: str
    uid: str
    attempt: int
    trainer: TrainerName
    model: str
    dataset: Dataset
    pretrained: Pretrained | None
    resources: Resources
    checkpointing: Checkpointing
    restart_policy: RestartPolicy
    hyperparameters: H
    checkpoint_uri: str
    artifact_uri: str
    resume_from: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    resume_sha256: str | None = None
    """The digest the operator recorded for ``resume_from``."""
    spec: dict[str, Any] = field(default_factory=dict)
    """The spec as received, recorded with each checkpoint and the model's lineage."""


def format_validation_error(exc: ValidationError, prefix: str) -> str:
    """``spec.hyperparameters.batch_size: Input should be >= 1 (got 0)`` lines, joined."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        got = err.get("input")
        shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
        lines.append(f"{loc}: {err['msg']}{shown}")
    return "; ".join(lines)


def _validate_spec(rendered: RenderedSpec) -> TrainingJobSpec:
    try:
        return TrainingJobSpec.model_validate(rendered.spec)
    except ValidationError as exc:
        raise InvalidConfig(format_validation_error(exc, "spec")) from exc


def parse_hyperparameters(
    model: type[H], values: dict[str, Any], overrides: dict[str, Any] | None = None
) -> H:
    """Validate a trainer's hyperparameters; errors say whether the spec or an override erred."""
    overrides = overrides or {}
    merged = {**values, **overrides}
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]["loc"]
        where = "overrides" if first and first[0] in overrides else "spec.hyperparameters"
        raise InvalidConfig(format_validation_error(exc, where)) from exc


def parse_rendered_spec(text: str | None) -> RenderedSpec:
    if not text:
        raise InvalidConfig("FORJA_SPEC is empty: the trainer needs the rendered TrainingJob")
    try:
        return RenderedSpec.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise InvalidConfig(f"FORJA_SPEC is not JSON: {exc}") from exc
    except ValidationError as exc:
        raise InvalidConfig(format_validation_error(exc, "FORJA_SPEC")) from exc


def build_job_config(rendered: RenderedSpec, hyperparameters_model: type[H]) -> JobConfig[H]:
    """The typed configuration for one attempt, or :class:`InvalidConfig` naming the field."""
    spec = _validate_spec(rendered)
    hp = parse_hyperparameters(hyperparameters_model, spec.hyperparameters, rendered.overrides)
    return JobConfig(
        name=rendered.name,
        namespace=rendered.namespace,
        uid=rendered.uid,
        attempt=rendered.attempt,
        trainer=spec.trainer,
        model=spec.model,
        dataset=spec.dataset,
        pretrained=spec.pretrained,
        resources=spec.resources,
        checkpointing=spec.checkpoint,
        restart_policy=spec.restart_policy,
        hyperparameters=hp,
        checkpoint_uri=rendered.checkpoint_uri,
        artifact_uri=rendered.artifact_uri,
        resume_from=rendered.resume_from,
        resume_sha256=rendered.resume_sha256,
        overrides=dict(rendered.overrides),
        spec=dict(rendered.spec),
    )


def trainer_name_of(rendered: RenderedSpec) -> TrainerName:
    """Just the trainer field, to pick the trainer before parsing the rest."""
    return _validate_spec(rendered).trainer
