"""Ultralytics detectors (format ``ultralytics``).

The fast path is the ONNX export the trainer lists in the manifest (role
``onnx``), run by ONNX Runtime with our own box decoding and NMS. A bare
Ultralytics ``.pt`` (a pickled model object) is loaded only through
``torch.load(weights_only=True)`` with an allow-list of Ultralytics and torch
module classes, so nothing outside those classes can be constructed from it.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from forja_server.errors import ArtifactError
from forja_server.model import Model, Outputs, TensorInfo
from forja_server.runtimes import OnnxSession, TorchModule

__all__ = ["UltralyticsDetector", "safe_load_ultralytics"]


def _allowed_classes() -> list[Any]:
    """Classes an Ultralytics checkpoint may name: its modules, torch.nn, a few helpers."""
    import types

    import torch
    from ultralytics.nn import modules as ul_modules
    from ultralytics.nn import tasks as ul_tasks
    from ultralytics.utils import IterableSimpleNamespace

    allowed: list[Any] = [types.SimpleNamespace, IterableSimpleNamespace, getattr]
    for mod in (ul_tasks, ul_modules, torch.nn.modules.activation, torch.nn.modules.conv,
                torch.nn.modules.batchnorm, torch.nn.modules.container,
                torch.nn.modules.pooling, torch.nn.modules.upsampling,
                torch.nn.modules.linear, torch.nn.modules.dropout):
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, torch.nn.Module):
                allowed.append(obj)
    # Submodules of ultralytics.nn.modules define the blocks (Conv, C2f, Detect...).
    import ultralytics.nn.modules as pkg

    for sub in ("block", "conv", "head", "transformer"):
        submodule: Any = getattr(pkg, sub, None)
        if submodule is not None:
            allowed += [c for _, c in inspect.getmembers(submodule, inspect.isclass)
                        if issubclass(c, torch.nn.Module)]
    return allowed


def safe_load_ultralytics(path: os.PathLike[str] | str) -> Any:
    """The detection model inside an Ultralytics checkpoint, loaded without free unpickling."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    import torch

    try:
        with torch.serialization.safe_globals(_allowed_classes()):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"weights: the Ultralytics checkpoint names classes outside the allow-list "
            f"(refusing to unpickle): {exc}",
            field="weights",
        ) from exc
    model: Any = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
    if not isinstance(model, torch.nn.Module):
        raise ArtifactError("weights: no model in the Ultralytics checkpoint", field="weights")
    names = getattr(model, "names", None)
    model = model.float().eval()
    head: Any
    for head in model.modules():  # export-style head: one (4 + classes, anchors) tensor
        if type(head).__name__ == "Detect":
            head.export = True
            head.format = "onnx"
    return model, names


class UltralyticsDetector(Model):
    format = "ultralytics"

    _engine: OnnxSession | TorchModule
    _input: TensorInfo

    def load(self) -> None:
        self.task = "detection"
        imgsz = self.preprocessing.get("resize") or self.preprocessing.get("imgsz") or 640
        if isinstance(imgsz, int):
            imgsz = [imgsz, imgsz]
        if self.artifact.has("onnx") and self.parameters.get("runtime") != "torch":
            session = OnnxSession(self.artifact.file("onnx"))
            self._engine = session
            self.runtime = "onnxruntime"
            shape = tuple(
                d if d is not None else int(imgsz[i - 1]) if i else 3
                for i, d in enumerate(session.input_shape)
            )
            self._input = TensorInfo(session.input_name, shape, "float32")
        else:
            model, names = safe_load_ultralytics(self.artifact.file("weights"))
            if names and not self.manifest.class_names:
                self.manifest.class_names = (
                    [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
                )
            self._engine = TorchModule(model, ["output0"])
            self.runtime = "torch"
            self._input = TensorInfo("images", (3, int(imgsz[0]), int(imgsz[1])), "float32")
        self.preprocessing.setdefault("scale", 1.0 / 255.0)

    @property
    def input(self) -> TensorInfo:
        return self._input

    def predict(self, batch: npt.NDArray[Any]) -> Outputs:
        out = self._engine.run(batch)
        first = next(iter(out.values()))
        if isinstance(first, np.ndarray) and first.ndim == 3:
            return {"output0": first}
        raise ArtifactError(f"unexpected detector output shape {getattr(first, 'shape', None)}")
