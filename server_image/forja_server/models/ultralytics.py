"""Ultralytics detectors (format ``ultralytics``), served from their ONNX graph.

The trainer exports every detector to ONNX (role ``onnx``); ONNX Runtime runs it
with our own box decoding and NMS. A bare Ultralytics ``.pt`` is a pickled model
object: unpickling it means constructing Ultralytics classes whose constructors
``eval`` strings from the file, so no allow-list makes it safe. Such an artifact
(or a stage asking ``runtime: torch``) is refused at load with the reason; the
server never imports torch or Ultralytics for this format.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from forja_server.errors import ArtifactError
from forja_server.model import Model, Outputs, TensorInfo
from forja_server.runtimes import OnnxSession

__all__ = ["UltralyticsDetector"]


class UltralyticsDetector(Model):
    format = "ultralytics"
    runtime = "onnxruntime"

    _engine: OnnxSession
    _input: TensorInfo

    def load(self) -> None:
        self.task = "detection"
        if self.parameters.get("runtime") == "torch":
            raise ArtifactError(
                f"stage {self.name}: runtime 'torch' is not served for ultralytics artifacts: "
                "loading a .pt unpickles Ultralytics model objects, which can run code from "
                "the file; remove 'runtime: torch' to serve the ONNX graph",
                field="runtime",
            )
        if not self.artifact.has("onnx"):
            raise ArtifactError(
                f"stage {self.name}: the ultralytics artifact has no ONNX graph (role 'onnx'; "
                f"it has {sorted(self.artifact.files)}); this server serves graphs and never "
                "unpickles a .pt: export ONNX (the forja YOLO trainer does) and register the "
                "manifest that lists it",
                field="onnx",
            )
        imgsz = self.preprocessing.resize or [640, 640]
        session = OnnxSession(self.artifact.file("onnx"))
        self._engine = session
        shape = tuple(
            d if d is not None else int(imgsz[i - 1]) if i else 3
            for i, d in enumerate(session.input_shape)
        )
        self._input = TensorInfo(session.input_name, shape, "float32")
        if self.preprocessing.scale is None:
            self.preprocessing.scale = 1.0 / 255.0

    @property
    def input(self) -> TensorInfo:
        return self._input

    def predict(self, batch: npt.NDArray[Any]) -> Outputs:
        out = self._engine.run(batch)
        first = next(iter(out.values()))
        if isinstance(first, np.ndarray) and first.ndim == 3:
            return {"output0": first}
        raise ArtifactError(f"unexpected detector output shape {getattr(first, 'shape', None)}")
