"""ModelVersion status from its verify pod, and a model's `latest` and aliases. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from forja_api import conditions as c
from forja_api import semver
from forja_api.v1alpha1.common import Condition
from forja_api.v1alpha1.modelversion import (
    ModelVersionPhase,
    ModelVersionSpec,
    ModelVersionStatus,
    headline_metric,
)
from forja_api.verify import EXIT_MISMATCH, EXIT_NOT_FOUND
from forja_operator.builders.modelversion import verify_pod_name
from forja_operator.status.trainingjob import Event, _ts, set_condition

__all__ = [
    "ALIASES_ANNOTATION",
    "AliasPlan",
    "VersionPlan",
    "plan_model_aliases",
    "plan_modelversion",
]

ALIASES_ANNOTATION = "forja.dev/aliases-held"
"""The aliases a Ready version held at the last reconcile: an alias not in it was just added."""


VERDICTS = {EXIT_MISMATCH: c.REASON_CHECKSUM_MISMATCH, EXIT_NOT_FOUND: c.REASON_ARTIFACT_NOT_FOUND}
VERIFY_RETRY_SECONDS = 15.0


@dataclass
class VersionPlan:
    status: ModelVersionStatus
    retry_after: float | None = None
    create_verify_pod: bool = False
    delete_pods: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def _verified_message(uri: str, sha256: str) -> str:
    return f"sha256 {sha256} of {uri} verified"


def plan_modelversion(mv: dict[str, Any], pods: list[dict[str, Any]], now: datetime) -> VersionPlan:
    """Verify the artifact once per (uri, sha256): Pending -> Verifying -> Ready | Failed."""
    meta = mv["metadata"]
    spec = ModelVersionSpec.model_validate(mv["spec"])
    prev = ModelVersionStatus.model_validate(mv.get("status") or {})
    status = prev.model_copy(deep=True)
    status.observed_generation = meta.get("generation")
    status.headline_metric = headline_metric(spec)
    plan = VersionPlan(status=status)
    now_s = _ts(now)
    uri, sha = spec.artifact.uri, spec.artifact.sha256
    want = verify_pod_name(meta["name"], uri, sha)
    by_name = {p["metadata"]["name"]: p for p in pods}
    plan.delete_pods = [
        n for n, p in by_name.items() if n != want and not p["metadata"].get("deletionTimestamp")
    ]
    verified = next((x for x in status.conditions if x.type == c.ARTIFACT_VERIFIED), None)
    decided = verified is not None and verified.message.startswith(_verified_message(uri, sha))
    if decided and status.phase in (ModelVersionPhase.READY, ModelVersionPhase.FAILED):
        if want in by_name and not by_name[want]["metadata"].get("deletionTimestamp"):
            plan.delete_pods.append(want)
        return plan
    if prev.phase == ModelVersionPhase.READY:
        # The CRD refuses artifact changes on a Ready version; if one got through
        # (CRD without CEL), the new artifact is not trusted until verified.
        plan.events.append(
            Event(
                "Warning", "ArtifactChanged", "artifact of a Ready version changed; verifying again"
            )
        )
    pod = by_name.get(want)
    if pod is None:
        # After a check that crashed, wait before the next one (the pod's deletion
        # itself triggers a reconcile, so the wait is kept in status).
        if verified is not None and verified.status == "Unknown" and verified.last_transition_time:
            since = now - datetime.fromisoformat(
                verified.last_transition_time.replace("Z", "+00:00")
            )
            left = VERIFY_RETRY_SECONDS - since.total_seconds()
            if left > 0:
                plan.retry_after = left
                return plan
        plan.create_verify_pod = True
        status.phase = ModelVersionPhase.VERIFYING
        if prev.phase != ModelVersionPhase.VERIFYING:
            plan.events.append(Event("Normal", "Verifying", f"verifying sha256 of {uri}"))
        return plan
    pstatus = pod.get("status", {})
    if pstatus.get("phase") not in ("Succeeded", "Failed"):
        status.phase = ModelVersionPhase.VERIFYING
        return plan
    term: dict[str, Any] = {}
    for cs in pstatus.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
    code = term.get("exitCode")
    detail = ""
    try:
        detail = str(json.loads(term.get("message") or "{}").get("message", ""))
    except ValueError:
        detail = (term.get("message") or "")[-300:]
    prefix = _verified_message(uri, sha)
    if code == 0:
        status.phase = ModelVersionPhase.READY
        status.verified_at = now_s
        status.message = None
        gen = status.observed_generation
        set_condition(
            status.conditions,
            c.ARTIFACT_VERIFIED,
            True,
            c.REASON_CHECKSUM_MATCH,
            prefix,
            gen,
            now_s,
        )
        set_condition(
            status.conditions,
            c.READY,
            True,
            c.REASON_CHECKSUM_MATCH,
            "artifact verified",
            gen,
            now_s,
        )
        plan.events.append(
            Event("Normal", c.READY, f"{spec.model} {spec.version} is Ready ({prefix})")
        )
    elif code not in VERDICTS:
        # The check itself failed (store unreachable, a crash): no verdict, try again.
        status.phase = ModelVersionPhase.VERIFYING
        status.message = f"verification did not complete (exit {code}): {detail}"[:1000]
        plan.events.append(Event("Warning", "VerifyError", status.message))
        status.conditions = [x for x in status.conditions if x.type != c.ARTIFACT_VERIFIED]
        status.conditions.append(
            Condition(
                type=c.ARTIFACT_VERIFIED,
                status="Unknown",
                reason="VerifyError",
                message=status.message,
                last_transition_time=now_s,
                observed_generation=status.observed_generation,
            )
        )
        plan.delete_pods.append(want)
        plan.retry_after = VERIFY_RETRY_SECONDS
        return plan
    else:
        reason = VERDICTS[code]
        msg = detail or f"verify pod exited {code}"
        status.phase = ModelVersionPhase.FAILED
        status.message = msg
        # The message names (uri, sha256) so a decided verdict is not re-run.
        set_condition(
            status.conditions,
            c.ARTIFACT_VERIFIED,
            False,
            reason,
            f"{prefix}: failed: {msg}",
            status.observed_generation,
            now_s,
        )
        set_condition(
            status.conditions, c.READY, False, reason, msg, status.observed_generation, now_s
        )
        plan.events.append(Event("Warning", reason, msg))
    plan.delete_pods.append(want)
    return plan


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


def plan_model_aliases(versions: list[dict[str, Any]]) -> AliasPlan:
    """`latest` on the highest Ready version; each alias on one Ready version.

    When two Ready versions carry an alias, the one that did not hold it before
    (the newly assigned one) keeps it; if both are new or both old, the higher version.
    """
    plan = AliasPlan()
    ready: list[tuple[semver.Version, dict[str, Any]]] = []
    for mv in versions:
        if (mv.get("status") or {}).get("phase") != ModelVersionPhase.READY or mv["metadata"].get(
            "deletionTimestamp"
        ):
            continue
        try:
            ready.append((semver.parse(mv["spec"]["version"]), mv))
        except (semver.SemverError, KeyError):
            continue
    top = max(ready, key=lambda x: x[0])[1]["metadata"]["name"] if ready else None
    for mv in versions:
        name = mv["metadata"]["name"]
        want = name == top
        if bool((mv.get("status") or {}).get("latest")) != want:
            plan.latest[name] = want
    holders: dict[str, list[tuple[semver.Version, dict[str, Any]]]] = {}
    for v, mv in ready:
        for alias in mv["spec"].get("aliases") or []:
            holders.setdefault(alias, []).append((v, mv))
    new_aliases: dict[str, list[str]] = {}
    for alias, hs in holders.items():
        if len(hs) < 2:
            continue
        winner = max(hs, key=lambda h: (alias not in _held(h[1]), h[0]))[1]
        for _, mv in hs:
            name = mv["metadata"]["name"]
            if mv is winner:
                continue
            current = new_aliases.get(name, list(mv["spec"].get("aliases") or []))
            new_aliases[name] = [a for a in current if a != alias]
            plan.events.append(
                (
                    name,
                    Event(
                        "Normal",
                        c.REASON_ALIAS_MOVED,
                        f"alias {alias} moved from {mv['spec']['version']} "
                        f"to {winner['spec']['version']}",
                    ),
                )
            )
            plan.events.append(
                (
                    winner["metadata"]["name"],
                    Event(
                        "Normal",
                        c.REASON_ALIAS_MOVED,
                        f"alias {alias} now on {winner['spec']['version']}",
                    ),
                )
            )
    plan.aliases = new_aliases
    for _, mv in ready:
        name = mv["metadata"]["name"]
        now_held = sorted(new_aliases.get(name, mv["spec"].get("aliases") or []))
        if sorted(_held(mv)) != now_held:
            plan.held[name] = now_held
    return plan
