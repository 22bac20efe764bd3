"""``python -m forja_server`` as a real process: config, readiness, drain, failures."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from forja_api.serving import SERVER_CONFIG_ENV, BatchingConfig, ServingConfig
from forja_server.protocol.grpc import grpc_predict_v2_pb2 as pb
from forja_server.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
SECRET = "s3cr3t-Value-Never-Logged"
LAUNCH = "from forja_server.cli import main; raise SystemExit(main())"  # python -m forja_server


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(config: ServingConfig | None, tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / p) for p in (
            "operator", "trainer_image", "server_image", "hack")] + [str(HERE)]),
        "FORJA_POD_IP": "127.0.0.1",
        "FORJA_MODEL_CACHE": str(tmp / "cache"),
        "FORJA_DRAIN_SECONDS": "1.5",
        "AWS_ACCESS_KEY_ID": "AKIAFORJATEST",
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    if config is not None:
        env[SERVER_CONFIG_ENV] = config.to_json()
    return subprocess.Popen([sys.executable, "-c", LAUNCH, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_ready(base: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(base + "/v2/health/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(base)


@pytest.mark.slow
def test_serves_concurrent_clients_then_drains_on_sigterm(clf_stage, tmp_path: Path) -> None:
    port, grpc_port = _port(), _port()
    cfg = ServingConfig(name="clf", stages=[clf_stage], port=port, grpc_port=grpc_port,
                        batching=BatchingConfig(max_batch_size=8, max_latency_ms=5))
    proc = _start(cfg, tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        xs = np.random.default_rng(0).random((24, 3, 32, 32), dtype=np.float32)

        def infer(i: int) -> tuple[int, list[float]]:
            body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                "data": xs[i].reshape(-1).tolist()}]}
            r = httpx.post(f"{base}/v2/models/clf/infer", json=body, timeout=30)
            return r.status_code, r.json()["outputs"][0]["data"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(infer, range(24)))
        assert all(code == 200 for code, _ in results)
        # same input, same answer, whichever batch it rode in
        again = infer(5)[1]
        np.testing.assert_allclose(results[5][1], again, rtol=1e-5)
        stats = httpx.get(f"{base}/stats").json()["models"]["clf"]
        assert stats["samples"] >= 25
        # gRPC from the same process: the same model and the same answer.
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = GRPCInferenceServiceStub(channel)
        tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                                       shape=[1, 3, 32, 32])
        answer = stub.ModelInfer(pb.ModelInferRequest(
            model_name="clf", inputs=[tensor], raw_input_contents=[xs[5].tobytes()]),
            timeout=30)
        np.testing.assert_allclose(
            np.frombuffer(answer.raw_output_contents[0], np.float32), again, rtol=1e-5)

        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # readiness is false first, while requests are still served during the drain
        assert httpx.get(base + "/v2/health/ready").status_code == 503
        assert httpx.get(base + "/v2/health/live").status_code == 200
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=5).ready is False
        channel.close()
        # uvicorn re-raises the signal once drained: the process ends "by SIGTERM"
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "readiness false" in out
    assert SECRET not in out


@pytest.mark.slow
def test_digest_mismatch_exits_with_the_reason(clf_stage, tmp_path: Path) -> None:
    port = _port()
    bad = clf_stage.model_copy(update={"sha256": "f" * 64})
    proc = _start(ServingConfig(name="clf", stages=[bad], port=port, grpc_port=0), tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3
    assert "sha256 mismatch, refusing to load" in out
    assert SECRET not in out


def test_invalid_config_names_the_field(tmp_path: Path) -> None:
    proc = _start(None, tmp_path, "--config", json.dumps({"name": "x", "stages": [
        {"name": "m", "uri": "ftp://nope", "sha256": "0" * 64, "format": "onnx"}]}))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "stages.0.uri" in out


def test_freeze_heap_takes_the_loaded_heap_out_of_gc_but_still_collects_new_cycles() -> None:
    import gc
    import weakref

    from forja_server.cli import freeze_heap

    class Node:
        pass

    gc.unfreeze()
    try:
        freeze_heap()
        assert gc.get_freeze_count() > 1000  # modules, classes, numpy... moved out
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made while serving, e.g. by a request
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    finally:
        gc.unfreeze()
