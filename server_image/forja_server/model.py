"""The ``Model`` every format implements (KServe's shape: load, ready, predict).

A model turns a batch of preprocessed samples into named raw output tensors
(``predict``); protocol adapters decide how requests become samples and how
outputs become responses. Per-sample pre- and postprocessing come from the
model's task (:mod:`forja_server.tasks`) and the manifest's ``preprocessing`` /
``postprocessing`` settings (typed in :mod:`forja_api.artifact`), which a stage's
parameters of the same names override, so a format class only says how to run its
runtime.
"""

from __future__ import annotations

import abc
import logging
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from forja_api.artifact import Postprocessing, Preprocessing
from forja_server import tasks
from forja_server.artifacts import LoadedArtifact
from forja_server.errors import ArtifactError, InvalidInput

__all__ = ["Model", "Outputs", "TensorInfo"]

log = logging.getLogger(__name__)

Outputs = dict[str, npt.NDArray[Any]]
"""Named output tensors; the first axis is the batch."""

# Candidate multiples for free side lengths, each probed at its smallest odd multiple
# of at least 64 pixels (so a minimum size does not pass for a multiple).
_PROBE_MULTIPLES = (1, 2, 4, 8, 16, 32, 64)


class TensorInfo:
    """Name, per-sample shape (None = dynamic) and dtype of one model input or output."""

    __slots__ = ("dtype", "name", "shape")

    def __init__(self, name: str, shape: tuple[int | None, ...], dtype: str) -> None:
        self.name = name
        self.shape = shape
        self.dtype = dtype

    def to_v2(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "datatype": tasks.V2_DATATYPES.get(self.dtype, "FP32"),
            "shape": [-1, *[-1 if d is None else d for d in self.shape]],
        }


class Model(abc.ABC):
    """One loaded ModelVersion. ``ready`` backs the readiness endpoints."""

    format: str = ""
    runtime: str = ""
    """Which engine runs the forward pass (onnxruntime, torch, litert), for metadata."""

    def __init__(
        self, name: str, artifact: LoadedArtifact, parameters: dict[str, Any] | None = None
    ) -> None:
        self.name = name
        self.artifact = artifact
        self.manifest = artifact.manifest
        self.task = artifact.manifest.task or "classification"
        self.parameters: dict[str, Any] = dict(parameters or {})
        """The stage's parameters as given (stage-only ones: runtime, crop_margin)."""
        try:
            self.preprocessing: Preprocessing = artifact.manifest.preprocessing.overlaid(
                self.parameters)
            self.postprocessing: Postprocessing = artifact.manifest.postprocessing.overlaid(
                self.parameters)
        except ValidationError as exc:
            raise ArtifactError(f"stage {name}: parameters: {exc}", field="parameters") from exc
        self.version: str | None = None
        self.ready = False
        self.side_multiple = 1
        """Free side lengths must be multiples of this (found by :meth:`probe_side_multiple`)."""

    # --- what each format implements -----------------------------------------------
    @abc.abstractmethod
    def load(self) -> None:
        """Build the runtime from the verified files. Never unpickles untrusted data."""

    @abc.abstractmethod
    def predict(self, batch: npt.NDArray[Any]) -> Outputs:
        """Run one forward pass on a batch (first axis); called from a worker thread."""

    @property
    @abc.abstractmethod
    def input(self) -> TensorInfo:
        """The single input tensor, per sample."""

    @property
    def outputs(self) -> list[TensorInfo]:
        return [
            TensorInfo(t.name, tuple(t.shape[1:]), t.dtype) for t in self.manifest.outputs
        ]

    # --- shared behaviour ------------------------------------------------------------
    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> float:
        """Run a forward pass per batch size so the first request pays no set-up cost."""
        started = time.perf_counter()
        for n in batch_sizes:
            self.predict(np.zeros((n, *self.concrete_input_shape()), dtype=self.input.dtype))
        took = time.perf_counter() - started
        log.info("model %s warmed up in %.3f s", self.name, took)
        return took

    def concrete_input_shape(self) -> tuple[int, ...]:
        """The per-sample input shape with dynamic sizes filled from preprocessing."""
        pre = self.preprocessing
        resize = pre.resize or ([pre.tile, pre.tile] if pre.tile else [64, 64])
        shape = list(self.input.shape)
        if len(shape) == 4 and shape[0] is None:  # (frames, C, H, W)
            shape[0] = pre.frames or 1
        spatial = [i for i, d in enumerate(shape) if d is None]
        fill = list(resize)[-len(spatial):] if spatial else []
        for i, v in zip(spatial, fill, strict=False):
            shape[i] = int(v)
        return tuple(d if d is not None else 1 for d in shape)

    def free_sides(self) -> list[int]:
        """Per-sample axes of the image sides the model leaves free (None in its shape)."""
        shape = self.input.shape
        if len(shape) not in (3, 4):
            return []
        first = len(shape) - (2 if self.preprocessing.channels_first else 3)
        return [i for i in (first, first + 1) if shape[i] is None]

    def probe_side_multiple(self) -> int:
        """Find which multiple free side lengths must be (a U-Net halves them N times):
        the manifest's ``multiple_of`` when the trainer wrote it, else the smallest
        candidate whose probe size runs. Requests with other sides then get a 400 naming
        the multiple instead of a runtime error (500)."""
        sides = self.free_sides()
        if not sides:
            return self.side_multiple
        if self.preprocessing.multiple_of is not None:
            self.side_multiple = self.preprocessing.multiple_of
            return self.side_multiple
        base = list(self.concrete_input_shape())
        for m in _PROBE_MULTIPLES:
            size = m * (-(-64 // m) | 1)  # the smallest odd multiple of m that is >= 64
            shape = list(base)
            for i in sides:
                shape[i] = size
            try:
                self.predict(np.zeros((1, *shape), dtype=self.input.dtype))
            except Exception:  # noqa: S112 - any runtime error means "not this size"
                continue
            self.side_multiple = m
            if m > 1:
                log.info("model %s: free side lengths must be multiples of %d", self.name, m)
            return m
        log.warning("model %s: no probed side length ran; side lengths are not checked",
                    self.name)
        return self.side_multiple

    def sequence_length(self) -> int:
        """Frames per sample for sequence models (1 for single images)."""
        shape = self.input.shape
        if len(shape) != 4:
            return 1
        # A stage's sequenceLength has already overridden the trainer's frames.
        return int(shape[0] or self.preprocessing.frames or 1)

    def check_batch(self, batch: npt.NDArray[Any], field: str = "inputs") -> npt.NDArray[Any]:
        """Refuse a batch whose per-sample shape cannot feed this model (400, not 500)."""
        want = self.input.shape
        got = batch.shape[1:]
        if len(got) != len(want) or any(
            w is not None and w != g for w, g in zip(want, got, strict=True)
        ):
            shown = ["-1" if d is None else str(d) for d in want]
            raise InvalidInput(
                f"{field}: expected shape [batch, {', '.join(shown)}], got {list(batch.shape)}",
                field=field,
            )
        if any(g <= 0 for g in got):
            raise InvalidInput(f"{field}: empty dimension in {list(batch.shape)}", field=field)
        m = self.side_multiple
        if m > 1 and any(got[i] % m for i in self.free_sides()):
            raise InvalidInput(
                f"{field}: model {self.name!r} takes side lengths that are multiples of {m}, "
                f"got shape {list(batch.shape)}",
                field=field,
            )
        return batch.astype(self.input.dtype, copy=False)

    def preprocess_image(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[Any]:
        """HWC uint8 image -> one input sample, as the manifest's preprocessing says."""
        return tasks.image_to_sample(
            image, self.preprocessing, self.input.shape, self.input.dtype
        )

    def postprocess(self, sample: Outputs, context: dict[str, Any] | None = None) -> Any:
        """One sample's raw outputs -> the simple API's JSON answer for this task."""
        return tasks.postprocess(
            self.task, sample, self.postprocessing, self.manifest.class_names, context or {}
        )

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": self.runtime,
            "inputs": [self.input.to_v2()],
            "outputs": [o.to_v2() for o in self.outputs],
        }
