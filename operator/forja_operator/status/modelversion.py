"""ModelVersion status from its verify pod, and a model's `latest` and aliases. Pure."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from forja_api import conditions as c
from forja_api import semver
from forja_api.contract import ExitCode
from forja_api.v1alpha1.common import Condition
from forja_api.v1alpha1.modelversion import (
    ModelVersionPhase,
    ModelVersionSpec,
    ModelVersionStatus,
    headline_metric,
)
from forja_operator.builders.benchmark import benchmark_pod_name
from forja_operator.builders.modelversion import verify_pod_name
from forja_operator.config import BenchmarkConfig
from forja_operator.controller.clock import parse_rfc3339, timestamp
from forja_operator.controller.conditions import set_condition
from forja_operator.controller.events import Event
from forja_operator.controller.ownership import awaiting_collection, is_controlled_by
from forja_operator.controller.pods import container_state
from forja_operator.status.benchmark import plan_benchmark

__all__ = [
    "ALIASES_ANNOTATION",
    "AliasPlan",
    "VersionPlan",
    "plan_model_aliases",
    "plan_modelversion",
    "verify_backoff",
]

ALIASES_ANNOTATION = "forja.dev/aliases-held"
"""The aliases a Ready version held at the last reconcile: an alias not in it was just added."""


# The verdicts of the verify program the verify pod runs (codes of the contract).
VERDICTS: dict[int, str] = {
    ExitCode.CHECKSUM_MISMATCH: c.REASON_CHECKSUM_MISMATCH,
    ExitCode.ARTIFACT_NOT_FOUND: c.REASON_ARTIFACT_NOT_FOUND,
}
VERIFY_BACKOFF_SECONDS = 10.0
"""The wait after the first verify pod that ended without a verdict; doubles per failure."""
VERIFY_BACKOFF_CAP_SECONDS = 300.0
_FAILURES = re.compile(r"verify pod failed (\d+) times? in a row")
"""The count of failed checks rides in the ArtifactVerified (Unknown) message: a status
field would need a CRD change; the condition resets with the (uri, sha256) it names."""


def verify_backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` verify pods in a row ended without a verdict."""
    if failures <= 0:
        return 0.0
    return float(min(VERIFY_BACKOFF_SECONDS * 2 ** (failures - 1), VERIFY_BACKOFF_CAP_SECONDS))


@dataclass
class VersionPlan:
    status: ModelVersionStatus
    retry_after: float | None = None
    create_verify_pod: bool = False
    create_benchmark_pod: bool = False
    delete_pods: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def _verified_message(uri: str, sha256: str) -> str:
    return f"sha256 {sha256} of {uri} verified"


@dataclass(frozen=True)
class _Verify:
    """The one verification this version needs: its pod's name and the verdict's prefix."""

    pod: str
    uri: str
    prefix: str
    """The ArtifactVerified message names (uri, sha256) so a decided verdict is not re-run."""


def _failures_so_far(verified: Condition | None, check: _Verify) -> int:
    """Failed checks of this (uri, sha256) in a row, from the last ArtifactVerified."""
    if verified is None or verified.status != "Unknown":
        return 0
    if not verified.message.startswith(check.prefix):
        return 0
    found = _FAILURES.search(verified.message)
    return int(found.group(1)) if found else 1


def plan_modelversion(
    mv: dict[str, Any],
    pods: list[dict[str, Any]],
    now: datetime,
    benchmark: BenchmarkConfig | None = None,
) -> VersionPlan:
    """Verify the artifact once per (uri, sha256): Pending -> Verifying -> Ready | Failed;
    then, Ready, benchmark it once (``benchmark``: the operator's settings, default on)."""
    meta = mv["metadata"]
    spec = ModelVersionSpec.model_validate(mv["spec"])
    prev = ModelVersionStatus.model_validate(mv.get("status") or {})
    status = prev.model_copy(deep=True)
    status.observed_generation = meta.get("generation")
    status.headline_metric = headline_metric(spec)
    plan = VersionPlan(status=status)
    uri, sha = spec.artifact.uri, spec.artifact.sha256
    check = _Verify(verify_pod_name(meta["name"], uri, sha), uri, _verified_message(uri, sha))
    stranger = next(
        (
            p
            for p in pods
            if p["metadata"]["name"] == check.pod
            and not is_controlled_by(p, mv)
            and not awaiting_collection(p, mv)
        ),
        None,
    )
    # Only pods this version controls are read or deleted; a pod that merely has
    # the verify pod's name proves nothing.
    pods = [p for p in pods if is_controlled_by(p, mv)]
    live = {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
    by_name = {p["metadata"]["name"]: p for p in pods}
    bench_pod = benchmark_pod_name(meta["name"], uri, sha)
    plan.delete_pods = [n for n in live if n not in (check.pod, bench_pod)]
    verified = next((x for x in status.conditions if x.type == c.ARTIFACT_VERIFIED), None)
    decided = verified is not None and verified.message.startswith(check.prefix)
    if decided and status.phase == ModelVersionPhase.READY:
        if check.pod in live:
            plan.delete_pods.append(check.pod)
        # Only a Ready version is benchmarked, and nothing of it feeds back into Ready.
        bench = plan_benchmark(
            status, spec, by_name.get(bench_pod), benchmark or BenchmarkConfig(), now
        )
        plan.create_benchmark_pod = bench.create_pod
        if bench.delete_pod:
            plan.delete_pods.append(bench_pod)
        plan.retry_after, plan.events = bench.retry_after, bench.events
        return plan
    if bench_pod in live:
        plan.delete_pods.append(bench_pod)
    if decided and status.phase == ModelVersionPhase.FAILED:
        if check.pod in live:
            plan.delete_pods.append(check.pod)
        return plan
    if prev.phase == ModelVersionPhase.READY:
        # The CRD refuses artifact changes on a Ready version; if one got through
        # (CRD without CEL), the new artifact is not trusted until verified.
        plan.events.append(
            Event(
                "Warning", "ArtifactChanged", "artifact of a Ready version changed; verifying again"
            )
        )
    pod = by_name.get(check.pod)
    if stranger is not None:
        _refuse_stranger(plan, check, now)
    elif pod is None:
        _start_verify(plan, prev, verified, check, now)
    elif (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
        status.phase = ModelVersionPhase.VERIFYING
    else:
        _record_verdict(plan, spec, pod, check, now, prev=verified)
    return plan


def _start_verify(
    plan: VersionPlan,
    prev: ModelVersionStatus,
    verified: Condition | None,
    check: _Verify,
    now: datetime,
) -> None:
    # After checks that ended without a verdict, wait (10 s, doubling, at most 5 min)
    # before the next; the pod's deletion itself triggers a reconcile, so the count
    # and the time of the last failure are kept in status.
    failures = _failures_so_far(verified, check)
    crashed = parse_rfc3339(verified.last_transition_time) if verified else None
    if failures and crashed is not None:
        left = verify_backoff(failures) - (now - crashed).total_seconds()
        if left > 0:
            plan.retry_after = left
            return
    plan.create_verify_pod = True
    plan.status.phase = ModelVersionPhase.VERIFYING
    if prev.phase != ModelVersionPhase.VERIFYING:
        plan.events.append(Event("Normal", "Verifying", f"verifying sha256 of {check.uri}"))


def _refuse_stranger(plan: VersionPlan, check: _Verify, now: datetime) -> None:
    """The verify pod's name is held by a pod this version does not control: Failed."""
    status = plan.status
    now_s, gen = timestamp(now), status.observed_generation
    msg = (
        f"pod {check.pod} has this version's verify pod name but is not controlled by it "
        "(no owner reference to this ModelVersion's uid): its verdict is not trusted. "
        "Delete that pod and re-create the ModelVersion."
    )
    status.phase = ModelVersionPhase.FAILED
    status.message = msg
    reason = c.REASON_POD_NOT_OWNED
    failed = f"{check.prefix}: failed: {msg}"
    set_condition(status.conditions, c.ARTIFACT_VERIFIED, False, reason, failed, gen, now_s)
    set_condition(status.conditions, c.READY, False, reason, msg, gen, now_s)
    plan.events.append(Event("Warning", reason, msg))


def _verify_outcome(pod: dict[str, Any]) -> tuple[int | None, str]:
    """The verify container's exit code and the message it left."""
    term = container_state(pod).get("terminated") or {}
    detail = ""
    try:
        detail = str(json.loads(term.get("message") or "{}").get("message", ""))
    except ValueError:
        detail = (term.get("message") or "")[-300:]
    return term.get("exitCode"), detail


def _record_verdict(
    plan: VersionPlan,
    spec: ModelVersionSpec,
    pod: dict[str, Any],
    check: _Verify,
    now: datetime,
    *,
    prev: Condition | None,
) -> None:
    status = plan.status
    now_s = timestamp(now)
    gen = status.observed_generation
    code, detail = _verify_outcome(pod)
    if code == 0:
        status.phase = ModelVersionPhase.READY
        status.verified_at = now_s
        status.message = None
        ok = c.REASON_CHECKSUM_MATCH
        set_condition(status.conditions, c.ARTIFACT_VERIFIED, True, ok, check.prefix, gen, now_s)
        set_condition(status.conditions, c.READY, True, ok, "artifact verified", gen, now_s)
        plan.events.append(
            Event("Normal", c.READY, f"{spec.model} {spec.version} is Ready ({check.prefix})")
        )
    elif code not in VERDICTS:
        # The check itself failed (store unreachable, a crash): no verdict, try again
        # after a backoff, and say why and when in the version.
        failures = _failures_so_far(prev, check) + 1
        wait = verify_backoff(failures)
        at = timestamp(now + timedelta(seconds=wait))
        times = "time" if failures == 1 else "times"
        why = f"verify pod failed {failures} {times} in a row (exit {code}): {detail}"
        status.phase = ModelVersionPhase.VERIFYING
        status.message = f"{why[:900]}; next try in {wait:.0f}s, at {at}"
        plan.events.append(Event("Warning", c.REASON_VERIFY_ERROR, status.message))
        status.conditions = [x for x in status.conditions if x.type != c.ARTIFACT_VERIFIED]
        status.conditions.append(
            Condition(
                type=c.ARTIFACT_VERIFIED,
                status="Unknown",
                reason=c.REASON_VERIFY_ERROR,
                message=f"{check.prefix}: {status.message}",
                last_transition_time=now_s,
                observed_generation=gen,
            )
        )
        plan.retry_after = wait
    else:
        reason = VERDICTS[code]
        msg = detail or f"verify pod exited {code}"
        status.phase = ModelVersionPhase.FAILED
        status.message = msg
        failed = f"{check.prefix}: failed: {msg}"
        set_condition(status.conditions, c.ARTIFACT_VERIFIED, False, reason, failed, gen, now_s)
        set_condition(status.conditions, c.READY, False, reason, msg, gen, now_s)
        plan.events.append(Event("Warning", reason, msg))
    plan.delete_pods.append(check.pod)


@dataclass
class AliasPlan:
    latest: dict[str, bool] = field(default_factory=dict)
    """Version name -> new status.latest, only where it changes."""
    aliases: dict[str, list[str]] = field(default_factory=dict)
    """Version name -> new spec.aliases, only where an alias is taken away."""
    held: dict[str, list[str]] = field(default_factory=dict)
    """Version name -> new aliases-held annotation, only where it changes."""
    events: list[tuple[str, Event]] = field(default_factory=list)


def _held(mv: dict[str, Any]) -> list[str]:
    raw = (mv["metadata"].get("annotations") or {}).get(ALIASES_ANNOTATION)
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        value = []
    return [str(x) for x in value] if isinstance(value, list) else []


Ranked = list[tuple[semver.Version, dict[str, Any]]]


def _ready_versions(versions: list[dict[str, Any]]) -> Ranked:
    """Ready, not deleting, with a readable version."""
    ready: Ranked = []
    for mv in versions:
        phase = (mv.get("status") or {}).get("phase")
        if phase != ModelVersionPhase.READY or mv["metadata"].get("deletionTimestamp"):
            continue
        try:
            ready.append((semver.parse(mv["spec"]["version"]), mv))
        except (semver.SemverError, KeyError):
            continue
    return ready


def _move_alias(plan: AliasPlan, alias: str, holders: Ranked, taken: dict[str, list[str]]) -> None:
    """Leave ``alias`` on one of its holders: the one that did not hold it before, else the
    higher version; the others lose it (``taken``: version name -> aliases left)."""
    winner = max(holders, key=lambda h: (alias not in _held(h[1]), h[0]))[1]
    for _, mv in holders:
        if mv is winner:
            continue
        name = mv["metadata"]["name"]
        current = taken.get(name, list(mv["spec"].get("aliases") or []))
        taken[name] = [a for a in current if a != alias]
        to, frm = winner["spec"]["version"], mv["spec"]["version"]
        plan.events.append(
            (name, Event("Normal", c.REASON_ALIAS_MOVED, f"alias {alias} moved from {frm} to {to}"))
        )
        plan.events.append(
            (
                winner["metadata"]["name"],
                Event("Normal", c.REASON_ALIAS_MOVED, f"alias {alias} now on {to}"),
            )
        )


def own_latest(
    mv: dict[str, Any], new_status: dict[str, Any], versions: list[dict[str, Any]]
) -> bool:
    """What ``mv``'s status.latest is once ``new_status`` is written, among its model's
    ``versions``: the version that becomes Ready carries `latest` in that same write, so
    no reader sees the model's newest Ready version without it. The version it takes
    `latest` from loses it in the model's next pass."""
    name = mv["metadata"]["name"]
    after = [v for v in versions if v["metadata"]["name"] != name]
    after.append({**mv, "status": new_status})
    return plan_model_aliases(after).latest.get(name, bool(new_status.get("latest")))


def plan_model_aliases(versions: list[dict[str, Any]]) -> AliasPlan:
    """`latest` on the highest Ready version; each alias on one Ready version.

    When two Ready versions carry an alias, the one that did not hold it before
    (the newly assigned one) keeps it; if both are new or both old, the higher version.
    """
    plan = AliasPlan()
    ready = _ready_versions(versions)
    top = max(ready, key=lambda x: x[0])[1]["metadata"]["name"] if ready else None
    for mv in versions:
        name = mv["metadata"]["name"]
        want = name == top
        if bool((mv.get("status") or {}).get("latest")) != want:
            plan.latest[name] = want
    holders: dict[str, Ranked] = {}
    for v, mv in ready:
        for alias in mv["spec"].get("aliases") or []:
            holders.setdefault(alias, []).append((v, mv))
    taken: dict[str, list[str]] = {}
    for alias, hs in holders.items():
        if len(hs) >= 2:
            _move_alias(plan, alias, hs, taken)
    plan.aliases = taken
    for _, mv in ready:
        name = mv["metadata"]["name"]
        now_held = sorted(taken.get(name, mv["spec"].get("aliases") or []))
        if sorted(_held(mv)) != now_held:
            plan.held[name] = now_held
    return plan
