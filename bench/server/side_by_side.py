"""The same ONNX model behind forja, KServe's ModelServer, MLServer and Triton, on this
machine, over loopback: throughput, p50, p99 and server CPU per request, JSON and
binary tensors, one table.

One command (it makes the peers' venvs on first use, hack/peer-venv.sh, minutes once):
    PYTHONPATH=operator:trainer_image:server_image:hack \\
        ~/.cache/forja/venv/bin/python bench/server/side_by_side.py

What it does: exports one small CNN (bench_server.build_model, 3x64x64 -> 10) to one
.onnx file; starts the four servers on 127.0.0.1 (forja: python -m forja_server;
KServe 0.21: kserve_onnx_server.py; MLServer 1.7.1: mlserver_onnx.py; Triton 2.51 from
the nvidia-pytriton wheel: pytriton_onnx.py), each with ONNX Runtime 1.32 and the same
session settings, batching max 16 / 2 ms where the server has a batcher (KServe's
ModelServer has none); checks that every server answers the same numbers as ONNX
Runtime in this process, for each payload (a server that refuses a payload gets "n/a"
and the reason); then drives them with one closed-loop generator (fixed concurrency,
fixed seconds per round) in interleaved rounds (A,B,C,D, A,B,C,D, ...) so load from
other jobs on the machine falls on all of them alike. Server CPU is user+system time
of each server's whole process tree (workers, tritonserver, its stub) from /proc,
before and after each round. Prints the table, the verdict against the goal (forja
>= 2x KServe's throughput and >= every other peer's, each at an equal or better p99)
and the load average. Every server it started is stopped (its process group).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import build_model, free_port
from sbs_stats import (
    Round,
    Row,
    is_loopback,
    pool,
    table,
    tree_cpu_seconds,
    tree_listeners,
    verdict,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVERS = ("forja", "kserve", "mlserver", "triton")
PEER_VENV = {"kserve": "kserve", "mlserver": "mlserver", "triton": "pytriton"}
# Why a server refuses a payload, found in its log once; printed next to what it answered.
KNOWN_NA = {("mlserver", "binary"): "no binary tensor extension in MLServer's REST API "
            "(it parses the whole body as JSON)"}


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    ready_path: str
    proc: subprocess.Popen[bytes] | None = None
    failed: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/bench/infer"


def peer_python(peer: str) -> Path:
    """The peer's venv interpreter; hack/peer-venv.sh makes the venv on first use."""
    out = subprocess.run(["bash", str(ROOT / "hack/peer-venv.sh"), peer], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip()) / "bin/python"


def commands(onnx: Path, manifest: Path, sha: str, args: argparse.Namespace,
             ) -> dict[str, tuple[list[str], int, str]]:
    p = {n: free_port() for n in SERVERS}
    batch, lat = str(args.max_batch_size), str(args.max_latency_ms)
    cmds = {
        "forja": ([sys.executable, str(HERE / "run_forja.py"), "--name", "bench",
                   "--model-uri", f"file://{manifest}", "--sha256", sha, "--format", "onnx",
                   "--host", "127.0.0.1", "--port", str(p["forja"]), "--grpc-port", "0",
                   "--max-batch-size", batch, "--max-latency-ms", lat,
                   "--log-level", "warning"], p["forja"], "/v2/health/ready"),
        "kserve": (["{kserve}", str(HERE / "kserve_onnx_server.py"), str(onnx), "bench",
                    str(p["kserve"])], p["kserve"], "/v2/models/bench/ready"),
        "mlserver": (["{mlserver}", str(HERE / "mlserver_onnx.py"), str(onnx), "bench",
                      str(p["mlserver"]), str(free_port()), str(free_port()), batch, lat],
                     p["mlserver"], "/v2/models/bench/ready"),
        "triton": (["{triton}", str(HERE / "pytriton_onnx.py"), str(onnx), "bench",
                    str(p["triton"]), str(free_port()), str(free_port()), batch, lat],
                   p["triton"], "/v2/models/bench/ready"),
    }
    return {n: cmds[n] for n in args.servers}


@contextlib.contextmanager
def started(servers: list[Server], env: dict[str, str], logs: Path) -> Iterator[None]:
    """Each server in a process group of its own, so stopping it stops its children."""
    try:
        for s in servers:
            if s.failed:
                continue
            with (logs / f"{s.name}.log").open("wb") as fh:
                s.proc = subprocess.Popen(s.cmd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        yield
    finally:
        for s in servers:
            if s.proc and s.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(s.proc.pid, signal.SIGTERM)
        for s in servers:
            if s.proc:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    s.proc.wait(30)
                with contextlib.suppress(ProcessLookupError):  # stragglers in its group
                    os.killpg(s.proc.pid, signal.SIGKILL)


async def wait_ready(servers: list[Server], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as sess:
        for s in servers:
            while not s.failed:
                if s.proc is not None and s.proc.poll() is not None:
                    s.failed = f"exited with {s.proc.returncode} before ready"
                    break
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with sess.get(f"http://127.0.0.1:{s.port}{s.ready_path}",
                                        timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    s.failed = f"not ready after {timeout:.0f} s"
                    break
                await asyncio.sleep(0.3)


def decode_output(body: bytes, header_len: str | None) -> np.ndarray:
    """The first output of a v2 response, JSON or with binary outputs."""
    if header_len is None:
        head, tail = orjson.loads(body), b""
    else:
        n = int(header_len)
        head, tail = orjson.loads(body[:n]), body[n:]
    out = head["outputs"][0]
    if "data" in out:
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    return np.frombuffer(tail[: out["parameters"]["binary_data_size"]],
                         dtype=np.float32).reshape(out["shape"])


async def check(s: Server, body: bytes, headers: dict[str, str], want: np.ndarray) -> str:
    """'' when the server answers this payload with the right numbers, else why not."""
    async with aiohttp.ClientSession() as sess, sess.post(s.url, data=body,
                                                          headers=headers) as r:
        raw = await r.read()
        if r.status != 200:
            return f"HTTP {r.status} {raw[:60].decode(errors='replace').strip()}"
        try:
            got = decode_output(raw, r.headers.get("inference-header-content-length"))
        except (KeyError, ValueError, TypeError) as exc:
            return f"unreadable answer ({type(exc).__name__})"
    if got.shape != want.shape or not np.allclose(got, want, atol=1e-4):
        return "wrong numbers"
    return ""


async def drive(url: str, body: bytes, headers: dict[str, str], seconds: float,
                concurrency: int) -> tuple[list[float], float, int]:
    """Closed loop: ``concurrency`` workers each send the next request when the last one
    is answered, until ``seconds`` pass; (latencies ms of 200s, wall s, errors)."""
    latencies: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as sess:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    async with sess.post(url, data=body, headers=headers) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1

        started_at = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started_at
    return latencies, wall, errors


def payloads(x: np.ndarray) -> dict[str, tuple[bytes, dict[str, str]]]:
    # With an "id", as KServe's and Triton's clients send: KServe 0.21's InferResponse
    # refuses a request without one (HTTP 500, pydantic ValidationError on "id").
    inp = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    header = orjson.dumps({"id": "bench", "inputs": [
        {**inp, "parameters": {"binary_data_size": x.nbytes}}]})
    return {
        "json": (orjson.dumps({"id": "bench", "inputs": [
            {**inp, "data": x.reshape(-1).tolist()}]}),
                 {"content-type": "application/json"}),
        "binary": (header + x.tobytes(), {"content-type": "application/octet-stream",
                                          "inference-header-content-length": str(len(header))}),
    }


def loopback_only(servers: list[Server]) -> str:
    """Every ready server's listening sockets; one found off loopback is stopped and
    gets n/a (this benchmark must never open a port to the network)."""
    seen = []
    for s in servers:
        if s.failed or s.proc is None:
            continue
        socks = tree_listeners(s.proc.pid)
        wide = [f"{a}:{p}" for a, p in socks if not is_loopback(a)]
        if wide:
            os.killpg(s.proc.pid, signal.SIGKILL)
            s.failed = f"listened on {', '.join(wide)}, not loopback: stopped"
        seen.append(f"{s.name} " + " ".join(f"{a}:{p}" for a, p in socks))
    return "; ".join(seen)


def measure(servers: list[Server], bodies: dict[str, tuple[bytes, dict[str, str]]],
            want: np.ndarray, args: argparse.Namespace,
            ) -> tuple[dict[tuple[str, str], list[Round]], dict[tuple[str, str], str], list[float]]:
    """Check, warm up, then interleaved rounds; (rounds, n/a reasons, load averages)."""
    rounds: dict[tuple[str, str], list[Round]] = {}
    na = {(s.name, kind): s.failed for s in servers for kind in bodies if s.failed}
    loads: list[float] = []
    live = [s for s in servers if not s.failed]
    for kind, (body, headers) in bodies.items():
        for s in live:
            why = asyncio.run(check(s, body, headers, want))
            if why:
                known = KNOWN_NA.get((s.name, kind))
                na[s.name, kind] = f"{known}; answered {why}" if known else why
            else:
                asyncio.run(drive(s.url, body, headers, args.warmup, args.concurrency))
    for _ in range(args.rounds):
        for kind, (body, headers) in bodies.items():
            for s in live:
                if (s.name, kind) in na:
                    continue
                assert s.proc is not None
                loads.append(os.getloadavg()[0])
                cpu0, client0 = tree_cpu_seconds(s.proc.pid), time.process_time()
                lat, wall, errors = asyncio.run(
                    drive(s.url, body, headers, args.seconds, args.concurrency))
                cpu = tree_cpu_seconds(s.proc.pid) - cpu0
                rounds.setdefault((s.name, kind), []).append(
                    Round(lat, wall, errors, cpu, time.process_time() - client0))
    return rounds, na, loads


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=4.0, help="per server, payload and round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--warmup", type=float, default=1.5, help="seconds per server and payload")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--max-latency-ms", type=float, default=2.0)
    ap.add_argument("--ready-timeout", type=float, default=180.0)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="forja-sbs-"))
    manifest, sha = build_model(work, args.size)
    onnx = work / "model.onnx"
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    import onnxruntime as ort

    want = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    servers = []
    for name, (cmd, port, ready) in commands(onnx, manifest, sha, args).items():
        s = Server(name, cmd, port, ready)
        if name in PEER_VENV:
            try:
                s.cmd[0] = str(peer_python(PEER_VENV[name]))
            except subprocess.CalledProcessError as exc:
                s.failed = f"no venv: {exc.stderr.strip().splitlines()[-1:]}"
        servers.append(s)
    env = {**os.environ, "FORJA_MODEL_CACHE": str(work / "cache"), "FORJA_DRAIN_SECONDS": "0",
           "FORJA_SBS_WORK": str(work),
           "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in
                                         ("operator", "trainer_image", "server_image", "hack"))}
    bodies = payloads(x)
    t_start = time.monotonic()
    with started(servers, env, work):
        asyncio.run(wait_ready(servers, args.ready_timeout))
        listeners = loopback_only(servers)
        rounds, na, loads = measure(servers, bodies, want, args)
    shutil.rmtree(work / "triton-workspace", ignore_errors=True)  # keeps the logs
    rows = []
    for kind in bodies:
        for s in servers:
            key = (s.name, kind)
            rows.append(Row(s.name, kind, na=na[key]) if key in na
                        else pool(s.name, kind, rounds[key]))
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{when}; {platform.machine()}, {os.cpu_count()} cores; CNN 3x{args.size}x{args.size}"
          f" -> 10 (one .onnx), ONNX Runtime; loopback; concurrency {args.concurrency}; "
          f"{args.rounds} interleaved rounds of {args.seconds:g} s per server and payload; "
          f"batching max {args.max_batch_size} / {args.max_latency_ms:g} ms (not KServe)")
    print(f"load average (1 min) during the rounds: mean {np.mean(loads):.1f}, "
          f"min {min(loads):.1f}, max {max(loads):.1f}; whole run "
          f"{time.monotonic() - t_start:.0f} s; logs in {work}" if loads else "no rounds ran")
    print(f"listening: {listeners}")
    print(table(rows))
    print("\n".join(verdict(rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
