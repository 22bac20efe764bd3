"""The trainer registry: one module per trainer, found by its TrainerName.

``TrainerName.SMOKE_VERIFIER`` ("smoke-verifier") lives in
``forja_trainer/trainers/smoke_verifier.py``, which defines ``TRAINER``, the class.
Modules are imported on demand, so a trainer's heavy dependencies (Ultralytics,
rasterio) load only when that trainer runs.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from forja_api.v1alpha1.trainingjob import TrainerName
from forja_trainer.errors import InvalidConfig
from forja_trainer.trainers.base import TorchTrainer, Trainer, TrainingOutcome

__all__ = [
    "TorchTrainer",
    "Trainer",
    "TrainingOutcome",
    "available_trainers",
    "get_trainer",
    "trainer_module",
]

NOT_IN_THIS_IMAGE = {
    TrainerName.DISTILL_QAT_TFLITE: "runs in the TensorFlow trainer image (forja_trainer_tf)",
    TrainerName.CUSTOM: "runs the job's own spec.command, not a built-in trainer",
}


def trainer_module(name: TrainerName) -> str:
    return f"{__name__}.{name.value.replace('-', '_')}"


def available_trainers() -> list[TrainerName]:
    return [
        name
        for name in TrainerName
        if name not in NOT_IN_THIS_IMAGE and importlib.util.find_spec(trainer_module(name))
    ]


def get_trainer(name: TrainerName) -> type[Trainer[Any]]:
    if name in NOT_IN_THIS_IMAGE:
        raise InvalidConfig(f"{name.value} {NOT_IN_THIS_IMAGE[name]}", field="spec.trainer")
    module_name = trainer_module(name)
    if importlib.util.find_spec(module_name) is None:
        raise InvalidConfig(
            f"trainer {name.value!r} is not in this image; available: "
            + ", ".join(n.value for n in available_trainers()),
            field="spec.trainer",
        )
    module = importlib.import_module(module_name)
    cls: type[Trainer[Any]] = module.TRAINER
    return cls
