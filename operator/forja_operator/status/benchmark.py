"""A Ready ModelVersion's benchmark: plan its pod, read its report into status. Pure.

The benchmark is informative: whatever happens here never changes phase or Ready. It
runs once per (artifact uri, sha256); a failed pod is retried after a backoff, at most
``max_attempts`` pods in all, and a model that cannot be benchmarked (exit 69) is not
retried. Its state lives in ``status.benchmark`` and the Benchmarked condition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from forja_api import benchmark as b
from forja_api import conditions as c
from forja_api.v1alpha1.common import Condition
from forja_api.v1alpha1.modelversion import (
    BenchmarkState,
    BenchmarkStatus,
    ModelFormat,
    ModelVersionSpec,
    ModelVersionStatus,
)
from forja_operator.config import BenchmarkConfig
from forja_operator.controller.clock import parse_rfc3339, timestamp
from forja_operator.controller.conditions import set_condition
from forja_operator.controller.events import Event
from forja_operator.controller.pods import container_state

__all__ = ["BenchmarkPlan", "benchmark_backoff", "plan_benchmark", "refuse_benchmark"]

BACKOFF_SECONDS = 10.0
"""The wait after the first failed benchmark pod; doubles per failure."""
FINAL = (BenchmarkState.SUCCEEDED, BenchmarkState.FAILED)
_PIPELINE = (
    "a pipeline version names its stages' versions and has no single model to run: "
    "each stage's own ModelVersion carries its benchmark"
)


def benchmark_backoff(failures: int) -> float:
    return float(BACKOFF_SECONDS * 2 ** max(failures - 1, 0))


@dataclass
class BenchmarkPlan:
    create_pod: bool = False
    delete_pod: bool = False
    retry_after: float | None = None
    events: list[Event] = field(default_factory=list)


def _unknown(status: ModelVersionStatus, reason: str, message: str, now: str) -> None:
    status.conditions = [x for x in status.conditions if x.type != c.BENCHMARKED]
    status.conditions.append(
        Condition(
            type=c.BENCHMARKED,
            status="Unknown",
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=status.observed_generation,
        )
    )


def _fail(plan: BenchmarkPlan, status: ModelVersionStatus, reason: str, msg: str, now: str
          ) -> None:
    """The final failure: recorded, warned about once, never retried."""
    bench = status.benchmark
    assert bench is not None
    bench.state, bench.message, bench.completed_at = BenchmarkState.FAILED, msg, now
    gen = status.observed_generation
    set_condition(status.conditions, c.BENCHMARKED, False, reason, msg, gen, now)
    plan.events.append(Event("Warning", reason, f"benchmark failed: {msg}"))


def refuse_benchmark(status: ModelVersionStatus, pod: str, now: datetime) -> BenchmarkPlan:
    """The benchmark pod's name is held by a pod this version does not control."""
    plan = BenchmarkPlan()
    msg = f"pod {pod} has this version's benchmark pod name but is not controlled by it"
    _fail(plan, status, c.REASON_POD_NOT_OWNED, msg, timestamp(now))
    return plan


def _report(pod: dict[str, Any]) -> tuple[int | None, b.BenchmarkReport | None, str]:
    """Exit code, the parsed report (None when the message is no report) and a reason
    the pod itself gave (deadline, eviction) for when there is no report."""
    status = pod.get("status") or {}
    term = container_state(pod).get("terminated") or {}
    raw = term.get("message") or ""
    try:
        report: b.BenchmarkReport | None = b.BenchmarkReport.model_validate_json(raw)
    except (ValidationError, ValueError):
        report = None
    why = status.get("message") or status.get("reason") or term.get("reason") or raw[-300:]
    return term.get("exitCode"), report, str(why)


def _image(pod: dict[str, Any]) -> str | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    image = statuses[0].get("imageID") or statuses[0].get("image") or containers[0].get("image")
    return str(image) if image else None


def _record(plan: BenchmarkPlan, status: ModelVersionStatus, pod: dict[str, Any],
            config: BenchmarkConfig, now: datetime) -> None:
    """The benchmark pod ended: its figures, or a failure (retried while attempts last)."""
    bench = status.benchmark
    assert bench is not None
    now_s, gen = timestamp(now), status.observed_generation
    code, report, why = _report(pod)
    bench.node = (pod.get("spec") or {}).get("nodeName")
    bench.image = _image(pod)
    plan.delete_pod = True
    if code == b.EXIT_OK and report is not None and report.ok and report.figures is not None:
        f = report.figures
        bench.state, bench.message, bench.completed_at = BenchmarkState.SUCCEEDED, None, now_s
        bench.p50_ms, bench.p99_ms, bench.throughput = f.p50_ms, f.p99_ms, f.throughput
        bench.batch_size, bench.requests, bench.load_seconds = f.batch_size, f.requests, (
            f.load_seconds)
        bench.peak_memory_mib, bench.runtime = report.peak_memory_mib, report.runtime
        msg = (f"p50 {f.p50_ms:g} ms, p99 {f.p99_ms:g} ms at batch 1; {f.throughput:g} "
               f"samples/s at batch {f.batch_size}; load {f.load_seconds:g} s")
        set_condition(status.conditions, c.BENCHMARKED, True, c.REASON_BENCHMARK_SUCCEEDED,
                      msg, gen, now_s)
        plan.events.append(Event("Normal", c.REASON_BENCHMARK_SUCCEEDED, msg))
        return
    detail = (report.message if report is not None and report.message else why) or "no report"
    bench.failures += 1
    msg = f"exit {code}: {detail}"[:900]
    if code == b.EXIT_UNSUPPORTED:
        _fail(plan, status, c.REASON_BENCHMARK_UNSUPPORTED, msg, now_s)
    elif bench.failures >= config.max_attempts:
        _fail(plan, status, c.REASON_BENCHMARK_FAILED,
              f"{bench.failures} benchmark pods failed, the last with {msg}", now_s)
    else:
        wait = benchmark_backoff(bench.failures)
        bench.state, bench.message, bench.completed_at = BenchmarkState.RETRYING, msg, now_s
        retry = f"benchmark pod failed ({msg}); try {bench.failures + 1} of " \
                f"{config.max_attempts} in {wait:.0f}s"
        _unknown(status, c.REASON_BENCHMARK_RETRYING, retry, now_s)
        plan.events.append(Event("Warning", c.REASON_BENCHMARK_RETRYING, retry))
        plan.retry_after = wait


def plan_benchmark(
    status: ModelVersionStatus,
    spec: ModelVersionSpec,
    pod: dict[str, Any] | None,
    config: BenchmarkConfig,
    now: datetime,
) -> BenchmarkPlan:
    """What to do about the benchmark of a Ready version; ``pod`` is its benchmark pod
    (controlled by the version) if one exists. Changes ``status.benchmark`` and the
    Benchmarked condition only."""
    plan = BenchmarkPlan()
    uri, sha = spec.artifact.uri, spec.artifact.sha256
    prev = status.benchmark if status.benchmark and (
        status.benchmark.uri, status.benchmark.sha256) == (uri, sha) else None
    gone = pod is None or bool(pod["metadata"].get("deletionTimestamp"))
    if not (config.enabled and spec.benchmark.enabled) or (prev and prev.state in FINAL):
        plan.delete_pod = not gone
        return plan
    now_s = timestamp(now)
    if spec.format == ModelFormat.PIPELINE:
        status.benchmark = BenchmarkStatus(state=BenchmarkState.RUNNING, uri=uri, sha256=sha)
        _fail(plan, status, c.REASON_BENCHMARK_UNSUPPORTED, _PIPELINE, now_s)
        return plan
    if pod is not None and gone:
        return plan  # a pod on its way out: its deletion brings the next pass
    if pod is None:
        if prev and prev.state == BenchmarkState.RETRYING and prev.completed_at:
            ended = parse_rfc3339(prev.completed_at)
            left = benchmark_backoff(prev.failures) - (now - ended).total_seconds() if ended \
                else 0.0
            if left > 0:
                plan.retry_after = left
                return plan
        failures = prev.failures if prev else 0
        status.benchmark = BenchmarkStatus(
            state=BenchmarkState.RUNNING, uri=uri, sha256=sha, failures=failures,
            started_at=now_s)
        plan.create_pod = True
        msg = f"benchmarking {uri} (try {failures + 1} of {config.max_attempts})"
        _unknown(status, c.REASON_BENCHMARK_RUNNING, msg, now_s)
        plan.events.append(Event("Normal", c.REASON_BENCHMARK_RUNNING, msg))
        return plan
    if status.benchmark is None or prev is None:
        # A pod from a status write that was lost: adopt it as the running benchmark.
        status.benchmark = BenchmarkStatus(state=BenchmarkState.RUNNING, uri=uri, sha256=sha,
                                           started_at=now_s)
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        _record(plan, status, pod, config, now)
    return plan

