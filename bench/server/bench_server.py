"""forja's server against KServe's Python ModelServer, same model, same machine.

One run: builds a small CNN classifier (state dict + exact ONNX export + forja
manifest), serves it with forja (``python -m forja_server``) and with KServe's
ModelServer (in its own venv, see kserve_onnx_server.py), drives both over
loopback with the same Open Inference Protocol v2 JSON requests at a fixed
concurrency, and prints throughput and p50/p99. Then measures forja's overhead
over a raw forward pass: p50 of a lone request end to end minus p50 of
``session.run`` on one sample in-process.

usage: PYTHONPATH=operator:trainer_image:server_image:hack \
    ~/.cache/forja/venv/bin/python bench/server/bench_server.py [--requests N] [--concurrency C]
The KServe venv: python3 -m venv ~/.cache/forja/kserve-venv &&
    ~/.cache/forja/kserve-venv/bin/pip install kserve==0.21.0 onnxruntime==1.32.0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KSERVE_VENV = Path(os.environ.get("KSERVE_VENV", Path.home() / ".cache/forja/kserve-venv"))
KSERVE_PY = KSERVE_VENV / "bin/python"


def build_model(d: Path, size: int) -> tuple[Path, str]:
    """A small CNN (about 0.1 GFLOP per 64x64 image) as a forja artifact; returns manifest, sha."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    ).eval()
    torch.onnx.export(model, (torch.rand(1, 3, size, size),), str(d / "model.onnx"),
                      input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}}, opset_version=17, dynamo=False)
    sha = hashlib.sha256((d / "model.onnx").read_bytes()).hexdigest()
    manifest = {
        "format": "onnx", "task": "classification",
        "files": {"weights": {"path": "model.onnx", "sha256": sha,
                              "size": (d / "model.onnx").stat().st_size}},
        "inputs": [{"name": "input", "shape": [None, 3, size, size]}],
    }
    (d / "forja-model.json").write_text(json.dumps(manifest))
    return d / "forja-model.json", hashlib.sha256((d / "forja-model.json").read_bytes()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise TimeoutError(url)


async def drive(
    url: str, body: bytes, requests: int, concurrency: int, headers: dict[str, str]
) -> dict[str, Any]:
    """Send ``requests`` POSTs with ``concurrency`` in flight; latency per request in ms."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    conn = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> None:
            nonlocal errors
            for _ in counter:
                t0 = time.perf_counter()
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, "errors": errors, "requests": requests}


def summarise(rounds: list[dict[str, Any]]) -> dict[str, float]:
    """Requests over wall time and latency percentiles, pooled over alternating rounds."""
    lat = np.concatenate([np.asarray(r["latencies"]) for r in rounds])
    wall = sum(r["wall"] for r in rounds)
    return {"rps": sum(r["requests"] for r in rounds) / wall,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "errors": float(sum(r["errors"] for r in rounds))}


def lone_requests(
    port: int, body: bytes, headers: dict[str, str], onnx: Path, x: np.ndarray, *, n: int
) -> dict[str, float]:
    """One request at a time, each next to one raw forward pass in this process.

    Alternating the two puts both under the same machine load at the same moments,
    so "request minus forward" is not skewed by load changing between phases.
    """
    import http.client

    sys.path.insert(0, str(ROOT / "server_image"))
    from forja_server.runtimes import OnnxSession

    session = OnnxSession(onnx)
    conn = http.client.HTTPConnection("127.0.0.1", port)
    lone, raw, server, floor = [], [], [], []
    for i in range(n + 20):
        t0 = time.perf_counter()
        session.run(x)
        t1 = time.perf_counter()
        conn.request("POST", "/v2/models/bench/infer", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        t2 = time.perf_counter()
        conn.request("GET", "/v2/health/live")
        conn.getresponse().read()
        t3 = time.perf_counter()
        if i < 20:  # warm both
            continue
        floor.append((t3 - t2) * 1000)
        raw.append((t1 - t0) * 1000)
        lone.append((t2 - t1) * 1000)
        timing = resp.getheader("server-timing")
        if timing:
            durs = dict(p.strip().split(";dur=") for p in timing.split(","))
            server.append(float(durs["total"]) - float(durs["forward"]))
    conn.close()
    return {"lone_p50": float(np.percentile(lone, 50)), "raw_p50": float(np.percentile(raw, 50)),
            "http_floor_p50": float(np.percentile(floor, 50)),
            "server_overhead_p50": float(np.percentile(server, 50)) if server else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--max-latency-ms", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds per payload")
    args = ap.parse_args()
    if not KSERVE_PY.exists():
        print(f"no KServe venv at {KSERVE_PY.parent.parent} (see this script's docstring)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="forja-bench-"))
    manifest, sha = build_model(work, args.size)
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    json_body = orjson.dumps({"id": "bench", "inputs": [{"name": "input", "shape": list(x.shape),
                              "datatype": "FP32", "data": x.reshape(-1).tolist()}]})
    header = orjson.dumps({"id": "bench", "inputs": [{
        "name": "input", "shape": list(x.shape), "datatype": "FP32",
        "parameters": {"binary_data_size": x.nbytes}}]})
    payloads = {
        "json": (json_body, {"content-type": "application/json"}),
        "binary": (header + x.tobytes(), {"content-type": "application/octet-stream",
                                          "inference-header-content-length": str(len(header))}),
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        str(ROOT / p) for p in ("operator", "trainer_image", "server_image", "hack")),
        "FORJA_MODEL_CACHE": str(work / "cache"), "FORJA_DRAIN_SECONDS": "0"}
    fport, kport = free_port(), free_port()
    forja_cmd = [sys.executable, str(HERE / "run_forja.py"), "--name", "bench",
                 "--model-uri", f"file://{manifest}", "--sha256", sha, "--format", "onnx",
                 "--host", "127.0.0.1", "--port", str(fport),
                 "--max-batch-size", str(args.max_batch_size),
                 "--max-latency-ms", str(args.max_latency_ms), "--log-level", "warning"]
    kserve_cmd = [str(KSERVE_PY), str(HERE / "kserve_onnx_server.py"), str(work / "model.onnx"),
                  "bench", str(kport)]
    results: dict[str, dict[str, float]] = {}
    ports = {"forja": fport, "kserve": kport}
    # Both servers stay up (an idle one costs nothing) and take turns in short rounds:
    # on a shared machine load drifts, and alternating puts both under the same drift.
    with contextlib.ExitStack() as stack:
        for name, cmd in (("forja", forja_cmd), ("kserve", kserve_cmd)):
            stack.enter_context(process(cmd, env, work / f"{name}.log"))
        for name, port in ports.items():
            try:
                asyncio.run(wait_ready(f"http://127.0.0.1:{port}/v2/health/ready"))
            except TimeoutError:
                print(f"{name} did not become ready; log: {work / (name + '.log')}")
                return 1
        urls = {n: f"http://127.0.0.1:{p}/v2/models/bench/infer" for n, p in ports.items()}
        per_round = max(1, args.requests // args.rounds)
        for kind, (body, headers) in payloads.items():
            rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in ports}
            for name in ports:  # warm-up
                asyncio.run(drive(urls[name], body, 100, args.concurrency, headers))
            for _ in range(args.rounds):
                for name in ports:
                    rounds[name].append(asyncio.run(
                        drive(urls[name], body, per_round, args.concurrency, headers)))
            for name in ports:
                results[f"{name}/{kind}"] = summarise(rounds[name])
        body, headers = payloads["binary"]
        for name, port in ports.items():
            results[f"{name}/c1"] = lone_requests(port, body, headers, work / "model.onnx", x,
                                                  n=max(200, args.requests // 4))
    print(f"model: CNN 3x{args.size}x{args.size} -> 10, ONNX Runtime, {os.cpu_count()} cores, "
          f"loopback; {args.requests} requests per row at concurrency {args.concurrency} in "
          f"{args.rounds} rounds alternating between the servers; "
          f"forja batching max {args.max_batch_size} / {args.max_latency_ms} ms")
    print(f"{'server':<8} {'payload':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for kind in payloads:
        for name in ("forja", "kserve"):
            r = results[f"{name}/{kind}"]
            print(f"{name:<8} {kind:<8} {r['rps']:>9.1f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
                  f"{r['errors']:>6.0f}")
    for kind in payloads:
        f, k = results[f"forja/{kind}"], results[f"kserve/{kind}"]
        print(f"{kind}: throughput forja/kserve {f['rps'] / k['rps']:.2f}x; "
              f"p99 forja {f['p99']:.2f} ms vs kserve {k['p99']:.2f} ms")
    f1, k1 = results["forja/c1"], results["kserve/c1"]
    print(f"lone requests (binary, c=1) p50: forja {f1['lone_p50']:.3f} ms, "
          f"kserve {k1['lone_p50']:.3f} ms")
    print(f"raw forward (session.run, 1 sample, in the client, alternating) p50: "
          f"{f1['raw_p50']:.3f} ms; forja overhead p50: {f1['lone_p50'] - f1['raw_p50']:.3f} ms "
          f"(HTTP round trip and client included)")
    print(f"forja in-server overhead p50 (Server-Timing total - forward): "
          f"{f1['server_overhead_p50']:.3f} ms; HTTP round trip of GET /v2/health/live "
          f"(no model, same client) p50: {f1['http_floor_p50']:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
