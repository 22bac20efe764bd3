"""A plain ONNX model run by ONNX Runtime (format ``onnx``)."""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from forja_server.model import Model, Outputs, TensorInfo
from forja_server.runtimes import OnnxSession

__all__ = ["OnnxModel"]


class OnnxModel(Model):
    format = "onnx"
    runtime = "onnxruntime"
    role = "weights"

    _session: OnnxSession

    def load(self) -> None:
        role = "onnx" if self.artifact.has("onnx") else self.role
        self._session = OnnxSession(self.artifact.file(role))

    @property
    def input(self) -> TensorInfo:
        s = self._session
        return TensorInfo(s.input_name, s.input_shape, s.input_dtype)

    @property
    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(n, shape, dt) for n, shape, dt in self._session.output_info]

    def predict(self, batch: npt.NDArray[Any]) -> Outputs:
        return self._session.run(batch)
