from __future__ import annotations

from forja_localcluster.agent.status import ContainerView, PodView, pod_phase, pod_status


def view(*containers: ContainerView, initialized: bool = True) -> PodView:
    return PodView(init=[], main=list(containers), pod_ip="10.244.0.2",
                   host_ip="10.244.0.1", start_time="2026-01-01T00:00:00Z",
                   initialized=initialized, sandbox_ready=True)


def terminated(code: int) -> dict[str, object]:
    return {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed"}}


def test_phase_follows_containers() -> None:
    waiting = ContainerView("a", "img")
    assert pod_phase(view(waiting)) == "Pending"
    running = ContainerView("a", "img", state={"running": {"startedAt": "t"}})
    assert pod_phase(view(running)) == "Running"
    done = ContainerView("a", "img", state=terminated(0), will_restart=False)
    assert pod_phase(view(done)) == "Succeeded"
    failed = ContainerView("a", "img", state=terminated(3), will_restart=False)
    assert pod_phase(view(done, failed)) == "Failed"
    backing_off = ContainerView("a", "img", state={"waiting": {"reason": "CrashLoopBackOff"}},
                                restart_count=1)
    assert pod_phase(view(backing_off)) == "Running"


def test_ready_conditions_and_transition_times_kept() -> None:
    ready = ContainerView("a", "img", state={"running": {"startedAt": "t"}}, ready=True)
    first = pod_status(view(ready), {})
    conditions = {c["type"]: c for c in first["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["ContainersReady"]["status"] == "True"
    assert first["podIP"] == "10.244.0.2"
    previous = {"conditions": [{**c, "lastTransitionTime": "earlier"}
                               for c in first["conditions"]]}
    again = pod_status(view(ready), previous)
    assert all(c["lastTransitionTime"] == "earlier" for c in again["conditions"])


def test_completed_pod_is_not_ready_with_reason() -> None:
    done = ContainerView("a", "img", state=terminated(0), will_restart=False)
    conditions = {c["type"]: c for c in pod_status(view(done), {})["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "PodCompleted"


def test_conditions_others_own_are_kept() -> None:
    # Kueue sets TerminationTarget before deleting a pod it stops; the agent's own
    # report (a merge patch that replaces the list) must not drop it.
    stopped = {"type": "TerminationTarget", "status": "True", "reason": "WorkloadEvicted"}
    done = ContainerView("a", "img", state=terminated(143), will_restart=False)
    previous = {"conditions": [stopped, {"type": "Ready", "status": "True",
                                         "lastTransitionTime": "t"}]}
    conditions = pod_status(view(done), previous)["conditions"]
    assert stopped in conditions
    assert [c["type"] for c in conditions].count("Ready") == 1
