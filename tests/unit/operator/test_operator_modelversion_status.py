from datetime import UTC, datetime

from forja_api import conditions as c
from forja_operator.builders.modelversion import verify_pod_name
from forja_operator.status.modelversion import (
    ALIASES_ANNOTATION,
    plan_model_aliases,
    plan_modelversion,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "b" * 64


def mv(
    name="m-v1.0.0", version="1.0.0", phase=None, aliases=(), held=None, latest=False, conditions=()
):
    body = {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": "ns", "uid": "u-" + name, "generation": 1},
        "spec": {
            "model": "m",
            "version": version,
            "format": "onnx",
            "artifact": {"uri": "s3://b/model.onnx", "sha256": SHA},
            "aliases": list(aliases),
        },
    }
    if held is not None:
        body["metadata"]["annotations"] = {ALIASES_ANNOTATION: __import__("json").dumps(held)}
    if phase:
        body["status"] = {"phase": phase, "latest": latest, "conditions": list(conditions)}
    return body


def verify_pod(body, code):
    name = verify_pod_name(body["metadata"]["name"], "s3://b/model.onnx", SHA)
    return {
        "metadata": {"name": name},
        "status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": code,
                            "message": '{"message": "sha256 is 00, expected bb"}',
                        }
                    }
                }
            ],
        },
    }


def test_verification_lifecycle_to_ready():
    body = mv()
    p = plan_modelversion(body, [], NOW)
    assert p.create_verify_pod and p.status.phase == "Verifying"
    body["status"] = p.status.to_wire()
    p = plan_modelversion(body, [verify_pod(body, 0)], NOW)
    assert p.status.phase == "Ready"
    assert any(x.type == c.ARTIFACT_VERIFIED and x.status == "True" for x in p.status.conditions)
    assert p.delete_pods  # the verify pod goes once it has answered
    body["status"] = p.status.to_wire()
    p = plan_modelversion(body, [], NOW)
    assert not p.create_verify_pod and p.status.phase == "Ready"


def test_mismatch_fails_with_checksum_mismatch_and_is_not_rerun():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    p = plan_modelversion(body, [verify_pod(body, 65)], NOW)
    assert p.status.phase == "Failed"
    cond = next(x for x in p.status.conditions if x.type == c.ARTIFACT_VERIFIED)
    assert cond.reason == c.REASON_CHECKSUM_MISMATCH
    assert "expected bb" in p.status.message
    body["status"] = p.status.to_wire()
    assert not plan_modelversion(body, [], NOW).create_verify_pod


def test_latest_is_highest_ready():
    vs = [
        mv("m-v1.0.0", "1.0.0", "Ready", latest=True),
        mv("m-v1.10.0", "1.10.0", "Ready"),
        mv("m-v2.0.0", "2.0.0", "Verifying"),
    ]
    p = plan_model_aliases(vs)
    assert p.latest == {"m-v1.0.0": False, "m-v1.10.0": True}


def test_alias_moves_to_the_version_it_was_just_given():
    old = mv("m-v2.0.0", "2.0.0", "Ready", aliases=["production"], held=["production"])
    new = mv("m-v1.5.0", "1.5.0", "Ready", aliases=["production"], held=[])
    p = plan_model_aliases([old, new])
    assert p.aliases == {"m-v2.0.0": []}
    assert p.held["m-v1.5.0"] == ["production"]
    assert any(ev.reason == c.REASON_ALIAS_MOVED for _, ev in p.events)


def test_alias_on_unready_version_waits():
    ready = mv("m-v1.0.0", "1.0.0", "Ready", aliases=["production"], held=["production"])
    pending = mv("m-v2.0.0", "2.0.0", "Verifying", aliases=["production"])
    assert plan_model_aliases([ready, pending]).aliases == {}


def test_a_crashed_check_is_retried_not_a_verdict():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    p = plan_modelversion(body, [verify_pod(body, 1)], NOW)
    assert p.status.phase == "Verifying" and p.retry_after
    assert p.delete_pods
    body["status"] = p.status.to_wire()
    # Pod gone: wait out the retry delay, then check again.
    p = plan_modelversion(body, [], NOW)
    assert not p.create_verify_pod and p.retry_after
    p = plan_modelversion(body, [], NOW.replace(minute=5))
    assert p.create_verify_pod


def test_status_carries_the_headline_metric_for_kubectl_get() -> None:
    from datetime import UTC, datetime

    from forja_operator.status.modelversion import plan_modelversion

    mv = {
        "metadata": {"name": "m-v1.0.0", "generation": 1},
        "spec": {
            "model": "m", "version": "1.0.0", "format": "onnx",
            "artifact": {"uri": "s3://b/k", "sha256": "0" * 64},
            "metrics": {"mAP50": 0.8123456},
        },
    }
    plan = plan_modelversion(mv, [], datetime.now(UTC))
    assert plan.status.headline_metric == "mAP50=0.8123"


def test_headline_metric_skips_the_baseline_the_trainer_reports() -> None:
    from forja_api.v1alpha1.modelversion import ModelVersionSpec, headline_metric

    def spec(metrics: dict[str, float], headline: str | None = None) -> ModelVersionSpec:
        return ModelVersionSpec.model_validate(
            {
                "model": "m", "version": "1.0.0", "format": "onnx",
                "artifact": {"uri": "s3://b/k", "sha256": "0" * 64},
                "metrics": metrics, "headlineMetric": headline,
            }
        )

    # As the API server returns them: sorted by name.
    yolo = {"baseline_mAP50": 0.0, "epochs_trained": 12, "mAP50": 0.42, "precision": 0.8}
    assert headline_metric(spec(yolo)) == "mAP50=0.42"
    assert headline_metric(spec({"baseline_iou": 0.0})) == "baseline_iou=0"
    assert headline_metric(spec({"baseline_iou": 0.0, "iou": 0.7}, "baseline_iou")) == (
        "baseline_iou=0"
    )
    assert headline_metric(spec({})) is None
