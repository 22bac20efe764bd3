from forja_localcluster.agent.probes import ProbeState


def test_startup_probe_tolerates_failures_until_the_threshold() -> None:
    state = ProbeState({"periodSeconds": 2, "failureThreshold": 3}, False)
    state.start(0.0)
    for i in range(2):
        state.record(False, float(i))
        assert not state.exhausted
    state.record(False, 3.0)
    assert state.exhausted


def test_a_success_resets_the_failure_count() -> None:
    state = ProbeState({"failureThreshold": 2}, False)
    state.start(0.0)
    state.record(False, 0.0)
    assert state.record(True, 1.0)
    state.record(False, 2.0)
    assert not state.exhausted
