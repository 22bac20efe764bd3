"""A multi-worker distill-qat-tflite attempt: one Service per worker and TF_CONFIG built
from their ClusterIPs (builders/tf_cluster.py), applied by the reconciler."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from forja_api import contract
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.builders.attempt import AttemptInputs, render_attempt_pods
from forja_operator.builders.tf_cluster import (
    render_worker_service,
    tf_config,
    worker_service_name,
)
from forja_operator.config import OperatorConfig
from forja_operator.reconcilers.trainingjob import reconcile_trainingjob

from .operator_factories import job, pod
from .test_operator_reconcilers import KEY, run, runtime, store_job

IPS = ("10.96.0.11", "10.96.0.12", "10.96.0.13")


def tf_job(**spec: Any) -> dict[str, Any]:
    return job(
        trainer="distill-qat-tflite",
        dataset={"uri": "generated://multilabel", "format": "multilabel-csv"},
        hyperparameters={"batch_size": 16},
        **spec,
    )


def env_of(p: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}


def render(workers: int, addrs: tuple[str, ...]) -> list[dict[str, Any]]:
    body = tf_job(workers=workers)
    spec = TrainingJobSpec.model_validate(body["spec"])
    return render_attempt_pods(
        body, spec, AttemptInputs(2, workers=workers, worker_addrs=addrs), OperatorConfig()
    )


def test_each_worker_gets_tf_config_listing_the_others_by_service_ip():
    pods = render(3, IPS)
    assert [p["metadata"]["name"] for p in pods] == ["train-a2-w0", "train-a2-w1", "train-a2-w2"]
    for rank, p in enumerate(pods):
        env = env_of(p)
        config = json.loads(env[contract.TF_CONFIG_ENV])
        assert config["task"] == {"type": "worker", "index": rank}
        expected = [f"{ip}:2222" for ip in IPS]
        # itself on loopback, at the port its gRPC server binds (no hairpin)
        expected[rank] = f"127.0.0.1:{23000 + rank}"
        assert config["cluster"] == {"worker": expected}
        assert (env["WORLD_SIZE"], env["RANK"]) == ("3", str(rank))
        assert "MASTER_ADDR" not in env  # no torch rendezvous for TensorFlow
        assert p["spec"]["containers"][0]["ports"] == [
            {"name": "tf-worker", "containerPort": 23000 + rank, "protocol": "TCP"}
        ]
        assert p["spec"]["containers"][0]["command"] == ["python", "-m", "forja_trainer_tf"]


def test_a_tf_gang_needs_every_workers_address():
    with pytest.raises(ValueError, match="every worker Service's ClusterIP"):
        render(3, IPS[:2])
    with pytest.raises(ValueError, match="rank 3 is not one of 3 workers"):
        tf_config(IPS, 3)


def test_worker_service_selects_its_worker_of_this_attempt_of_this_job():
    svc = render_worker_service(tf_job(), 2, 1)
    assert svc["metadata"]["name"] == "train-a2-w1"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {
        "forja.dev/trainingjob-uid": "uid-1",
        contract.ATTEMPT_LABEL: "2",
        contract.RANK_LABEL: "1",
    }
    assert svc["spec"]["ports"] == [
        {"name": "tf-worker", "protocol": "TCP", "port": 2222, "targetPort": 23001}
    ]
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert svc["metadata"]["labels"][contract.COMPONENT_LABEL] == "tf-worker"
    assert worker_service_name("1job", 3, 0) == "tj-1job-a3-w0"
    long = worker_service_name("j" * 63, 12, 7)
    assert len(long) <= 63 and long.endswith("-a12-w7")


def test_the_reconciler_makes_the_services_first_and_their_ips_reach_tf_config():
    rt, api = runtime()
    store_job(rt, api, tf_job(workers=2))
    run(rt, reconcile_trainingjob, KEY)
    creates = [(k, n) for v, k, n in api.writes if v == "create" and k in ("Service", "Pod")]
    assert creates == [
        ("Service", "train-a1-w0"), ("Service", "train-a1-w1"),
        ("Pod", "train-a1-w0"), ("Pod", "train-a1-w1"),
    ]
    services = api.of_kind("Service")
    ip0 = services["train-a1-w0"]["spec"]["clusterIP"]
    config = json.loads(env_of(api.of_kind("Pod")["train-a1-w1"])[contract.TF_CONFIG_ENV])
    assert config["cluster"]["worker"] == [f"{ip0}:2222", "127.0.0.1:23001"]
    # Again (an operator restart): the same Services and pods are found, none made twice.
    rt.jobs.put(copy.deepcopy(api.of_kind("TrainingJob")["train"]))
    run(rt, reconcile_trainingjob, KEY)
    assert api.count("create", "Service") == 2 and api.count("create", "Pod") == 2


def test_the_next_tf_attempt_gets_new_services_and_the_old_ones_go():
    rt, api = runtime()
    store_job(rt, api, tf_job(workers=2, restartPolicy={"backoffLimit": 3, "backoffSeconds": 0}))
    run(rt, reconcile_trainingjob, KEY)
    for rank in (0, 1):  # worker 1 was OOM-killed, the operator stopped worker 0
        failed = pod(1, "Failed", exit_code=137 if rank else 143, rank=rank, world=2,
                     reason="OOMKilled" if rank else None)
        stored = api.objects[("Pod", "ns", f"train-a1-w{rank}")]
        stored["status"] = failed["status"]
        rt.job_pods.put(copy.deepcopy(stored), group="train")
    rt.jobs.put(copy.deepcopy(api.of_kind("TrainingJob")["train"]))
    run(rt, reconcile_trainingjob, KEY)
    assert set(api.of_kind("Service")) == {"train-a2-w0", "train-a2-w1"}
    assert {"train-a2-w0", "train-a2-w1"} <= set(api.of_kind("Pod"))
    ips = [api.of_kind("Service")[f"train-a2-w{r}"]["spec"]["clusterIP"] for r in (0, 1)]
    config = json.loads(env_of(api.of_kind("Pod")["train-a2-w0"])[contract.TF_CONFIG_ENV])
    assert config["cluster"]["worker"] == ["127.0.0.1:23000", f"{ips[1]}:2222"]


def test_a_foreign_service_on_a_worker_name_stops_the_attempt():
    rt, api = runtime()
    api.put({"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "train-a1-w1", "namespace": "ns"},
             "spec": {"type": "ClusterIP", "clusterIP": "10.96.9.9"}})
    store_job(rt, api, tf_job(workers=2))
    with pytest.raises(Exception, match="train-a1-w1 exists and is not this job's"):
        run(rt, reconcile_trainingjob, KEY)
    assert not api.of_kind("Pod")
