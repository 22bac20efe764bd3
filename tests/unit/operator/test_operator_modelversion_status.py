from datetime import UTC, datetime, timedelta

from forja_api import conditions as c
from forja_operator.builders.modelversion import verify_pod_name
from forja_operator.status.modelversion import (
    ALIASES_ANNOTATION,
    own_latest,
    plan_model_aliases,
    plan_modelversion,
    verify_backoff,
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


def verify_pod(body, code, owner_uid="mine"):
    """The verify pod as the operator makes it (controlled by ``body``; None: by no one)."""
    name = verify_pod_name(body["metadata"]["name"], "s3://b/model.onnx", SHA)
    meta = {"name": name, "namespace": "ns"}
    if owner_uid is not None:
        uid = body["metadata"]["uid"] if owner_uid == "mine" else owner_uid
        meta["ownerReferences"] = [
            {
                "kind": "ModelVersion",
                "name": body["metadata"]["name"],
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "metadata": meta,
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


def test_a_version_becoming_ready_takes_latest_in_its_own_write_only_if_highest():
    old = mv("m-v1.0.0", "1.0.0", "Ready", latest=True)
    new, lower = mv("m-v2.0.0", "2.0.0", "Verifying"), mv("m-v0.9.0", "0.9.0", "Verifying")
    ready = {"phase": "Ready"}
    assert own_latest(new, ready, [old, new, lower]) is True
    assert own_latest(lower, ready, [old, new, lower]) is False
    # A latest version that fails again loses latest in the same write.
    assert own_latest(old, {"phase": "Failed", "latest": True}, [old, new]) is False


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


def test_verify_backoff_doubles_from_10_seconds_up_to_5_minutes():
    assert [verify_backoff(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_a_verify_pod_that_keeps_failing_backs_off_and_says_why():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    failing = verify_pod(body, 1)
    term = failing["status"]["containerStatuses"][0]["state"]["terminated"]
    term["message"] = '{"message": "s3://b/model.onnx: store unreachable"}'
    now, waits = NOW, []
    for _ in range(7):
        p = plan_modelversion(body, [failing], now)
        assert p.status.phase == "Verifying" and failing["metadata"]["name"] in p.delete_pods
        waits.append(p.retry_after)
        body["status"] = p.status.to_wire()
        # Just before the wait is over no pod is made; at its end the next one is.
        early = plan_modelversion(body, [], now + timedelta(seconds=p.retry_after - 1))
        assert not early.create_verify_pod and early.retry_after == 1
        now += timedelta(seconds=p.retry_after)
        again = plan_modelversion(body, [], now)
        assert again.create_verify_pod
        body["status"] = again.status.to_wire()
    assert waits == [10, 20, 40, 80, 160, 300, 300]
    # The version says why, how often, and when the next try is.
    message = body["status"]["message"]
    assert "store unreachable" in message and "failed 7 times in a row" in message
    assert "next try in 300s, at 2026-01-01T00:" in message
    cond = next(x for x in body["status"]["conditions"] if x["type"] == c.ARTIFACT_VERIFIED)
    assert cond["status"] == "Unknown" and cond["reason"] == c.REASON_VERIFY_ERROR
    assert "store unreachable" in cond["message"]
    assert any(ev.reason == c.REASON_VERIFY_ERROR for ev in p.events)


def test_a_verdict_after_failed_checks_still_fails_at_once():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    for _ in range(3):
        body["status"] = plan_modelversion(body, [verify_pod(body, 1)], NOW).status.to_wire()
    p = plan_modelversion(body, [verify_pod(body, 65)], NOW)
    assert p.status.phase == "Failed" and p.retry_after is None
    cond = next(x for x in p.status.conditions if x.type == c.ARTIFACT_VERIFIED)
    assert cond.reason == c.REASON_CHECKSUM_MISMATCH


def test_a_new_artifact_starts_its_backoff_from_the_beginning():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    for _ in range(4):
        body["status"] = plan_modelversion(body, [verify_pod(body, 1)], NOW).status.to_wire()
    body["spec"]["artifact"]["sha256"] = "c" * 64
    # The failures counted belong to the old (uri, sha256): the new one is checked now.
    assert plan_modelversion(body, [], NOW).create_verify_pod


def test_status_carries_the_headline_metric_for_kubectl_get() -> None:
    from datetime import UTC, datetime

    from forja_operator.status.modelversion import plan_modelversion

    mv = {
        "metadata": {"name": "m-v1.0.0", "generation": 1},
        "spec": {
            "model": "m",
            "version": "1.0.0",
            "format": "onnx",
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
                "model": "m",
                "version": "1.0.0",
                "format": "onnx",
                "artifact": {"uri": "s3://b/k", "sha256": "0" * 64},
                "metrics": metrics,
                "headlineMetric": headline,
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


def test_a_stranger_holding_the_verify_pods_name_never_makes_a_version_ready():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    forged = verify_pod(body, 0, owner_uid=None)  # exited 0, but nobody's child
    p = plan_modelversion(body, [forged], NOW)
    assert p.status.phase == "Failed"
    assert not p.create_verify_pod and not p.delete_pods  # not ours to delete either
    ready = next(x for x in p.status.conditions if x.type == c.READY)
    assert (ready.status, ready.reason) == ("False", c.REASON_POD_NOT_OWNED)
    assert [e.reason for e in p.events] == [c.REASON_POD_NOT_OWNED]
    # A controller reference to another live object is no better.
    other = verify_pod(body, 0, owner_uid="u-other")
    other["metadata"]["ownerReferences"][0]["name"] = "other"
    assert plan_modelversion(body, [other], NOW).status.phase == "Failed"


def test_a_gone_namesakes_verify_pod_is_waited_out_not_trusted():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    old = verify_pod(body, 0, owner_uid="u-previous-incarnation")
    p = plan_modelversion(body, [old], NOW)
    assert p.status.phase == "Verifying" and p.create_verify_pod


def test_a_controller_reference_that_does_not_block_deletion_is_not_ours():
    body = mv()
    body["status"] = plan_modelversion(body, [], NOW).status.to_wire()
    weak = verify_pod(body, 0)
    weak["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = False
    assert plan_modelversion(body, [weak], NOW).status.phase == "Failed"
