import json

from forja_api import contract
from forja_api.semver import Version
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.builders.attempt import AttemptInputs, render_attempt_pod
from forja_operator.builders.modelversion import (
    modelversion_name,
    render_modelversion,
    render_verify_pod,
)
from forja_operator.builders.rbac import render_attempt_rbac
from forja_operator.config import ArtifactStore, OperatorConfig

from .operator_factories import job, ok_result

CONFIG = OperatorConfig(
    trainer_image="t:1",
    trainer_tf_image="tf:1",
    server_image="s:1",
    artifact_store=ArtifactStore(
        uri="s3://forja", endpoint="http://minio:9000", credentials_secret="store"
    ),
)


def render(body, index=1, **kw):
    spec = TrainingJobSpec.model_validate(body["spec"])
    return render_attempt_pod(body, spec, AttemptInputs(index, **kw), CONFIG)


def env_of(pod):
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_attempt_pod_name_labels_owner_and_command():
    pod = render(job())
    assert pod["metadata"]["name"] == "train-a1"
    assert pod["metadata"]["labels"][contract.JOB_LABEL] == "train"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pod["metadata"]["ownerReferences"][0]["controller"] is True
    c = pod["spec"]["containers"][0]
    assert c["image"] == "t:1"
    assert c["command"] == ["python", "-m", "forja_trainer"]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_tf_trainer_gets_tf_image_and_module_and_custom_command_wins():
    pod = render(job(trainer="distill-qat-tflite"))
    c = pod["spec"]["containers"][0]
    assert (c["image"], c["command"]) == ("tf:1", ["python", "-m", "forja_trainer_tf"])
    pod = render(job(trainer="custom", command=["python", "x.py"], image="mine:2"))
    c = pod["spec"]["containers"][0]
    assert (c["image"], c["command"]) == ("mine:2", ["python", "x.py"])


def test_env_carries_rendered_spec_uris_resume_and_secret_refs():
    pod = render(
        job(),
        index=3,
        overrides={"batch_size": 16},
        resume_from="s3://forja/ns/train/checkpoints/last.pt",
    )
    env = env_of(pod)
    spec = contract.RenderedSpec.model_validate_json(env[contract.SPEC_ENV]["value"])
    assert spec.attempt == 3 and spec.overrides == {"batch_size": 16}
    assert spec.checkpoint_uri == "s3://forja/ns/train/checkpoints/"
    assert spec.artifact_uri == "s3://forja/ns/train/artifacts/attempt-3/"
    assert env[contract.RESUME_FROM_ENV]["value"].endswith("last.pt")
    assert env[contract.S3_ENDPOINT_ENV]["value"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "store",
        "key": "accessKey",
    }
    assert "value" not in env["AWS_SECRET_ACCESS_KEY"]
    assert json.loads(pod["metadata"]["annotations"]["forja.dev/overrides"]) == {"batch_size": 16}


def test_resources_scheduling_and_restricted_security():
    body = job(
        resources={"gpus": 2, "cpu": "2", "memory": "4Gi"},
        scheduling={
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "low",
            "queueName": "team-a",
        },
    )
    pod = render(body, deadline_seconds=30)
    c = pod["spec"]["containers"][0]
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "2"}
    assert c["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert pod["spec"]["nodeSelector"] == {"gpu": "a100"}
    assert pod["spec"]["tolerations"][0]["effect"] == "NoSchedule"
    assert pod["spec"]["priorityClassName"] == "low"
    assert pod["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert pod["spec"]["activeDeadlineSeconds"] == 30
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pvc_uris_are_mounted_and_only_output_is_writable():
    pod = render(
        job(
            dataset={"uri": "pvc://data/sets/a", "format": "yolo"},
            output={"uri": "pvc://out/models"},
        )
    )
    mounts = {m["mountPath"]: m for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/forja/pvc/data"]["readOnly"] is True
    assert mounts["/mnt/forja/pvc/out"]["readOnly"] is False
    assert "AWS_ACCESS_KEY_ID" not in env_of(pod)


def test_a_trainer_may_touch_only_its_own_attempt_pod():
    sa, role, binding = render_attempt_rbac(job(), 2)
    assert sa["metadata"]["name"] == "train-a2-trainer"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": ["train-a2"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "train-a2-trainer", "namespace": "ns"}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    for obj in (sa, role, binding):  # they go with the job
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = TrainingJobSpec.model_validate(job()["spec"])
    pod = render_attempt_pod(job(), spec, AttemptInputs(2, {}, None, None), OperatorConfig())
    assert pod["spec"]["serviceAccountName"] == "train-a2-trainer"


def test_modelversion_has_lineage_and_promotion_alias():
    body = job(
        versioning={"promotion": {"alias": "production", "metric": "accuracy", "threshold": 0.8}}
    )
    spec = TrainingJobSpec.model_validate(body["spec"])
    mv = render_modelversion(body, spec, Version(1, 2, 0), ok_result(), {"batch_size": 16})
    assert (
        mv["metadata"]["name"]
        == "detector-v1.2.0"
        == modelversion_name("detector", Version(1, 2, 0))
    )
    assert mv["spec"]["artifact"]["sha256"] == "a" * 64
    assert mv["spec"]["source"]["trainingJob"] == "train"
    assert mv["spec"]["source"]["config"]["hyperparameters"]["batch_size"] == 16
    assert mv["spec"]["aliases"] == ["production"]
    assert mv["spec"]["headlineMetric"] == "accuracy"  # what the promotion rule judges
    assert "ownerReferences" not in mv["metadata"]
    assert "pretrainedDigest" not in mv["spec"]["source"]


def test_modelversion_lineage_names_the_pretrained_weights_read():
    body = job(pretrained={"uri": "s3://models/donor.pth"})
    spec = TrainingJobSpec.model_validate(body["spec"])
    loaded = contract.PretrainedRef(uri="s3://models/donor.pth", sha256="e" * 64)
    result = ok_result().model_copy(update={"pretrained": loaded})
    mv = render_modelversion(body, spec, Version(0, 1, 0), result, {})
    source = mv["spec"]["source"]
    assert (source["pretrainedUri"], source["pretrainedDigest"]) == (loaded.uri, "e" * 64)


def test_verify_pod_runs_verify_module_with_secret_refs():
    body = job()
    spec = TrainingJobSpec.model_validate(body["spec"])
    mv = render_modelversion(body, spec, Version(0, 1, 0), ok_result(), {})
    mv["metadata"]["uid"] = "mv-uid"
    pod = render_verify_pod(mv, CONFIG)
    c = pod["spec"]["containers"][0]
    assert c["command"][:3] == ["python", "-m", "forja_storage.verify"]
    assert c["command"][4] == "a" * 64
    assert {e["name"] for e in c["env"]} >= {"AWS_ACCESS_KEY_ID", "FORJA_S3_ENDPOINT"}
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_the_recorded_checkpoint_digest_reaches_the_trainer():
    spec = TrainingJobSpec.model_validate(job()["spec"])
    inputs = AttemptInputs(2, {}, "s3://forja/ns/train/checkpoints/last.pt", None, "d" * 64)
    pod = render_attempt_pod(job(), spec, inputs, OperatorConfig())
    env = env_of(pod)
    assert env[contract.RESUME_SHA256_ENV]["value"] == "d" * 64
    rendered = contract.RenderedSpec.model_validate_json(env[contract.SPEC_ENV]["value"])
    assert rendered.resume_sha256 == "d" * 64


def test_attempt_pods_leave_a_lost_node_after_node_lost_seconds():
    spec = TrainingJobSpec.model_validate(job()["spec"])
    pod = render_attempt_pod(job(), spec, AttemptInputs(1, {}, None, None), OperatorConfig())
    lost = {t["key"]: t for t in pod["spec"]["tolerations"]}
    assert set(lost) == {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"}
    assert all(t["effect"] == "NoExecute" and t["tolerationSeconds"] == 60 for t in lost.values())
    # A spec that tolerates one of the taints itself keeps its own.
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 900}
    body = job(scheduling={"tolerations": [own]})
    spec = TrainingJobSpec.model_validate(body["spec"])
    config = OperatorConfig(node_lost_seconds=30)
    tolerations = render_attempt_pod(body, spec, AttemptInputs(1, {}, None, None), config)[
        "spec"]["tolerations"]
    by_key = {t["key"]: t["tolerationSeconds"] for t in tolerations}
    assert by_key == {"node.kubernetes.io/unreachable": 900, "node.kubernetes.io/not-ready": 30}
