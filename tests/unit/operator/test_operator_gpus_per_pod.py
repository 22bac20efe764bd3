"""resources.gpus > 1 in one worker: the pod asks forja_trainer for one process per GPU
(torchrun's node-level env), so the world is workers x gpus. Pure builder tests."""

from forja_api import contract
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.builders.attempt import (
    AttemptInputs,
    processes_per_pod,
    render_attempt_pods,
)
from forja_operator.config import OperatorConfig

from .operator_factories import job

CLUSTER_IP = "10.96.0.17"
WORLD_NAMES = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
               "GROUP_RANK", "LOCAL_WORLD_SIZE"}


def env_of(p):
    return {e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]}


def render(workers, gpus, trainer="image-classifier"):
    body = job(workers=workers, trainer=trainer, resources={"gpus": gpus})
    spec = TrainingJobSpec.model_validate(body["spec"])
    inputs = AttemptInputs(1, workers=workers, master_addr=CLUSTER_IP if workers > 1 else None)
    return spec, render_attempt_pods(body, spec, inputs, OperatorConfig())


def test_a_gang_of_multi_gpu_pods_is_a_world_of_workers_times_gpus():
    spec, pods = render(workers=2, gpus=4)
    assert processes_per_pod(spec) == 4
    rank0, rank1 = (env_of(p) for p in pods)
    for group_rank, env in enumerate((rank0, rank1)):
        assert env["WORLD_SIZE"] == "8"
        assert env["GROUP_RANK"] == str(group_rank) and env["LOCAL_WORLD_SIZE"] == "4"
        # RANK is the pod's first process's; the launcher gives each its own
        assert env["RANK"] == str(group_rank * 4) and env["LOCAL_RANK"] == "0"
    assert (rank0["MASTER_ADDR"], rank0["MASTER_PORT"]) == ("127.0.0.1", "29500")
    assert (rank1["MASTER_ADDR"], rank1["MASTER_PORT"]) == (CLUSTER_IP, "29400")
    # the command is unchanged (forja_trainer launches), each pod gets all 4 GPUs,
    # and the pods are still one per worker
    for p in pods:
        container = p["spec"]["containers"][0]
        assert container["command"] == ["python", "-m", "forja_trainer"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
        assert p["metadata"]["labels"][contract.WORLD_SIZE_LABEL] == "2"


def test_one_multi_gpu_pod_is_its_own_world_on_loopback():
    _, (only,) = render(workers=1, gpus=2)
    env = env_of(only)
    assert only["metadata"]["name"] == "train-a1"
    assert (env["WORLD_SIZE"], env["RANK"], env["GROUP_RANK"], env["LOCAL_WORLD_SIZE"]) == (
        "2", "0", "0", "2")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("127.0.0.1", "29500")
    assert contract.RANK_LABEL not in only["metadata"]["labels"]  # not a gang: no Service


def test_one_gpu_per_worker_keeps_the_one_process_env():
    spec, pods = render(workers=2, gpus=1)
    assert processes_per_pod(spec) == 1
    env = env_of(pods[1])
    assert (env["WORLD_SIZE"], env["RANK"]) == ("2", "1")
    assert not {"GROUP_RANK", "LOCAL_WORLD_SIZE"} & set(env)
    _, (only,) = render(workers=1, gpus=1)
    assert not WORLD_NAMES & set(env_of(only))


def test_trainers_outside_the_shared_loop_keep_their_gpus_in_one_process():
    """Ultralytics starts its own processes per GPU; a custom command is the user's."""
    for trainer in ("yolo-detector", "distill-qat-tflite"):
        spec, (only,) = render(workers=1, gpus=4, trainer=trainer)
        assert processes_per_pod(spec) == 1
        assert not WORLD_NAMES & set(env_of(only))
