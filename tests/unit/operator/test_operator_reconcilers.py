"""TrainingJob and ModelVersion reconcilers against an in-memory API: apply, not just plan."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from forja_api import contract
from forja_operator.builders.benchmark import benchmark_pod_name
from forja_operator.config import OperatorConfig
from forja_operator.reconcilers.modelversion import reconcile_model, reconcile_modelversion
from forja_operator.reconcilers.trainingjob import reconcile_trainingjob
from forja_operator.runtime import Runtime
from forja_operator.workqueue import WorkQueue

from .memory_api import MemoryApi
from .operator_factories import job, ok_result, pod
from .test_operator_modelversion_status import mv, verify_pod

KEY = ("ns", "train")


def runtime() -> tuple[Runtime, MemoryApi]:
    api = MemoryApi()
    return Runtime(config=OperatorConfig(), kube=api), api


def run(rt: Runtime, reconcile: Any, key: tuple[str, str]) -> float | None:
    async def once() -> float | None:
        rt.queues.setdefault("models", WorkQueue("models", _noop))
        out = await reconcile(rt, key)
        for _ in range(3):  # let the background Event posts land
            await asyncio.sleep(0)
        return out

    return asyncio.run(once())


async def _noop(key: Any) -> None:
    return None


def store_job(rt: Runtime, api: MemoryApi, body: dict[str, Any]) -> dict[str, Any]:
    stored = api.put(copy.deepcopy(body))
    rt.jobs.put(stored)
    return stored


def events(api: MemoryApi) -> list[str]:
    return [e["reason"] for e in api.of_kind("Event").values()]


def test_a_new_job_gets_its_pod_rbac_and_one_status_patch_listing_the_attempt():
    rt, api = runtime()
    store_job(rt, api, job())
    run(rt, reconcile_trainingjob, KEY)
    assert set(api.of_kind("Pod")) == {"train-a1"}
    assert {"ServiceAccount", "Role", "RoleBinding"} <= {k for k, _, _ in api.objects}
    assert api.count("patch-status", "TrainingJob") == 1
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Pending" and status["attempts"][0]["pod"] == "train-a1"
    assert events(api) == ["Created"]
    # The cache holds what the operator wrote: the next pass creates nothing more.
    run(rt, reconcile_trainingjob, KEY)
    assert api.count("create", "Pod") == 1 and events(api) == ["Created"]


def test_a_succeeded_job_is_versioned_once():
    rt, api = runtime()
    store_job(rt, api, job())
    run(rt, reconcile_trainingjob, KEY)
    done = api.put(pod(1, "Succeeded", 0, result=ok_result()) | {"kind": "Pod"})
    rt.job_pods.put(done, group="train")
    run(rt, reconcile_trainingjob, KEY)
    versions = api.of_kind("ModelVersion")
    assert list(versions) == ["detector-v0.1.0"]
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Succeeded"
    assert (status["modelVersion"], status["version"]) == ("detector-v0.1.0", "0.1.0")
    assert "Versioned" in events(api)
    run(rt, reconcile_trainingjob, KEY)
    assert api.count("create", "ModelVersion") == 1


def test_an_explicit_version_already_taken_fails_the_job():
    rt, api = runtime()
    api.put(mv("detector-v1.0.0", "1.0.0") | {"kind": "ModelVersion"})
    store_job(rt, api, job(versioning={"version": "1.0.0"}))
    run(rt, reconcile_trainingjob, KEY)
    done = api.put(pod(1, "Succeeded", 0, result=ok_result()) | {"kind": "Pod"})
    rt.job_pods.put(done, group="train")
    run(rt, reconcile_trainingjob, KEY)
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Failed" and "already exists" in status["message"]
    assert "VersionExists" in events(api)


def test_an_invalid_spec_fails_with_the_field_and_creates_nothing():
    rt, api = runtime()
    store_job(rt, api, job(hyperparameters="many"))
    assert run(rt, reconcile_trainingjob, KEY) is None
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Failed" and status["message"].startswith("spec.hyperparameters")
    assert not api.of_kind("Pod")


def test_an_uncached_pod_is_fetched_before_its_attempt_counts_as_preempted():
    rt, api = runtime()
    store_job(rt, api, job())
    run(rt, reconcile_trainingjob, KEY)
    rt.job_pods.remove("ns", "train-a1")  # the watch has not delivered it yet
    running = api.objects[("Pod", "ns", "train-a1")]
    running["status"] = pod(1)["status"]
    run(rt, reconcile_trainingjob, KEY)
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Running" and "reason" not in status["attempts"][0]


def test_modelversion_is_verified_by_a_pod_then_ready_and_latest():
    rt, api = runtime()
    body = api.put(mv() | {"kind": "ModelVersion"})
    rt.versions.put(body, group="m")
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    (check,) = api.of_kind("Pod")
    assert api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"]["phase"] == "Verifying"
    answered = verify_pod(body, 0) | {"kind": "Pod"}
    answered["metadata"] |= {"namespace": "ns", "labels": {contract.VERSION_LABEL: "m-v1.0.0"}}
    rt.verify_pods.put(api.put(answered), group="m-v1.0.0")
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    status = api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"]
    # Ready and latest in one write: no reader sees the newest Ready version without it.
    assert status["phase"] == "Ready" and status["latest"] is True
    assert ("delete", "Pod", check) in api.writes
    assert {"Verifying", "Ready", "Latest"} <= set(events(api))
    run(rt, reconcile_model, ("ns", "m"))
    assert api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"]["latest"] is True
    assert events(api).count("Latest") == 1


def test_a_precreated_attempt_pod_with_a_forged_result_fails_the_job_and_makes_no_version():
    rt, api = runtime()
    # Someone took the first attempt's name, with the job's labels (uid included)
    # and a successful termination message, but no owner reference.
    forged = pod(1, "Succeeded", 0, result=ok_result(), owner_uid=None) | {"kind": "Pod"}
    rt.job_pods.put(api.put(forged), group="train")
    store_job(rt, api, job())
    run(rt, reconcile_trainingjob, KEY)
    run(rt, reconcile_trainingjob, KEY)
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Failed"
    failed = next(x for x in status["conditions"] if x["type"] == "Failed")
    assert failed["reason"] == "PodNotOwned" and "train-a1" in failed["message"]
    assert status["attempts"][0]["reason"] == "PodNotOwned"
    assert not api.of_kind("ModelVersion")
    assert "PodNotOwned" in events(api)
    assert ("delete", "Pod", "train-a1") not in api.writes  # not ours to delete


def test_a_forged_pod_found_under_an_open_attempts_name_is_not_read():
    rt, api = runtime()
    store_job(rt, api, job())
    run(rt, reconcile_trainingjob, KEY)
    api.objects.pop(("Pod", "ns", "train-a1"))
    rt.job_pods.remove("ns", "train-a1")
    forged = pod(1, "Succeeded", 0, result=ok_result(), owner_uid="uid-other") | {"kind": "Pod"}
    forged["metadata"]["ownerReferences"][0]["name"] = "another-job"  # a live owner, not us
    rt.job_pods.put(api.put(forged), group="train")
    run(rt, reconcile_trainingjob, KEY)
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Failed" and status["attempts"][0]["reason"] == "PodNotOwned"
    assert not api.of_kind("ModelVersion")


def test_a_precreated_verify_pod_that_exited_0_does_not_make_the_version_ready():
    rt, api = runtime()
    body = api.put(mv() | {"kind": "ModelVersion"})
    rt.versions.put(body, group="m")
    forged = verify_pod(body, 0, owner_uid=None) | {"kind": "Pod"}
    forged["metadata"]["labels"] = {contract.VERSION_LABEL: "m-v1.0.0"}
    api.put(forged)  # not in the cache: found only when the operator creates its own
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    status = api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"]
    assert status["phase"] == "Failed" and "not controlled" in status["message"]
    ready = next(x for x in status["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "PodNotOwned"
    assert ("delete", "Pod", forged["metadata"]["name"]) not in api.writes


def test_each_attempt_gets_its_own_trainer_identity_and_the_old_wide_role_goes():
    rt, api = runtime()
    managed = {"labels": {"app.kubernetes.io/managed-by": "forja"}, "namespace": "ns"}
    for kind in ("Role", "RoleBinding"):
        api.put({"kind": kind, "metadata": {"name": "forja-trainer", **managed}})
    store_job(rt, api, job())
    run(rt, reconcile_trainingjob, KEY)
    assert set(api.of_kind("ServiceAccount")) == {"train-a1-trainer"}
    role = api.objects[("Role", "ns", "train-a1-trainer")]
    assert role["rules"][0]["resourceNames"] == ["train-a1"]
    assert set(api.of_kind("Role")) == {"train-a1-trainer"}  # the wide one was removed
    assert set(api.of_kind("RoleBinding")) == {"train-a1-trainer"}
    pod_spec = api.objects[("Pod", "ns", "train-a1")]["spec"]
    assert pod_spec["serviceAccountName"] == "train-a1-trainer"


def test_a_version_with_this_jobs_uid_label_but_another_jobs_lineage_is_not_taken():
    rt, api = runtime()
    store_job(rt, api, job())
    run(rt, reconcile_trainingjob, KEY)
    # Another job's version that carries this job's uid label (a crossed write).
    crossed = mv("detector-v0.1.0", "0.1.0") | {"kind": "ModelVersion"}
    crossed["spec"]["model"] = "detector"
    crossed["spec"]["source"] = {"trainingJob": "someone-else"}
    crossed["metadata"]["labels"] = {"forja.dev/trainingjob-uid": "uid-1"}
    api.put(crossed)
    done = api.put(pod(1, "Succeeded", 0, result=ok_result()) | {"kind": "Pod"})
    rt.job_pods.put(done, group="train")
    run(rt, reconcile_trainingjob, KEY)
    status = api.objects[("TrainingJob", "ns", "train")]["status"]
    assert status["phase"] == "Succeeded"
    assert status["modelVersion"] == "detector-v0.2.0", status
    mine = api.objects[("ModelVersion", "ns", "detector-v0.2.0")]
    assert mine["spec"]["source"]["trainingJob"] == "train"


def test_a_failing_verify_pod_backs_off_and_the_version_says_why():
    rt, api = runtime()
    body = api.put(mv() | {"kind": "ModelVersion"})
    rt.versions.put(body, group="m")
    key = ("ns", "m-v1.0.0")
    for failure, wait in ((1, 10), (2, 20)):
        run(rt, reconcile_modelversion, key)
        (check,) = api.of_kind("Pod")
        failed = verify_pod(body, 1) | {"kind": "Pod"}
        term = failed["status"]["containerStatuses"][0]["state"]["terminated"]
        term["message"] = '{"message": "store unreachable"}'
        failed["metadata"] |= {"namespace": "ns", "labels": {contract.VERSION_LABEL: "m-v1.0.0"}}
        rt.verify_pods.put(api.put(failed), group="m-v1.0.0")
        retry = run(rt, reconcile_modelversion, key)
        assert retry == wait
        assert ("delete", "Pod", check) in api.writes
        rt.verify_pods.remove("ns", check)
        status = api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"]
        assert status["phase"] == "Verifying"
        assert f"failed {failure} time" in status["message"]
        assert "store unreachable" in status["message"]
        assert f"next try in {wait}s" in status["message"]
        # The pod's deletion wakes the reconciler: it waits, it does not make a pod.
        left = run(rt, reconcile_modelversion, key)
        assert left is not None and 0 < left <= wait and not api.of_kind("Pod")
        # Time passes: move the recorded failure back by the wait.
        cond = next(x for x in status["conditions"] if x["type"] == "ArtifactVerified")
        cond["lastTransitionTime"] = "2000-01-01T00:00:00Z"
        rt.versions.put(api.objects[("ModelVersion", "ns", "m-v1.0.0")], group="m")
    assert "VerifyError" in events(api)


def _ready_version(rt: Runtime, api: MemoryApi) -> dict[str, Any]:
    body = api.put(mv() | {"kind": "ModelVersion"})
    rt.versions.put(body, group="m")
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    answered = verify_pod(body, 0) | {"kind": "Pod"}
    answered["metadata"] |= {"namespace": "ns", "labels": {contract.VERSION_LABEL: "m-v1.0.0"}}
    rt.verify_pods.put(api.put(answered), group="m-v1.0.0")
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    rt.verify_pods.remove("ns", answered["metadata"]["name"])
    return body


def test_a_ready_version_gets_its_benchmark_pod_through_the_api():
    rt, api = runtime()
    _ready_version(rt, api)
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    name = benchmark_pod_name("m-v1.0.0", "s3://b/model.onnx", mv()["spec"]["artifact"]["sha256"])
    assert name in api.of_kind("Pod")
    assert api.of_kind("Pod")[name]["metadata"]["labels"]["app.kubernetes.io/component"] == (
        "benchmark")
    status = api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"]
    assert status["phase"] == "Ready" and status["benchmark"]["state"] == "Running"
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    assert api.count("create", "Pod") == 2, "the verify pod and one benchmark pod"


def test_a_stranger_under_the_benchmark_pods_name_is_refused_and_ready_stays():
    rt, api = runtime()
    body = _ready_version(rt, api)
    name = benchmark_pod_name("m-v1.0.0", "s3://b/model.onnx", body["spec"]["artifact"]["sha256"])
    api.put({"kind": "Pod", "apiVersion": "v1",
             "metadata": {"name": name, "namespace": "ns",
                          "labels": {contract.VERSION_LABEL: "m-v1.0.0"}},
             "status": {"phase": "Succeeded"}})
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    status = api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"]
    assert status["phase"] == "Ready"
    assert status["benchmark"]["state"] == "Failed"
    assert "not controlled" in status["benchmark"]["message"]
    assert ("delete", "Pod", name) not in api.writes
    writes = len(api.writes)
    run(rt, reconcile_modelversion, ("ns", "m-v1.0.0"))
    assert len(api.writes) == writes, "no retry against a pod that is not ours"
    assert api.objects[("ModelVersion", "ns", "m-v1.0.0")]["status"] == status


def test_a_gang_gets_its_service_first_and_the_workers_its_cluster_ip():
    rt, api = runtime()
    store_job(rt, api, job(workers=2))
    run(rt, reconcile_trainingjob, KEY)
    creates = [(k, n) for v, k, n in api.writes if v == "create" and k in ("Service", "Pod")]
    assert creates == [("Service", "train-a1-rdzv"), ("Pod", "train-a1-w0"), ("Pod", "train-a1-w1")]
    ip = api.of_kind("Service")["train-a1-rdzv"]["spec"]["clusterIP"]
    env = {e["name"]: e.get("value")
           for e in api.of_kind("Pod")["train-a1-w1"]["spec"]["containers"][0]["env"]}
    assert (env["MASTER_ADDR"], env["RANK"], env["WORLD_SIZE"]) == (ip, "1", "2")
    status = api.of_kind("TrainingJob")["train"]["status"]
    assert [w["pod"] for w in status["workers"]] == ["train-a1-w0", "train-a1-w1"]
    assert api.count("patch-status", "TrainingJob") == 1
    # Again (an operator restart): the same gang is found, nothing is made twice.
    rt.jobs.put(copy.deepcopy(api.of_kind("TrainingJob")["train"]))
    run(rt, reconcile_trainingjob, KEY)
    assert set(api.of_kind("Pod")) == {"train-a1-w0", "train-a1-w1"}
    assert api.count("create", "Pod") == 2 and api.count("create", "Service") == 1


def test_the_next_gang_attempt_gets_a_new_service_and_the_old_one_goes():
    rt, api = runtime()
    store_job(rt, api, job(workers=2, restartPolicy={"backoffLimit": 3, "backoffSeconds": 0}))
    run(rt, reconcile_trainingjob, KEY)
    for name in ("train-a1-w0", "train-a1-w1"):  # both workers failed
        failed = pod(1, "Failed", exit_code=1, rank=int(name[-1]), world=2)
        stored = api.objects[("Pod", "ns", name)]
        stored["status"] = failed["status"]
        rt.job_pods.put(copy.deepcopy(stored), group="train")
    rt.jobs.put(copy.deepcopy(api.of_kind("TrainingJob")["train"]))
    run(rt, reconcile_trainingjob, KEY)
    assert set(api.of_kind("Service")) == {"train-a2-rdzv"}
    assert {"train-a2-w0", "train-a2-w1"} <= set(api.of_kind("Pod"))
