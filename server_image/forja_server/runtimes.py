"""Forward-pass engines shared by the format models: ONNX Runtime and eager torch.

ONNX Runtime is the fast path wherever a trainer exported an exact ONNX graph;
torch runs state dicts rebuilt from ``forja_architectures``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from forja_server.errors import ArtifactError

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

__all__ = ["OnnxSession", "TorchModule"]

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


class OnnxSession:
    """One ONNX Runtime inference session on CPU, all cores for intra-op work."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or int(os.environ.get("FORJA_THREADS", "0")) or (
            os.cpu_count() or 1
        )
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if os.environ.get("FORJA_ORT_SPIN", "0") != "1":
            # ORT's pool threads busy-wait after each run by default; in a server they
            # then starve the event loop that must send the answer (2 shared cores here).
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session: ort.InferenceSession = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"{path.name}: not a loadable ONNX model: {exc}") from exc
        first = self.session.get_inputs()[0]
        self.input_name: str = first.name
        # An export with a fixed batch (Ultralytics' default) runs batches sample-group-wise.
        self.fixed_batch: int | None = _dim(first.shape[0]) if first.shape else None
        self.input_shape: tuple[int | None, ...] = tuple(_dim(d) for d in first.shape[1:])
        self.input_dtype: str = _ORT_DTYPES.get(first.type, "float32")
        self.output_names: list[str] = [o.name for o in self.session.get_outputs()]
        self.output_info = [
            (o.name, tuple(_dim(d) for d in o.shape[1:]), _ORT_DTYPES.get(o.type, "float32"))
            for o in self.session.get_outputs()
        ]

    def run(self, batch: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        n = self.fixed_batch
        if n is not None and batch.shape[0] != n and batch.shape[0] % n == 0:
            parts = [self.run(batch[i : i + n]) for i in range(0, batch.shape[0], n)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}
        outs = self.session.run(self.output_names, {self.input_name: batch})
        return dict(zip(self.output_names, outs, strict=True))


class TorchModule:
    """An eager torch module in inference mode; outputs named as the manifest says."""

    def __init__(self, module: torch.nn.Module, output_names: Sequence[str]) -> None:
        import torch

        self._torch = torch
        self.module = module.eval()
        self.output_names = list(output_names) or ["output"]

    def run(self, batch: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        torch = self._torch
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch)))
        if isinstance(out, dict):
            return {k: v.detach().numpy() for k, v in out.items()}
        if isinstance(out, list | tuple):
            return {
                (self.output_names[i] if i < len(self.output_names) else f"output{i}"):
                    t.detach().numpy()
                for i, t in enumerate(out)
            }
        return {self.output_names[0]: out.detach().numpy()}
