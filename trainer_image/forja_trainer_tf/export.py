"""Step 7: full-integer TFLite export, and running the result in the interpreter.

The converter quantizes every tensor to int8 with ranges from a representative
dataset (``representative_samples`` training images), with uint8 input (raw
pixels) and int8 output (probabilities; scale 1/256, zero point -128 for a
sigmoid). The interpreter comes from ``ai_edge_litert`` when installed (what the
server uses, no TensorFlow needed) and from ``tf.lite`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from forja_trainer_tf.tfenv import keras, tf

__all__ = ["TFLiteModel", "TensorQuant", "convert_full_integer", "load_interpreter"]

_DTYPES = {"uint8": tf.uint8, "int8": tf.int8}


def convert_full_integer(
    model: keras.Model,
    representative: npt.NDArray[np.float32],
    *,
    input_type: str = "uint8",
    output_type: str = "int8",
) -> bytes:
    """Convert to a full-integer flatbuffer (int8 kernels only)."""

    def samples() -> Iterator[list[npt.NDArray[np.float32]]]:
        for image in representative:
            yield [image[None].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = samples
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = _DTYPES[input_type]
    converter.inference_output_type = _DTYPES[output_type]
    return bytes(converter.convert())


def load_interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415 - optional
    except ImportError:  # pragma: no cover - depends on the image
        Interpreter = tf.lite.Interpreter  # noqa: N806
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


@dataclass(frozen=True)
class TensorQuant:
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int


class TFLiteModel:
    """A full-integer classifier: float pixels in, dequantized probabilities out."""

    def __init__(self, path: Path) -> None:
        self.interpreter = load_interpreter(path)
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]

    @staticmethod
    def _quant(detail: dict[str, Any]) -> TensorQuant:
        scale, zero = detail["quantization"]
        return TensorQuant(
            shape=[int(d) for d in detail["shape"]],
            dtype=np.dtype(detail["dtype"]).name,
            scale=float(scale),
            zero_point=int(zero),
        )

    @property
    def input(self) -> TensorQuant:
        return self._quant(self._in)

    @property
    def output(self) -> TensorQuant:
        return self._quant(self._out)

    def predict(self, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Images (N, H, W, 3) as float pixels in [0, 255] -> probabilities (N, C)."""
        qin, qout = self.input, self.output
        info = np.iinfo(np.dtype(qin.dtype))
        out = []
        for image in images:
            q = np.round(image / qin.scale + qin.zero_point)
            q = np.clip(q, info.min, info.max).astype(qin.dtype)[None]
            self.interpreter.set_tensor(self._in["index"], q)
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self._out["index"])[0].astype(np.float32)
            out.append((raw - qout.zero_point) * qout.scale)
        return np.stack(out).astype(np.float32)
