import json

from forja_operator.cache import Store, compact


def obj(name, rv, group_label="g"):
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(rv)}, "x": rv}


def test_older_resource_version_never_replaces_newer():
    s = Store()
    assert s.put(obj("a", 5))
    assert not s.put(obj("a", 4))
    assert s.get("ns", "a")["x"] == 5
    assert s.put(obj("a", 6))


def test_groups_follow_puts_and_removes():
    s = Store()
    s.put(obj("p1", 1), group="job")
    s.put(obj("p2", 1), group="job")
    assert {o["metadata"]["name"] for o in s.group("ns", "job")} == {"p1", "p2"}
    s.remove("ns", "p1")
    assert [o["metadata"]["name"] for o in s.group("ns", "job")] == ["p2"]


def pod_event(name):
    """A pod as a watch event brings it: parsed on its own, managedFields and all."""
    return json.loads(
        json.dumps(
            {
                "metadata": {
                    "name": name,
                    "namespace": "ns",
                    "resourceVersion": "7",
                    "labels": {"forja.dev/trainingjob": name},
                    "managedFields": [{"manager": "forja", "fieldsV1": {"f:spec": {}}}],
                },
                "spec": {"containers": [{"image": "forja-trainer:dev", "args": ["a", 1]}]},
                "status": {"phase": "Pending"},
            }
        )
    )


def test_stored_objects_drop_managed_fields_and_share_strings():
    s = Store()
    s.put(pod_event("p1"), group="job")
    s.put(pod_event("p2"), group="job")
    p1, p2 = s.get("ns", "p1"), s.get("ns", "p2")
    assert "managedFields" not in p1["metadata"]
    assert p1["spec"] == {"containers": [{"image": "forja-trainer:dev", "args": ["a", 1]}]}
    assert p1["metadata"]["labels"] == {"forja.dev/trainingjob": "p1"}
    # one copy of a repeated value and of every key, where each event parsed its own
    img1 = p1["spec"]["containers"][0]["image"]
    assert img1 is p2["spec"]["containers"][0]["image"]
    assert next(iter(p1["status"])) is next(iter(p2["status"]))


def test_compact_copies_so_the_callers_object_is_not_the_stored_one():
    event = pod_event("p")
    stored = compact(event)
    stored["status"]["phase"] = "Running"
    assert event["status"]["phase"] == "Pending"
    assert "managedFields" in event["metadata"]


def test_resource_path_follows_an_objects_own_api_version():
    from forja_operator.kube import resource_path

    assert resource_path("Pod", "ns", "p") == "/api/v1/namespaces/ns/pods/p"
    assert (
        resource_path("InferenceService", "ns", "s", "status")
        == "/apis/forja.dev/v1alpha1/namespaces/ns/inferenceservices/s/status"
    )
    # A Gateway API release serving HTTPRoute as v1beta1 gets that path, not the table's.
    assert (
        resource_path("HTTPRoute", "ns", "r", api_version="gateway.networking.k8s.io/v1beta1")
        == "/apis/gateway.networking.k8s.io/v1beta1/namespaces/ns/httproutes/r"
    )
