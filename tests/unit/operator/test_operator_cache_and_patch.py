from forja_operator.cache import Store


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
