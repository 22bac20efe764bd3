"""The peer: NVIDIA Triton (the tritonserver binary that the nvidia-pytriton wheel
carries) serving the same ONNX file through PyTriton.

Runs in its own venv (hack/peer-venv.sh pytriton). The wheel's Triton has only the
Python backend (no ONNX Runtime backend), so the forward pass is PyTriton's way: an
``@batch`` infer function in this process over an ONNX Runtime session with forja's
thread settings; tritonserver (a child process) does HTTP, JSON/binary tensors and
dynamic batching, with the same limits as forja's batcher (max 16, 2 ms). HTTP, gRPC
and metrics bind to 127.0.0.1; no GPU is used or needed.

usage: python pytriton_onnx.py MODEL.onnx NAME HTTP_PORT GRPC_PORT METRICS_PORT \
    [MAX_BATCH_SIZE MAX_LATENCY_MS]
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def main(argv: list[str]) -> None:
    onnx, name, http, grpc, metrics = argv[:5]
    max_batch = int(argv[5]) if len(argv) > 5 else 16
    latency_ms = float(argv[6]) if len(argv) > 6 else 2.0
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(onnx, opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (out,) = session.run(None, {inp.name: inputs[inp.name]})
        return {"output": out}

    config = TritonConfig(http_address="127.0.0.1", http_port=int(http),
                          grpc_address="127.0.0.1", grpc_port=int(grpc),
                          metrics_address="127.0.0.1", metrics_port=int(metrics),
                          allow_gpu_metrics=False, log_verbose=0)
    logging.basicConfig(level=logging.WARNING)
    # The wheel's Python backend stub links libpython3.11.so.1.0 by soname; without this
    # the loader may take the system's (Debian's 3.11.2) while sys.path is this venv's
    # interpreter's stdlib (3.11.7), and the stub dies in multiprocessing
    # ("'_thread.RLock' object has no attribute '_recursion_count'").
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
        filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))
    # PyTriton copies tritonserver (~20 MB) into a workspace and removes it only on a
    # clean exit; side_by_side.py names one under its own work dir and deletes it.
    workspace = os.environ.get("FORJA_SBS_WORK")
    with Triton(config=config,
                workspace=f"{workspace}/triton-workspace" if workspace else None) as triton:
        triton.bind(
            model_name=name, infer_func=infer,
            inputs=[Tensor(name=inp.name, dtype=np.float32, shape=tuple(inp.shape[1:]))],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=max_batch, batcher=DynamicBatcher(
                max_queue_delay_microseconds=int(latency_ms * 1000))),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
