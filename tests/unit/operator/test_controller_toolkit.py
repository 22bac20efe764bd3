"""The controller toolkit every kind shares: merge patch, conditions, time, events, pods."""

from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from forja_api.v1alpha1.common import Condition
from forja_operator.controller.clock import parse_rfc3339, timestamp, to_rfc3339
from forja_operator.controller.conditions import set_condition
from forja_operator.controller.events import Event, event_manifest
from forja_operator.controller.patch import merge_patch
from forja_operator.controller.pods import container_state, pod_conditions, pod_is_ready
from forja_operator.controller.validation import validation_message


def test_merge_patch_nulls_removed_keys_and_skips_equal():
    assert merge_patch({"a": 1}, {"a": 1}) == {}
    assert merge_patch({"a": 1, "startTime": "t"}, {"a": 2}) == {"a": 2, "startTime": None}
    assert merge_patch(None, {"phase": "Pending"}) == {"phase": "Pending"}


def test_merge_patch_diffs_nested_objects_and_replaces_lists() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1]}
    new = {"a": 1, "b": {"c": 2}, "e": [2]}
    assert merge_patch(old, new) == {"b": {"d": None}, "e": [2]}
    assert merge_patch(new, new) == {}


def test_set_condition_moves_the_transition_time_only_when_status_changes():
    conds: list[Condition] = []
    set_condition(conds, "Ready", False, "Waiting", "", 1, "2026-01-01T00:00:00Z")
    set_condition(conds, "Ready", False, "StillWaiting", "m", 2, "2026-01-01T00:01:00Z")
    assert conds[0].last_transition_time == "2026-01-01T00:00:00Z"
    assert (conds[0].reason, conds[0].observed_generation) == ("StillWaiting", 2)
    set_condition(conds, "Ready", True, "Done", "", 2, "2026-01-01T00:02:00Z")
    assert len(conds) == 1 and conds[0].last_transition_time == "2026-01-01T00:02:00Z"


def test_times_round_trip():
    t = datetime(2026, 1, 1, 0, 0, 5, 123456, tzinfo=UTC)
    assert timestamp(t) == "2026-01-01T00:00:05Z" == to_rfc3339(t, seconds=True)
    assert parse_rfc3339(to_rfc3339(t)) == t
    assert parse_rfc3339("not a time") is None and parse_rfc3339(None) is None


def test_event_manifest_names_the_object_and_bounds_the_message():
    body = {"apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob"}
    body["metadata"] = {"name": "j", "namespace": "ns", "uid": "u"}
    ev = event_manifest(body, Event("Warning", "OOMKilled", "x" * 5000), "2026-01-01T00:00:00Z")
    assert ev["involvedObject"]["kind"] == "TrainingJob" and ev["involvedObject"]["uid"] == "u"
    assert ev["metadata"]["generateName"] == "j." and len(ev["message"]) == 1000


def test_pod_reading():
    pod = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "side", "state": {"running": {}}},
                {"name": "trainer", "state": {"terminated": {"exitCode": 3}}},
            ],
        }
    }
    assert container_state(pod, "trainer") == {"terminated": {"exitCode": 3}}
    assert container_state(pod) == {"running": {}}
    assert pod_is_ready(pod) and pod_conditions(pod)["Ready"]["status"] == "True"
    assert container_state({}) == {} and not pod_is_ready({})


def test_validation_message_names_the_field():
    class Spec(BaseModel):
        epochs: int

    with pytest.raises(ValidationError) as err:
        Spec.model_validate({"epochs": "many"})
    assert validation_message(err.value).startswith("spec.epochs: ")
    assert validation_message(err.value, prefix=None).startswith("epochs: ")
