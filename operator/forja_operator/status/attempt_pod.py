"""What one attempt pod says, read once: phase, why it ended, its Result and Progress. Pure.

The pods of a multi-worker attempt are read the same way, then merged by
:func:`gang_view` into one view of the attempt, so the planner's rules read a gang
as they read a single pod: it ends when rank 0 ends or as soon as any worker ends
otherwise (or is gone), with that worker's reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from forja_api import conditions as c
from forja_api import contract
from forja_operator.builders.attempt import OVERRIDES_ANNOTATION, RESUME_ANNOTATION, worker_name
from forja_operator.controller.pods import container_state, pod_conditions

__all__ = ["DISRUPTION_REASONS", "PodView", "classify_pod", "gang_view"]

TRAINER_CONTAINER = "trainer"

NODE_LOST_DISRUPTION = "DeletionByTaintManager"

DISRUPTION_REASONS = {
    "PreemptionByScheduler",
    "PreemptionByKubeScheduler",
    "DeletionByTaintManager",
    "EvictionByEvictionAPI",
    "DeletionByPodGC",
    "TerminationByKubelet",
}


@dataclass(frozen=True)
class PodView:
    """What one attempt pod says, read once."""

    index: int
    name: str
    phase: str  # Pending Running Succeeded Failed Unknown
    terminating: bool
    start_time: str | None
    end_time: str | None
    reason: str | None
    exit_code: int | None
    message: str | None
    result: contract.Result | None
    progress: contract.Progress | None
    overrides: dict[str, Any]
    resumed_from: str | None
    unschedulable: str | None
    """The scheduler's message while the pod cannot be placed."""
    lost: bool = False
    """Evicted from a node that stopped reporting: no kubelet will ever end it, so it
    counts as ended although its phase stays Running (or Pending) and it stays
    Terminating until the node returns or is deleted."""
    rank: int | None = None
    """Its rank in a multi-worker attempt (None for a single-pod attempt)."""
    world_size: int = 1
    node: str | None = None
    members: tuple[PodView, ...] = ()
    """For a gang's merged view: the workers' own views, by rank."""
    missing: tuple[str, ...] = ()
    """For a gang's merged view: the workers whose pods are gone."""
    gates: tuple[str, ...] = ()
    """Scheduling gates still on the (unbound) pod, e.g. Kueue's until it admits the
    attempt: the scheduler will not place it, and nothing is wrong."""

    @property
    def ended(self) -> bool:
        return self.lost or self.phase in ("Succeeded", "Failed")

    def live_pods(self) -> list[str]:
        """The pods of this attempt that have not ended (the gang's, or this one)."""
        pods = self.members or (self,)
        return [p.name for p in pods if not p.ended]


def _progress(ann: dict[str, Any]) -> contract.Progress | None:
    raw = ann.get(contract.PROGRESS_ANNOTATION)
    if not raw:
        return None
    try:
        return contract.Progress.model_validate_json(raw)
    except ValueError:
        return None


def _overrides(ann: dict[str, Any]) -> dict[str, Any]:
    try:
        overrides = json.loads(ann.get(OVERRIDES_ANNOTATION) or "{}")
    except ValueError:
        return {}
    return overrides if isinstance(overrides, dict) else {}


def _unschedulable(phase: str, conds: dict[str, dict[str, Any]]) -> str | None:
    """The scheduler's message while a pending pod cannot be placed."""
    sched = conds.get("PodScheduled", {})
    if phase == "Pending" and (sched.get("status"), sched.get("reason")) == (
        "False",
        "Unschedulable",
    ):
        return str(sched.get("message") or "no node fits the pod")
    return None


def _lost(pod: dict[str, Any]) -> str | None:
    """Why a pod that has not ended will never end by its kubelet: evicted by the taint
    manager from a node that is NotReady or unreachable. None otherwise."""
    if not pod["metadata"].get("deletionTimestamp"):
        return None
    disruption = pod_conditions(pod).get("DisruptionTarget", {})
    if (disruption.get("status"), disruption.get("reason")) != ("True", NODE_LOST_DISRUPTION):
        return None
    node = pod.get("spec", {}).get("nodeName") or "its node"
    detail = disruption.get("message") or "taint manager eviction"
    return f"{node} stopped reporting and the pod was evicted ({detail})"


def _ending(
    pod: dict[str, Any], terminated: dict[str, Any], result: contract.Result | None
) -> tuple[str, str | None]:
    """Why an ended pod ended, and the message that says so."""
    meta, status = pod["metadata"], pod.get("status", {})
    exit_code = terminated.get("exitCode")
    message = result.message if result else None
    disruption = pod_conditions(pod).get("DisruptionTarget", {})
    disrupted = (
        disruption.get("status") == "True" and disruption.get("reason") in DISRUPTION_REASONS
    )
    if status.get("reason") == "Evicted":
        return c.REASON_EVICTED, status.get("message") or message
    if status.get("reason") == "DeadlineExceeded":
        return c.REASON_DEADLINE_EXCEEDED, status.get("message") or message
    if terminated.get("reason") == "OOMKilled":
        return c.REASON_OOM_KILLED, message
    if exit_code == 0 and status.get("phase") == "Succeeded":
        return c.REASON_COMPLETED, message
    if exit_code is not None and contract.is_permanent_exit(exit_code):
        own = result.reason if result and result.reason else None
        return own or contract.PERMANENT_REASONS[exit_code], message
    stopped = pod_conditions(pod).get(contract.KUEUE_TERMINATION_TARGET, {})
    if stopped.get("status") == "True":
        # Kueue stopped the pod (its Workload was evicted or preempted) and deleted it.
        return c.REASON_PREEMPTED, stopped.get("message") or stopped.get("reason") or message
    if disrupted or (meta.get("deletionTimestamp") and exit_code in (137, 143)):
        return c.REASON_PREEMPTED, disruption.get("message") or message
    return c.REASON_ERROR, message


def classify_pod(pod: dict[str, Any]) -> PodView:
    """Read an attempt pod: phase, why it ended, its Result and Progress."""
    meta, status = pod["metadata"], pod.get("status", {})
    labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
    phase = status.get("phase") or "Pending"
    terminated = container_state(pod, TRAINER_CONTAINER).get("terminated") or {}
    term_message = terminated.get("message")
    result = contract.Result.from_termination_message(term_message)
    reason: str | None = None
    message: str | None = result.message if result else None
    lost = None if phase in ("Succeeded", "Failed") else _lost(pod)
    if phase in ("Succeeded", "Failed"):
        reason, message = _ending(pod, terminated, result)
        if message is None and term_message and result is None:
            message = term_message[-1024:]
    elif lost is not None:
        reason, message = c.REASON_NODE_LOST, lost
    rank = labels.get(contract.RANK_LABEL)
    return PodView(
        rank=int(rank) if rank is not None and rank.isdigit() else None,
        world_size=int(labels.get(contract.WORLD_SIZE_LABEL, "1") or 1),
        node=pod.get("spec", {}).get("nodeName"),
        index=int(labels.get(contract.ATTEMPT_LABEL, "0")),
        name=meta["name"],
        phase=phase,
        terminating=bool(meta.get("deletionTimestamp")),
        start_time=status.get("startTime") or meta.get("creationTimestamp"),
        end_time=terminated.get("finishedAt"),
        reason=reason,
        exit_code=terminated.get("exitCode"),
        message=message,
        result=result,
        progress=_progress(ann),
        overrides=_overrides(ann),
        resumed_from=ann.get(RESUME_ANNOTATION),
        unschedulable=_unschedulable(phase, pod_conditions(pod)),
        lost=lost is not None,
        gates=_gates(pod, phase),
    )


def _gates(pod: dict[str, Any], phase: str) -> tuple[str, ...]:
    """The scheduling gates holding a pending, unbound pod back."""
    spec = pod.get("spec") or {}
    if phase != "Pending" or spec.get("nodeName"):
        return ()
    return tuple(str(g.get("name")) for g in spec.get("schedulingGates") or [] if g.get("name"))


def _first_failure(members: list[PodView]) -> PodView | None:
    """The worker whose ending ended the gang: the earliest to end on its own.

    Workers the operator stopped afterwards end later (and go): they never hide the
    first reason.
    """
    failed = [m for m in members if m.ended and m.reason != c.REASON_COMPLETED]
    if not failed:
        return None
    return min(failed, key=lambda m: (m.terminating, m.end_time or "~", m.rank or 0))


def gang_view(job: str, index: int, members: list[PodView]) -> PodView:
    """One view of a multi-worker attempt from its workers' views (rank labels set).

    Ended when rank 0 completed (its Result is the attempt's), or when any worker
    ended otherwise or is gone (that worker's reason: OOMKilled, Evicted, Error,
    NodeLost, or Preempted for a deleted pod). Progress and Result are rank 0's.
    """
    by_rank = {m.rank: m for m in members if m.rank is not None}
    world = max([m.world_size for m in members] + [len(by_rank)])
    names = [worker_name(job, index, r) for r in range(world)]
    missing = tuple(names[r] for r in range(world) if r not in by_rank)
    ordered = tuple(by_rank[r] for r in sorted(by_rank))
    head = by_rank.get(0)
    failure = _first_failure(list(ordered))
    phase, reason, exit_code, message, end_time = "Pending", None, None, None, None
    if head is not None and head.ended and head.reason == c.REASON_COMPLETED:
        phase, reason, exit_code = "Succeeded", head.reason, head.exit_code
        message, end_time = head.message, head.end_time
    elif failure is not None:
        phase, reason, exit_code = "Failed", failure.reason, failure.exit_code
        end_time = failure.end_time
        message = f"worker {failure.name} (rank {failure.rank}): {failure.message or reason}"
    elif missing:
        phase, reason = "Failed", c.REASON_PREEMPTED
        message = f"worker pod {missing[0]} was deleted before it finished"
    elif head is not None and head.phase == "Running" and all(
        m.phase in ("Running", "Succeeded") for m in ordered
    ):
        phase = "Running"  # a worker may finish its share before rank 0 publishes
    any_member = head or ordered[0]
    return PodView(
        index=index,
        name=names[0],
        phase=phase,
        terminating=any(m.terminating for m in ordered),
        start_time=head.start_time if head else any_member.start_time,
        end_time=end_time,
        reason=reason,
        exit_code=exit_code,
        message=message,
        result=head.result if head else None,
        progress=head.progress if head else None,
        overrides=any_member.overrides,
        resumed_from=any_member.resumed_from,
        unschedulable=next((m.unschedulable for m in ordered if m.unschedulable), None),
        rank=0,
        world_size=world,
        node=head.node if head else None,
        members=ordered,
        missing=missing,
        gates=tuple(dict.fromkeys(g for m in ordered for g in m.gates)),
    )
