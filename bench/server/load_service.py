"""Load test of a running forja server (e.g. an InferenceService's Service): p50/p99 under
concurrency over HTTP (binary tensor extension) and gRPC (raw contents).

The server's share of each HTTP request comes from its ``Server-Timing: total`` (time
inside the server, forward pass included), the rest is network, proxy and client;
``forward`` is the model alone.

usage: PYTHONPATH=operator:trainer_image:server_image:hack \\
    ~/.cache/forja/venv/bin/python bench/server/load_service.py --http http://10.96.0.12 \\
    --grpc 10.96.0.12:8081 --model clf [--concurrency 8] [--requests 400] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiohttp
import numpy as np
import orjson


def _percentiles(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values) if values else np.zeros(1)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


async def input_shape(http: str, model: str) -> list[int]:
    async with aiohttp.ClientSession() as s, s.get(f"{http}/v2/models/{model}") as r:
        meta = await r.json()
    shape = meta["inputs"][0]["shape"][1:]
    return [1, *[32 if d < 0 else d for d in shape]]


async def drive_http(http: str, model: str, x: np.ndarray, requests: int,
                     concurrency: int) -> dict[str, Any]:
    header = orjson.dumps({"inputs": [{"name": "input", "shape": list(x.shape),
                                       "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}]})
    body = header + x.tobytes()
    headers = {"inference-header-content-length": str(len(header)),
               "content-type": "application/octet-stream"}
    latencies: list[float] = []
    server: list[float] = []
    forward: list[float] = []
    errors = 0
    counter = iter(range(requests))
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> None:
            nonlocal errors
            for _ in counter:
                t0 = time.perf_counter()
                async with s.post(f"{http}/v2/models/{model}/infer", data=body,
                                  headers=headers) as r:
                    await r.read()
                    timing = r.headers.get("server-timing", "")
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status != 200:
                    errors += 1
                    continue
                parts = dict(p.strip().split(";dur=") for p in timing.split(",") if ";dur=" in p)
                server.append(float(parts.get("total", 0)))
                forward.append(float(parts.get("forward", 0)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    p50, p99 = _percentiles(latencies)
    s50, s99 = _percentiles(server)
    return {"protocol": "http", "requests": requests, "concurrency": concurrency,
            "errors": errors, "rps": requests / wall, "p50_ms": p50, "p99_ms": p99,
            "server_p50_ms": s50, "server_p99_ms": s99,
            "forward_p50_ms": _percentiles(forward)[0],
            "server_share_p50": s50 / p50 if p50 else 0.0}


async def drive_grpc(address: str, model: str, x: np.ndarray, requests: int,
                     concurrency: int) -> dict[str, Any]:
    import grpc

    from forja_server.protocol.grpc import grpc_predict_v2_pb2 as pb
    from forja_server.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                                   shape=list(x.shape))
    request = pb.ModelInferRequest(model_name=model, inputs=[tensor],
                                   raw_input_contents=[x.tobytes()])
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    async with grpc.aio.insecure_channel(address) as channel:
        stub = GRPCInferenceServiceStub(channel)

        async def worker() -> None:
            nonlocal errors
            for _ in counter:
                t0 = time.perf_counter()
                try:
                    await stub.ModelInfer(request, timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    p50, p99 = _percentiles(latencies)
    return {"protocol": "grpc", "requests": requests, "concurrency": concurrency,
            "errors": errors, "rps": requests / wall, "p50_ms": p50, "p99_ms": p99}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    shape = [int(d) for d in args.shape.split(",")] if args.shape else \
        await input_shape(args.http, args.model)
    # A different input per run would defeat nothing here: the cache is off unless the
    # InferenceService turns it on, and then a repeated input is what it is for.
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    warm = max(args.concurrency, 16)
    await drive_http(args.http, args.model, x, warm, args.concurrency)
    results = [await drive_http(args.http, args.model, x, args.requests, args.concurrency)]
    if args.grpc:
        await drive_grpc(args.grpc, args.model, x, warm, args.concurrency)
        results.append(await drive_grpc(args.grpc, args.model, x, args.requests,
                                        args.concurrency))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--http", required=True, help="base URL, e.g. http://10.96.0.12")
    p.add_argument("--grpc", help="host:port of the gRPC port")
    p.add_argument("--model", required=True)
    p.add_argument("--shape", help="input shape, e.g. 1,3,32,32 (default: from metadata)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--json", action="store_true", help="print JSON lines only")
    args = p.parse_args()
    results = asyncio.run(run(args))
    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    print(f"{'protocol':8} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'server p50':>10} {'forward p50':>11} {'errors':>6}")
    for r in results:
        server = f"{r['server_p50_ms']:.2f}" if "server_p50_ms" in r else "-"
        fwd = f"{r['forward_p50_ms']:.2f}" if "forward_p50_ms" in r else "-"
        print(f"{r['protocol']:8} {r['concurrency']:>4} {r['rps']:>8.1f} {r['p50_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {server:>10} {fwd:>11} {r['errors']:>6}")


if __name__ == "__main__":
    main()
