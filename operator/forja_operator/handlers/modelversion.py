"""ModelVersion events and its pods' (verify, benchmark) -> the modelversions and models
queues."""

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
from forja_operator.reconcilers.modelversion import reconcile_model, reconcile_modelversion
from forja_operator.workqueue import WorkQueue

VERSIONS, MODELS = "modelversions", "models"


@kopf.on.startup()
async def start_modelversions(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    tune_settings(settings)
    rt = ensure_runtime(memo)
    versions = WorkQueue(VERSIONS, partial(reconcile_modelversion, rt), workers=4)
    # One worker: alias moves of one model must not interleave with another pass.
    models = WorkQueue(MODELS, partial(reconcile_model, rt), workers=1)
    rt.queues[VERSIONS], rt.queues[MODELS] = versions, models
    for pod in await list_watched(rt, "Pod", contract.VERSION_LABEL):
        rt.verify_pods.put(pod, group=pod["metadata"]["labels"][contract.VERSION_LABEL])
    for mv in await list_watched(rt, "ModelVersion"):
        rt.versions.put(mv, group=mv["spec"]["model"])
        versions.add((mv["metadata"]["namespace"], mv["metadata"]["name"]))
    for q in (versions, models):
        q.start()
        q.ready.set()


@kopf.on.cleanup()
async def stop_modelversions(memo: kopf.Memo, **_: Any) -> None:
    rt = runtime(memo)
    for name in (VERSIONS, MODELS):
        await rt.queues[name].stop()


@kopf.on.event(GROUP, VERSION, "modelversions")
async def modelversion_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    rt = runtime(memo)
    obj = event["object"]
    meta = obj["metadata"]
    key = (meta["namespace"], meta["name"])
    model = obj.get("spec", {}).get("model", "")
    if event["type"] == "DELETED":
        rt.versions.remove(*key)
        rt.queues[VERSIONS].forget(key)
    else:
        rt.versions.put(dict(obj), group=model)
        rt.queues[VERSIONS].add(key)
    rt.queues[MODELS].add((meta["namespace"], model))


@kopf.on.event("v1", "pods", labels={contract.VERSION_LABEL: kopf.PRESENT})
async def verify_pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    rt = runtime(memo)
    child_pod_event(rt, event, rt.verify_pods, contract.VERSION_LABEL, VERSIONS)
