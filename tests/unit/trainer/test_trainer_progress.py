"""Progress reporting: rate-limited pod annotation patches that never break training."""

from __future__ import annotations

import io
import json
import threading
import time

from forja_api.contract import PROGRESS_ANNOTATION, Progress
from forja_trainer.progress import ConsoleSink, PodAnnotationSink, ProgressReporter


def test_annotation_is_rate_limited_and_sends_the_newest() -> None:
    sent: list[dict[str, str]] = []
    lock = threading.Lock()

    def patch(annotations: dict[str, str]) -> None:
        with lock:
            sent.append(annotations)

    # An interval far longer than the test: timing on a loaded machine cannot matter.
    sink = PodAnnotationSink(patch, min_interval=600)
    sink.send(Progress(epoch=1, total_epochs=20))
    deadline = time.monotonic() + 10
    while not sent and time.monotonic() < deadline:
        time.sleep(0.01)
    for epoch in range(2, 21):
        sink.send(Progress(epoch=epoch, total_epochs=20))
    time.sleep(0.1)
    with lock:
        assert len(sent) == 1  # the first went out at once, the rest wait out the interval
    sink.close()
    assert len(sent) == 2
    last = json.loads(sent[-1][PROGRESS_ANNOTATION])
    assert last["epoch"] == 20 and last["totalEpochs"] == 20


def test_patch_failures_are_swallowed() -> None:
    def patch(annotations: dict[str, str]) -> None:
        raise ConnectionError("api server down")

    sink = PodAnnotationSink(patch, min_interval=0.0)
    reporter = ProgressReporter([sink])
    reporter.report(Progress(epoch=1, total_epochs=2))
    reporter.close()
    assert sink.failures == 1 and sink.sent == 0


def test_console_line_shows_percent_and_metrics() -> None:
    out = io.StringIO()
    ConsoleSink(out).send(Progress(epoch=3, total_epochs=4, metrics={"val_loss": 0.25}))
    assert "epoch 3/4" in out.getvalue() and " 75%" in out.getvalue()
    assert "val_loss=0.25" in out.getvalue()
