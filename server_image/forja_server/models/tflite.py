"""TFLite models, INT8 included (format ``tflite``), run by ai-edge-litert.

No tensorflow import: the LiteRT interpreter alone runs the flatbuffer. The
trainer's ``inference_config.json`` (role ``config``) gives per-class thresholds
and preprocessing; ``labels.txt`` (role ``labels``) the class names. Quantized
inputs take raw pixels when their scale is 1/255 or 1 with zero point 0 (what
the trainer exports), otherwise floats quantized here; int8 outputs are dequantized.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from forja_api.artifact import InferenceConfig
from forja_server.errors import ArtifactError
from forja_server.model import Model, Outputs, TensorInfo

__all__ = ["TFLiteModel"]


def _is_pixel_quant(scale: float, zero_point: int) -> bool:
    """True when the quantized input is the raw pixel: a [0, 1] or a [0, 255] float model."""
    return zero_point == 0 and (abs(scale - 1.0 / 255.0) < 1e-6 or abs(scale - 1.0) < 1e-6)


class TFLiteModel(Model):
    format = "tflite"
    runtime = "litert"

    def load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if self.preprocessing.layout is None:
            self.preprocessing.layout = "NHWC"
        if self.artifact.has("config"):
            self._apply_inference_config(self.artifact.file("config").read_text())
        if self.artifact.has("labels") and not self.manifest.class_names:
            lines = self.artifact.file("labels").read_text().splitlines()
            self.manifest.class_names = [x.strip() for x in lines if x.strip()]
        try:
            self._interp = Interpreter(
                model_path=str(self.artifact.file("weights")),
                num_threads=os.cpu_count() or 1,
            )
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ArtifactError(f"weights: not a loadable TFLite model: {exc}") from exc
        self._lock = threading.Lock()
        self._in = self._interp.get_input_details()[0]
        self._outs = self._interp.get_output_details()
        self._batch = int(self._in["shape"][0])
        scale, zp = self._in["quantization"]
        in_dtype = np.dtype(self._in["dtype"]).name
        self._quantize_input = in_dtype in ("int8", "uint8") and not _is_pixel_quant(scale, zp)
        self._input = TensorInfo(
            str(self._in["name"]),
            tuple(int(d) for d in self._in["shape"][1:]),
            "float32" if self._quantize_input else in_dtype,
        )
        post = self.postprocessing
        if self.manifest.task in ("", "classification") and post.thresholds:
            self.task = "multilabel"
        # Full-integer export: the output is already a probability after dequantizing.
        quantized_out = any(np.dtype(o["dtype"]).name in ("int8", "uint8") for o in self._outs)
        if quantized_out and post.activation is None:
            post.activation = "none"

    def _apply_inference_config(self, text: str) -> None:
        """Fill what the manifest and the stage leave unset from inference_config.json."""
        try:
            cfg = InferenceConfig.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            raise ArtifactError(f"config: not a usable inference_config.json: {exc}",
                                field="config") from exc
        post = self.postprocessing
        if post.thresholds is None:
            post.thresholds = cfg.thresholds
        if post.threshold is None:
            post.threshold = cfg.threshold
        self.preprocessing = self.preprocessing.filled_from(cfg.preprocessing)
        if cfg.class_names and not self.manifest.class_names:
            self.manifest.class_names = list(cfg.class_names)

    @property
    def input(self) -> TensorInfo:
        return self._input

    def predict(self, batch: npt.NDArray[Any]) -> Outputs:
        with self._lock:  # one interpreter: its tensors are shared state
            n = batch.shape[0]
            if n != self._batch:
                self._interp.resize_tensor_input(self._in["index"], [n, *self._in["shape"][1:]])
                self._interp.allocate_tensors()
                self._batch = n
                self._outs = self._interp.get_output_details()
            x = batch
            if self._quantize_input:
                scale, zp = self._in["quantization"]
                info = np.iinfo(self._in["dtype"])
                x = np.clip(np.round(batch / scale + zp), info.min, info.max)
            self._interp.set_tensor(self._in["index"], x.astype(self._in["dtype"], copy=False))
            self._interp.invoke()
            out: Outputs = {}
            for o in self._outs:
                raw = self._interp.get_tensor(o["index"])
                scale, zp = o["quantization"]
                if np.dtype(o["dtype"]).kind in "iu" and scale:
                    raw = (raw.astype(np.float32) - zp) * scale
                out[str(o["name"])] = np.array(raw)
            return out
