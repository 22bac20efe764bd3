"""Ultralytics YOLO, kept offline, with forja's dataset checks and hooks."""

from forja_trainer.yolo.dataset import YoloDataset, YoloDatasetError, validate_dataset
from forja_trainer.yolo.offline import configure_offline, import_ultralytics

__all__ = [
    "YoloDataset",
    "YoloDatasetError",
    "configure_offline",
    "import_ultralytics",
    "validate_dataset",
]
