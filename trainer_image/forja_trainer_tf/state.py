"""Step checkpoints: which of the nine steps are done, and where a step stopped.

Under the checkpoint prefix (``FORJA_CHECKPOINT_URI``) the trainer keeps
``state.json`` (a :class:`StepState`) and the weights each finished or partial
step needs (``teacher.weights.h5``, ``student.weights.h5``, ``qat.weights.h5``,
``model_qat_int8.tflite``...). Every file is written before the state that
refers to it, and each write is atomic, so a kill at any instant leaves a state
that points only at complete files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

import forja_storage as storage

__all__ = ["STATE_NAME", "STEPS", "CheckpointStore", "StepState"]

STATE_NAME = "state.json"
# The nine steps of WORKLOADS.md §5, in order.
STEPS: tuple[str, ...] = (
    "parse-dataset",
    "pipelines",
    "teacher",
    "student",
    "qat",
    "thresholds",
    "export",
    "inference-config",
    "test-metrics",
)


class StepState(BaseModel):
    steps_done: list[str] = Field(default_factory=list)
    current_step: str | None = None
    epochs_done_in_step: int = 0
    """Completed epochs of ``current_step`` whose weights are in the checkpoint."""
    values: dict[str, Any] = Field(default_factory=dict)
    """Small results later steps need (QAT outcome, thresholds, metrics...)."""
    config_digest: str = ""
    attempts: int = 0

    def done(self, step: str) -> bool:
        return step in self.steps_done

    def resume_step(self) -> str:
        """The first of the nine steps not finished (what a new attempt starts at)."""
        return next((s for s in STEPS if s not in self.steps_done), STEPS[-1])


class CheckpointStore:
    """Reads and writes the step state and its files under one prefix."""

    def __init__(self, prefix_uri: str, workdir: Path) -> None:
        self.prefix = prefix_uri.rstrip("/")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def uri(self, name: str) -> str:
        return storage.join(self.prefix, name)

    def load_state(self) -> StepState | None:
        if not storage.exists(self.uri(STATE_NAME)):
            return None
        return StepState.model_validate(json.loads(storage.read_bytes(self.uri(STATE_NAME))))

    def save_state(self, state: StepState) -> None:
        storage.upload_bytes(state.model_dump_json(indent=2).encode(), self.uri(STATE_NAME))

    def put(self, local: Path, name: str | None = None) -> str:
        uri = self.uri(name or local.name)
        storage.upload(local, uri)
        return uri

    def get(self, name: str) -> Path:
        """Fetch ``name`` into the workdir (a fresh copy) and return its local path."""
        dest = self.workdir / "restored" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        return storage.download(self.uri(name), dest)

    def has(self, name: str) -> bool:
        return storage.exists(self.uri(name))
