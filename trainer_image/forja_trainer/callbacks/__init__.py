"""Behaviour of the training loop, one callback per module (Lightning style)."""

from forja_trainer.callbacks.base import Callback
from forja_trainer.callbacks.early_stopping import EarlyStopping, StopReason
from forja_trainer.callbacks.gradient_clipping import GradientClipping
from forja_trainer.callbacks.metrics_history import MetricsHistory
from forja_trainer.callbacks.model_checkpoint import ModelCheckpoint
from forja_trainer.callbacks.progress_reporter import ProgressCallback

__all__ = [
    "Callback",
    "EarlyStopping",
    "GradientClipping",
    "MetricsHistory",
    "ModelCheckpoint",
    "ProgressCallback",
    "StopReason",
]
