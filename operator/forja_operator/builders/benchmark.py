"""The Pod that benchmarks a Ready ModelVersion with the server image."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from forja_api import benchmark, serving
from forja_api.v1alpha1.modelversion import ModelVersionSpec
from forja_operator.builders.modelversion import artifact_pod
from forja_operator.config import OperatorConfig

__all__ = ["benchmark_pod_name", "render_benchmark_pod"]


def benchmark_pod_name(mv_name: str, uri: str, sha256: str) -> str:
    """One benchmark pod per (version, artifact uri, digest), never the verify pod's name."""
    digest = hashlib.sha256(f"benchmark\n{mv_name}\n{uri}\n{sha256}".encode()).hexdigest()[:8]
    return f"{mv_name[: 63 - 15].rstrip('-.')}-bench-{digest}"


def _threads(cpu: str) -> int:
    """ONNX Runtime threads for a CPU quantity ("1", "1500m"): all cores of the node would
    be throttled to the limit and measure contention, not the model."""
    cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.ceil(cores))


def render_benchmark_pod(mv: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """``python -m forja_server.benchmark URI SHA256 FORMAT [TASK]`` in the server image.

    Like the verify pod: the store credentials come from the Secret by reference (the
    operator never reads Secrets), the root filesystem is the image's, and only /tmp
    (an emptyDir: the fetched artifact) is writable. A fixed CPU share makes the
    figures of two versions comparable.
    """
    spec = ModelVersionSpec.model_validate(mv["spec"])
    bench = config.benchmark
    uri, sha = spec.artifact.uri, spec.artifact.sha256
    command = ["python", "-m", "forja_server.benchmark", uri, sha, spec.format.value]
    if spec.task:
        command.append(spec.task)
    return artifact_pod(
        mv, spec, config,
        name=benchmark_pod_name(mv["metadata"]["name"], uri, sha),
        component="benchmark",
        command=command,
        resources={"requests": {"cpu": bench.cpu, "memory": "256Mi"},
                   "limits": {"cpu": bench.cpu, "memory": bench.memory_limit}},
        deadline_seconds=bench.deadline_seconds,
        env=[
            {"name": serving.MODEL_CACHE_ENV, "value": serving.DEFAULT_MODEL_CACHE},
            {"name": benchmark.BENCH_REQUESTS_ENV, "value": str(bench.requests)},
            {"name": benchmark.BENCH_BATCH_ENV, "value": str(bench.batch_size)},
            {"name": "FORJA_THREADS", "value": str(_threads(bench.cpu))},
        ],
        scratch_tmp=True,
    )
