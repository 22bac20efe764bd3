"""Progress reporting: a local line each time, the annotation rate-limited."""

from __future__ import annotations

import io

from forja_trainer_tf.progress import ProgressReporter, parse_local_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_annotation_rate_limited_and_last_update_flushed() -> None:
    sent: list[str] = []
    clock, out = FakeClock(), io.StringIO()
    rep = ProgressReporter(sent.append, min_interval=5.0, clock=clock, stream=out)
    rep.report("teacher", 1, 4, {"loss": 0.5})
    clock.now += 1
    rep.report("teacher", 2, 4, {"loss": 0.4})  # within 5 s: held back
    assert len(sent) == 1
    clock.now += 5
    rep.report("teacher", 3, 4, {"loss": 0.3}, step_index=3, steps_total=9)
    assert len(sent) == 2
    clock.now += 1
    rep.report("student", 0, 5)
    rep.flush()
    assert len(sent) == 3
    lines = [parse_local_line(line) for line in out.getvalue().splitlines()]
    assert [(p["step"], p["epoch"]) for p in lines if p] == [
        ("teacher", 1), ("teacher", 2), ("teacher", 3), ("student", 0)]
    assert '"step":"teacher"' in sent[1] and '"stepIndex"' not in sent[1]
    assert '"step_index":3.0' in sent[1]


def test_api_errors_do_not_stop_training() -> None:
    def broken(_: str) -> None:
        raise RuntimeError("apiserver down")

    rep = ProgressReporter(broken, stream=io.StringIO())
    rep.report("qat", 1, 2)  # no exception
