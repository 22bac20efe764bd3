"""The peer: KServe's Python ModelServer serving the same ONNX file.

Runs in its own venv (the kserve package's pins clash with ours). Written the
way KServe's docs write a custom model: a ``kserve.Model`` with ``load`` and a
synchronous ``predict`` on the v2 ``InferRequest``; one uvicorn worker, no
gRPC, HTTP on 127.0.0.1 only; the ONNX Runtime session gets the same thread
settings as forja's.

usage: python kserve_onnx_server.py MODEL.onnx NAME PORT
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import onnxruntime as ort
import uvicorn

ARGS, sys.argv = sys.argv[1:], sys.argv[:1]  # kserve parses sys.argv at import
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer


class _LoopbackConfig(uvicorn.Config):
    """KServe 0.21's RESTServer hard-codes host="0.0.0.0"; the benchmarks listen on
    loopback only."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


uvicorn.Config = _LoopbackConfig  # type: ignore[misc]


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        # Same as forja's sessions: no busy-waiting pool threads after each run.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.ready = True
        return self.ready

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        (out,) = self.session.run(None, {self.input_name: x})
        output = InferOutput(name="output", shape=list(out.shape), datatype="FP32")
        output.set_data_from_numpy(out, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id)


if __name__ == "__main__":
    path, name, port = ARGS[0], ARGS[1], int(ARGS[2])
    # Per-request log lines off (latency, trace and access logs): forja writes none either,
    # and they cost KServe a large share of its throughput.
    server = ModelServer(http_port=port, workers=1, enable_grpc=False, enable_latency_logging=False)
    for logger_name in ("kserve.trace", "uvicorn.access", "kserve"):
        logging.getLogger(logger_name).setLevel(logging.WARNING)
    server.start([OnnxModel(name, path)])
