"""TrainingJob and attempt-pod watch events -> the trainingjobs work queue."""

from __future__ import annotations

from functools import partial
from typing import Any

import kopf

from forja_api import contract
from forja_api.v1alpha1.common import GROUP, VERSION
from forja_operator.handlers.common import (
    child_pod_event,
    ensure_runtime,
    list_watched,
    runtime,
    tune_settings,
)
from forja_operator.reconcilers.trainingjob import reconcile_trainingjob
from forja_operator.workqueue import WorkQueue

QUEUE = "trainingjobs"


@kopf.on.startup()
async def start_trainingjobs(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    tune_settings(settings)
    rt = ensure_runtime(memo)
    queue = WorkQueue(QUEUE, partial(reconcile_trainingjob, rt), workers=8)
    rt.queues[QUEUE] = queue
    # Prime the caches before the first reconcile: a job must never be planned
    # against an empty pod cache (it would look as if its attempt were deleted).
    for pod in await list_watched(rt, "Pod", contract.JOB_LABEL):
        rt.job_pods.put(pod, group=pod["metadata"]["labels"][contract.JOB_LABEL])
    for job in await list_watched(rt, "TrainingJob"):
        rt.jobs.put(job)
        queue.add((job["metadata"]["namespace"], job["metadata"]["name"]))
    queue.start()
    queue.ready.set()


@kopf.on.cleanup()
async def stop_trainingjobs(memo: kopf.Memo, **_: Any) -> None:
    rt = runtime(memo)
    await rt.queues[QUEUE].stop()


@kopf.on.event(GROUP, VERSION, "trainingjobs")
async def trainingjob_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    rt = runtime(memo)
    obj = event["object"]
    key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
    if event["type"] == "DELETED":
        rt.jobs.remove(*key)
        rt.queues[QUEUE].forget(key)
        return
    rt.jobs.put(dict(obj))
    rt.queues[QUEUE].add(key)


@kopf.on.event("v1", "pods", labels={contract.JOB_LABEL: kopf.PRESENT})
async def attempt_pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    rt = runtime(memo)
    child_pod_event(rt, event, rt.job_pods, contract.JOB_LABEL, QUEUE)
