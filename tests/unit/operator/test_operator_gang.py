"""A multi-worker attempt (spec.workers > 1) as one gang: the pods and Service the
builders render, and the planner's decisions as its workers run, end and go."""

from datetime import UTC, datetime, timedelta

import pytest

from forja_api import conditions as c
from forja_api import contract
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.builders.attempt import (
    AttemptInputs,
    render_attempt_pods,
    render_rendezvous_service,
    rendezvous_service_name,
)
from forja_operator.builders.rbac import render_attempt_rbac
from forja_operator.config import OperatorConfig
from forja_operator.status.trainingjob import plan_trainingjob

from .operator_factories import job, ok_result, pod, with_status

NOW = datetime(2026, 1, 1, 0, 10, 30, tzinfo=UTC)
CLUSTER_IP = "10.96.0.17"


def gang_job(**spec):
    return job(workers=2, **spec)


def plan(body, pods, now=NOW):
    return plan_trainingjob(body, TrainingJobSpec.model_validate(body["spec"]), pods, now)


def advance(body, p):
    return with_status(body, p.status.to_wire())


def env_of(p):
    return {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}


def worker(rank, phase="Running", **kw):
    return pod(1, phase, rank=rank, world=2, node=f"node-{rank}", **kw)


def started(body=None):
    body = body or gang_job()
    return advance(body, plan(body, []))


# --- builders --------------------------------------------------------------------------


def render(workers, master_addr=CLUSTER_IP):
    body = job(workers=workers)
    spec = TrainingJobSpec.model_validate(body["spec"])
    inputs = AttemptInputs(2, workers=workers, master_addr=master_addr)
    return render_attempt_pods(body, spec, inputs, OperatorConfig())


def test_a_gang_is_n_pods_with_torchrun_env_and_rank_0_behind_the_service():
    pods = render(3)
    assert [p["metadata"]["name"] for p in pods] == ["train-a2-w0", "train-a2-w1", "train-a2-w2"]
    for rank, p in enumerate(pods):
        labels = p["metadata"]["labels"]
        assert labels[contract.RANK_LABEL] == str(rank)
        assert labels[contract.WORLD_SIZE_LABEL] == "3"
        assert labels[contract.ATTEMPT_LABEL] == "2"
        env = env_of(p)
        assert (env["WORLD_SIZE"], env["RANK"], env["LOCAL_RANK"]) == ("3", str(rank), "0")
        # one identity for the gang, the same rendered spec and store for every rank
        assert p["spec"]["serviceAccountName"] == "train-a2-trainer"
        assert env[contract.SPEC_ENV] == env_of(pods[0])[contract.SPEC_ENV]
    rank0, rank1 = env_of(pods[0]), env_of(pods[1])
    # rank 0 hosts the TCPStore and reaches it on loopback; the others through the
    # Service's ClusterIP (no DNS needed), on the Service's port
    assert (rank0["MASTER_ADDR"], rank0["MASTER_PORT"]) == ("127.0.0.1", "29500")
    assert (rank1["MASTER_ADDR"], rank1["MASTER_PORT"]) == (CLUSTER_IP, "29400")
    ports = pods[0]["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "rendezvous", "containerPort": 29500, "protocol": "TCP"}]
    assert "ports" not in pods[1]["spec"]["containers"][0]


def test_one_worker_is_one_pod_as_before():
    (only,) = render(1, master_addr=None)
    assert only["metadata"]["name"] == "train-a2"
    assert contract.RANK_LABEL not in only["metadata"]["labels"]
    assert not {"WORLD_SIZE", "RANK", "MASTER_ADDR"} & set(env_of(only))


def test_one_worker_per_node_keeps_the_gang_apart_and_only_the_gang():
    body = job(workers=2, scheduling={"oneWorkerPerNode": True})
    spec = TrainingJobSpec.model_validate(body["spec"])
    pods = render_attempt_pods(body, spec, AttemptInputs(2, workers=2, master_addr=CLUSTER_IP),
                               OperatorConfig())
    for p in pods:
        (term,) = p["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        # the selector matches this attempt's workers, and every one of them
        assert term["labelSelector"]["matchLabels"].items() <= p["metadata"]["labels"].items()
        assert term["labelSelector"]["matchLabels"][contract.ATTEMPT_LABEL] == "2"
    assert all("affinity" not in p["spec"] for p in render(2))


def test_ranks_above_0_need_the_cluster_ip():
    with pytest.raises(ValueError, match="ClusterIP"):
        render(2, master_addr=None)


def test_rendezvous_service_selects_rank_0_of_this_attempt_of_this_job():
    svc = render_rendezvous_service(job(), 2)
    assert svc["metadata"]["name"] == "train-a2-rdzv"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {
        "forja.dev/trainingjob-uid": "uid-1",
        contract.ATTEMPT_LABEL: "2",
        contract.RANK_LABEL: "0",
    }
    assert svc["spec"]["ports"] == [
        {"name": "rendezvous", "protocol": "TCP", "port": 29400, "targetPort": 29500}
    ]
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    # a Service name starts with a letter even when the job's does not, and fits 63
    assert rendezvous_service_name("1job", 3) == "tj-1job-a3-rdzv"
    long = rendezvous_service_name("j" * 63, 12)
    assert len(long) <= 63 and long.endswith("-a12-rdzv")


def test_only_rank_0_may_patch_its_pod():
    _, role, _ = render_attempt_rbac(job(), 2, workers=3)
    assert role["rules"][0]["resourceNames"] == ["train-a2-w0"]


# --- planner ---------------------------------------------------------------------------


def test_a_new_gang_attempt_lists_its_workers_pending():
    p = plan(gang_job(), [])
    assert p.create_attempt is not None and p.create_attempt.workers == 2
    assert p.status.attempts[0].pod == "train-a1-w0"
    assert [(w.rank, w.pod, w.phase) for w in p.status.workers] == [
        (0, "train-a1-w0", "Pending"),
        (1, "train-a1-w1", "Pending"),
    ]


def test_running_gang_shows_each_worker_and_rank_0_progress():
    prog = contract.Progress(epoch=1, total_epochs=3, metrics={"loss": 0.5})
    body = started()
    p = plan(body, [worker(0, progress=prog), worker(1, "Pending")])
    assert p.status.phase == "Pending"
    p = plan(body, [worker(0, progress=prog), worker(1)])
    assert p.status.phase == "Running" and p.status.progress.epoch == 1
    assert [(w.rank, w.node, w.phase) for w in p.status.workers] == [
        (0, "node-0", "Running"),
        (1, "node-1", "Running"),
    ]
    assert p.delete_pods == [] and p.create_attempt is None


def test_a_worker_oom_ends_the_attempt_stops_the_rest_then_resumes_all_with_half_batch():
    ckpt = contract.CheckpointRef(uri="s3://forja/ns/train/checkpoints/last.pt", epoch=1,
                                  sha256="b" * 64)
    prog = contract.Progress(epoch=1, total_epochs=3, checkpoint=ckpt, batch_size=32)
    body = started()
    oom = worker(1, "Failed", exit_code=137, reason="OOMKilled")
    p = plan(body, [worker(0, progress=prog), oom])
    att = p.status.attempts[-1]
    assert att.reason == c.REASON_OOM_KILLED and "train-a1-w1" in (att.message or "")
    # the rest of the gang is stopped, and nothing new starts while it stops
    assert p.delete_pods == ["train-a1-w0"] and p.create_attempt is None
    assert p.status.phase == "Restarting"
    body = advance(body, p)
    # rank 0 goes away (SIGTERM, 143): still waiting, not deleted twice, reason kept
    stopping = worker(0, progress=prog, deleting=True)
    p = plan(body, [stopping, oom])
    assert p.delete_pods == [] and p.create_attempt is None
    body = advance(body, p)
    gone = worker(0, "Failed", exit_code=143, progress=prog, deleting=True)
    later = datetime(2026, 1, 1, 0, 11, 0, tzinfo=UTC)
    p = plan(body, [gone, oom], now=later)
    assert p.status.attempts[0].reason == c.REASON_OOM_KILLED
    new = p.create_attempt
    assert new is not None and new.index == 2 and new.workers == 2
    assert new.overrides == {"batch_size": 16}
    assert new.resume_from == ckpt.uri and new.resume_sha256 == "b" * 64
    assert [w.pod for w in p.status.workers] == ["train-a2-w0", "train-a2-w1"]


def test_a_deleted_worker_preempts_the_attempt():
    body = started()
    p = plan(body, [worker(0)])
    att = p.status.attempts[-1]
    assert att.reason == c.REASON_PREEMPTED and "train-a1-w1" in (att.message or "")
    assert p.delete_pods == ["train-a1-w0"]
    assert [(w.pod, w.phase) for w in p.status.workers] == [
        ("train-a1-w0", "Running"),
        ("train-a1-w1", "Missing"),
    ]


def test_rank_0_completing_succeeds_with_its_result():
    body = started()
    p = plan(body, [worker(0, "Succeeded", exit_code=0, result=ok_result()), worker(1)])
    assert p.status.phase == "Succeeded"
    assert p.create_version is not None and p.create_version.artifact is not None


def test_a_worker_finishing_its_share_first_does_not_end_the_attempt():
    body = started()
    p = plan(body, [worker(0), worker(1, "Succeeded", exit_code=0)])
    assert p.status.phase == "Running" and p.status.attempts[-1].end_time is None
    assert p.delete_pods == []


def test_rank_0_completing_gives_the_stragglers_a_grace_before_they_are_stopped():
    body = started()
    done = [worker(0, "Succeeded", exit_code=0, result=ok_result()), worker(1)]
    # 30 s after rank 0 ended: rank 1 is likely exiting on its own; look again later
    p = plan(body, done)
    assert p.status.attempts[-1].reason == "Completed" and p.delete_pods == []
    assert p.requeue_after is not None and 0 < p.requeue_after <= 30
    # still running a minute after: stuck, so stopped; its node stays in the status
    body = advance(body, p)
    p = plan(body, done, NOW + timedelta(seconds=31))
    assert p.delete_pods == ["train-a1-w1"]
    body = advance(body, p)
    p = plan(body, done[:1], NOW + timedelta(seconds=40))
    assert [(w.pod, w.node, w.phase) for w in p.status.workers] == [
        ("train-a1-w0", "node-0", "Succeeded"), ("train-a1-w1", "node-1", "Missing")]


def test_suspend_stops_every_worker():
    body = started(gang_job(suspend=False))
    body["spec"]["suspend"] = True
    p = plan(body, [worker(0), worker(1)])
    assert p.status.phase == "Suspended"
    assert sorted(p.delete_pods) == ["train-a1-w0", "train-a1-w1"]


def test_an_unschedulable_worker_keeps_the_gang_pending():
    body = started()
    p = plan(body, [worker(0), pod(1, rank=1, world=2, unschedulable="0/2 nodes have a GPU")])
    assert p.status.phase == "Pending"
    assert p.status.attempts[-1].reason == c.REASON_UNSCHEDULABLE
    assert "0/2 nodes" in (p.status.message or "")
