"""The peer: Seldon's MLServer serving the same ONNX file.

Runs in its own venv (hack/peer-venv.sh mlserver). There is no ONNX runtime package
for MLServer on the registry (no ``mlserver-onnx``), so ``OnnxRuntime`` below is the
custom runtime MLServer's docs describe: an ``MLModel`` with ``load`` and an async
``predict`` using its ``NumpyCodec``; the ONNX Runtime session gets the same thread
settings as forja's. MLServer's own adaptive batching gets the same limits as forja's
batcher (max 16, 2 ms). Everything else is MLServer's default (one parallel inference
worker process, metrics on) except ``debug`` (access log lines), turned off as for
KServe and forja. All three listeners bind to 127.0.0.1.

usage: python mlserver_onnx.py MODEL.onnx NAME HTTP_PORT GRPC_PORT METRICS_PORT \
    [MAX_BATCH_SIZE MAX_LATENCY_MS]
The process execs ``mlserver start`` so its pid is the server's.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

try:  # only inside MLServer's venv; the launcher below needs nothing from it
    from mlserver import MLModel
    from mlserver.codecs import NumpyCodec
    from mlserver.types import InferenceRequest, InferenceResponse
except ImportError:  # pragma: no cover
    MLModel = object


class OnnxRuntime(MLModel):  # type: ignore[misc, valid-type]
    async def load(self) -> bool:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = self.settings.parameters.uri
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        (out,) = self.session.run(None, {self.input_name: x})
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output("output", out)])


def main(argv: list[str]) -> None:
    onnx, name, http, grpc, metrics = argv[:5]
    batch = int(argv[5]) if len(argv) > 5 else 16
    latency_ms = float(argv[6]) if len(argv) > 6 else 2.0
    d = Path(tempfile.mkdtemp(prefix="forja-mlserver-", dir=os.environ.get("FORJA_SBS_WORK")))
    (d / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": int(http), "grpc_port": int(grpc),
        "metrics_port": int(metrics), "debug": False}))
    (d / "model-settings.json").write_text(json.dumps({
        "name": name, "implementation": "mlserver_onnx.OnnxRuntime",
        "parameters": {"uri": str(Path(onnx).resolve())},
        "max_batch_size": batch, "max_batch_time": latency_ms / 1000}))
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    os.chdir(d)  # MLServer keeps .metrics/.envs under its working directory
    mlserver = str(Path(sys.executable).parent / "mlserver")
    os.execv(mlserver, [mlserver, "start", str(d)])


if __name__ == "__main__":
    main(sys.argv[1:])
