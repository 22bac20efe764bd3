"""The pod status a kubelet would report, computed whole from observed container state."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ContainerView", "PodView", "now_rfc3339", "pod_phase", "pod_status"]

JSON = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerView:
    """What the agent knows about one container; ``state`` is a Kubernetes ContainerState."""

    name: str
    image: str
    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    container_id: str = ""
    will_restart: bool = True

    def as_status(self) -> JSON:
        status: JSON = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


@dataclass
class PodView:
    init: list[ContainerView]
    main: list[ContainerView]
    pod_ip: str
    host_ip: str
    start_time: str
    initialized: bool = False
    sandbox_ready: bool = False
    message: str = ""
    reason: str = ""


def pod_phase(view: PodView) -> str:
    """Pending until containers run; Succeeded/Failed once none will run again."""
    init_failed = any(
        "terminated" in c.state and c.state["terminated"]["exitCode"] != 0 and not c.will_restart
        for c in view.init
    )
    if init_failed:
        return "Failed"
    if not view.initialized:
        return "Pending"
    states = view.main
    if any("running" in c.state for c in states):
        return "Running"
    if all("terminated" in c.state and not c.will_restart for c in states):
        if all(c.state["terminated"]["exitCode"] == 0 for c in states):
            return "Succeeded"
        return "Failed"
    if any(c.restart_count > 0 or "terminated" in c.state for c in states):
        return "Running"
    return "Pending"


def _condition(kind: str, ok: bool, since: str, reason: str = "") -> JSON:
    condition: JSON = {"type": kind, "status": "True" if ok else "False",
                       "lastProbeTime": None, "lastTransitionTime": since}
    if reason and not ok:
        condition["reason"] = reason
    return condition


def pod_status(view: PodView, previous: JSON) -> JSON:
    """The ``status`` of the pod; transition times are kept from ``previous`` when unchanged."""
    phase = pod_phase(view)
    terminal = phase in ("Succeeded", "Failed")
    containers_ready = bool(view.main) and all(c.ready for c in view.main) and not terminal
    not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    wanted = [
        ("PodReadyToStartContainers", view.sandbox_ready and not terminal, ""),
        ("Initialized", view.initialized, "ContainersNotInitialized"),
        ("Ready", containers_ready, not_ready_reason),
        ("ContainersReady", containers_ready, not_ready_reason),
        ("PodScheduled", True, ""),
    ]
    old = {c["type"]: c for c in previous.get("conditions", []) or []}
    now = now_rfc3339()
    conditions = []
    for kind, ok, reason in wanted:
        flag = "True" if ok else "False"
        before = old.get(kind)
        since = before["lastTransitionTime"] if before and before["status"] == flag else now
        conditions.append(_condition(kind, ok, since or now, reason))
    # Conditions others own (DisruptionTarget from the taint manager, Kueue's
    # TerminationTarget) are kept, as the kubelet keeps them: the merge patch replaces
    # the whole list, and dropping them would hide why the pod was stopped.
    owned = {kind for kind, _, _ in wanted}
    conditions += [c for c in previous.get("conditions", []) or [] if c.get("type") not in owned]
    status: JSON = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": view.start_time,
        "containerStatuses": [c.as_status() for c in view.main],
        "qosClass": previous.get("qosClass", "BestEffort"),
    }
    if view.pod_ip:
        status["podIP"] = view.pod_ip
        status["podIPs"] = [{"ip": view.pod_ip}]
    if view.init:
        status["initContainerStatuses"] = [c.as_status() for c in view.init]
    status["message"] = view.message or None
    status["reason"] = view.reason or None
    return status
