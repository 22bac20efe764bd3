"""A short, bounded benchmark of one verified ModelVersion artifact.

``python -m forja_server.benchmark URI SHA256 FORMAT [TASK]`` runs in the benchmark pod
the ModelVersion controller starts once a version is Ready. It loads the artifact the
way the server does (fetch, check the digest and every listed file's, then load), feeds
inputs generated from the model's own input spec, and writes a
:class:`forja_api.benchmark.BenchmarkReport` to the termination message:

* load time: fetch + verify + load, the cost a new server replica pays;
* latency p50/p99 of one forward pass at batch 1, over ``FORJA_BENCH_REQUESTS`` passes;
* throughput (samples/s) at batch ``FORJA_BENCH_BATCH`` (the serving default's max batch);
* peak resident memory of the process.

Forward passes are timed directly (no HTTP, no batcher): the figures compare versions
of a model on one node, they are not an end-to-end latency. Both loops also stop at a
time budget, so a slow model costs seconds, not the pod's deadline.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from forja_api import benchmark as b
from forja_api import serving
from forja_api.contract import termination_path
from forja_api.serving import StageArtifact
from forja_server.artifacts import fetch_artifact
from forja_server.errors import ArtifactError
from forja_server.model import Model
from forja_server.models import model_for

__all__ = ["main", "run_benchmark"]

DEFAULT_REQUESTS = 50
DEFAULT_BATCH = serving.BatchingConfig().max_batch_size
LATENCY_BUDGET_SECONDS = 10.0
THROUGHPUT_BUDGET_SECONDS = 5.0
MIN_PASSES = 3
"""At least this many passes per loop, even past the budget (p99 of fewer means little)."""


class Unsupported(Exception):  # noqa: N818 - named for the exit it maps to
    """This model cannot be benchmarked here: not retried."""


def _inputs(model: Model, batch: int, rng: np.random.Generator) -> npt.NDArray[Any]:
    """A batch shaped and typed as the model's input, dynamic sizes filled as the server
    fills them for warm-up; values uniform in the dtype's usual range."""
    shape = (batch, *model.concrete_input_shape())
    dtype = np.dtype(model.input.dtype)
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, 0), min(info.max, 255) + 1, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    raise Unsupported(f"input dtype {dtype} has no generated values")


def _timed(model: Model, x: npt.NDArray[Any], passes: int, budget: float) -> list[float]:
    """Seconds per forward pass, ``passes`` of them or as many as fit in ``budget``."""
    took: list[float] = []
    deadline = time.perf_counter() + budget
    while len(took) < passes and (len(took) < MIN_PASSES or time.perf_counter() < deadline):
        started = time.perf_counter()
        model.predict(x)
        took.append(time.perf_counter() - started)
    return took


def peak_memory_mib() -> float:
    # ru_maxrss is KiB on Linux (the only platform the image runs on).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_benchmark(
    stage: StageArtifact, cache_dir: Path, *, requests: int = DEFAULT_REQUESTS,
    batch: int = DEFAULT_BATCH,
) -> b.BenchmarkReport:
    """Load ``stage``'s artifact (verified first) and measure it. Raises ArtifactError
    (fetch or digest failed) or Unsupported (no runtime, load or inputs failed)."""
    started = time.perf_counter()
    artifact = fetch_artifact(stage, cache_dir)
    # The artifact is verified: a model this image cannot build or load fails the same
    # way every time, so it is not retried (a fetch above may be, it can be transient).
    try:
        model = model_for(stage, artifact)
        model.load()
    except ArtifactError as exc:
        raise Unsupported(str(exc)) from exc
    load_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    one, many = _inputs(model, 1, rng), _inputs(model, batch, rng)
    try:
        model.predict(one)  # first-pass set-up is load cost, not latency
        model.predict(many)
    except Exception as exc:  # the runtime's own error types; generated inputs are valid
        raise Unsupported(f"inputs generated from the model's input spec do not run: {exc}"
                          ) from exc
    latencies = np.asarray(_timed(model, one, requests, LATENCY_BUDGET_SECONDS)) * 1000
    rounds = _timed(model, many, max(MIN_PASSES, requests // batch), THROUGHPUT_BUDGET_SECONDS)
    figures = b.Figures(
        p50_ms=round(float(np.percentile(latencies, 50)), 3),
        p99_ms=round(float(np.percentile(latencies, 99)), 3),
        throughput=round(batch * len(rounds) / sum(rounds), 1),
        batch_size=batch,
        requests=len(latencies),
        load_seconds=round(load_seconds, 3),
    )
    return b.BenchmarkReport(ok=True, figures=figures, runtime=model.runtime or None,
                             peak_memory_mib=round(peak_memory_mib(), 1))


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return max(1, int(raw)) if raw and raw.isdigit() else default


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print("usage: python -m forja_server.benchmark URI SHA256 FORMAT [TASK]", file=sys.stderr)
        return 2
    code = b.EXIT_OK
    try:
        stage = StageArtifact(name="benchmark", uri=args[0], sha256=args[1], format=args[2],
                              task=args[3] if len(args) == 4 else None)
        cache = Path(os.environ.get(serving.MODEL_CACHE_ENV) or tempfile.mkdtemp())
        report = run_benchmark(
            stage, cache, requests=_env_int(b.BENCH_REQUESTS_ENV, DEFAULT_REQUESTS),
            batch=_env_int(b.BENCH_BATCH_ENV, DEFAULT_BATCH))
    except Unsupported as exc:
        code = b.EXIT_UNSUPPORTED
        report = b.BenchmarkReport(ok=False, reason="Unsupported", message=str(exc)[:1000])
    except (ArtifactError, ValueError) as exc:
        code = 1
        report = b.BenchmarkReport(ok=False, reason="Error", message=str(exc)[:1000])
    text = report.to_json()
    print(text)
    # Outside a pod there is no termination log.
    with contextlib.suppress(OSError):
        termination_path().write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
