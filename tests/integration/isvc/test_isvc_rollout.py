"""InferenceService on the local cluster (issue 5, part 6).

Serve v1; move `production` to v2 and watch the canary steps complete; a v3 that
cannot load is rolled back while v2 keeps serving a client that sends requests the
whole time (0 failures); deleting the service removes its children; a two-stage
pipeline answers. The controller runs as its own process (kopf with the
InferenceService handler module); the model server is the stand-in in
tests/support/ that keeps forja_server's contract (fetch, sha256, load, then ready).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from fixtures.cluster import Cluster, wait_for
from fixtures.real_cluster import on_real_nodes, restricted_namespaces

from .isvc_support import (
    CHECKOUT,
    GROUP,
    VERSION,
    Controller,
    Models,
    Sampler,
    Store,
    Traffic,
    api,
    condition,
    get_isvc,
)

pytestmark = pytest.mark.cluster

# Verify and server pods run from forja/server under the restricted profile.
cluster = on_real_nodes("server")
namespace = restricted_namespaces()

ROLLOUT = {"canarySteps": [10, 50, 100], "pauseSeconds": 2, "progressDeadlineSeconds": 15,
           "maxErrorRate": 0.2}


def store_of(cluster: Cluster) -> Store:
    return Store(cluster.s3_endpoint, cluster.s3_access_key, cluster.s3_secret_key,
                 cluster.bucket)


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHECKOUT / "crds"))
    cluster.wait_established(*(f"{plural}.{GROUP}" for plural in ("modelversions",
                                                                   "inferenceservices")))


@pytest.fixture
def controller(cluster: Cluster, namespace: str, crds: None, tmp_path: Path,
               request: pytest.FixtureRequest) -> Iterator[Controller]:
    # Indirect parameter "real": serve with the real forja_server instead of the stand-in.
    real = getattr(request, "param", "standin") == "real"
    ctl = Controller(namespace, tmp_path / "controller.log", store_of(cluster), standin=not real)
    ctl.start(cluster.kubeconfig, tmp_path)
    yield ctl
    # Services go first, while the controller runs (its daemon holds a finalizer).
    cluster.kubectl("delete", "inferenceservices", "--all", "-n", namespace, "--timeout=60s",
                    check=False)
    ctl.stop()
    print(ctl.tail())


@pytest.fixture
def models(cluster: Cluster, namespace: str, crds: None, tmp_path: Path) -> Iterator[Models]:
    m = Models(namespace, store_of(cluster), tmp_path / "artifacts")
    yield m
    m.cleanup()


def create_isvc(namespace: str, name: str, spec: dict[str, Any]) -> None:
    api().create_namespaced_custom_object(GROUP, VERSION, namespace, "inferenceservices", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
        "metadata": {"name": name}, "spec": spec})


def wait_status(namespace: str, name: str, check: Callable[[dict[str, Any]], Any],
                timeout: float, message: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiException):
            obj = get_isvc(namespace, name)
            if check(obj):
                return obj
        time.sleep(0.3)
    mvs = api().list_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions")
    phases = {m["metadata"]["name"]: (m.get("status") or {}).get("phase") for m in mvs["items"]}
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {message}; status: "
                f"{json.dumps(obj.get('status'), indent=1)}; model versions: {phases}")


def ready_on(version: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return (condition(obj, "Ready").get("status") == "True"
                and st.get("activeVersion") == version and not st.get("canaryVersion")
                and st.get("observedGeneration") == obj["metadata"]["generation"])

    return check


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = cluster.get_json("events", "-n", namespace,
                             "--field-selector", f"involvedObject.name={name}")["items"]
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def deployments(cluster: Cluster, namespace: str) -> dict[str, int]:
    items = cluster.get_json("deployments", "-n", namespace)["items"]
    return {d["metadata"]["name"]: d["spec"].get("replicas", 1) for d in items}


def service_url(cluster: Cluster, namespace: str, name: str, model: str) -> str:
    ip = cluster.get_json("service", name, "-n", namespace)["spec"]["clusterIP"]
    return f"http://{ip}:80/v2/models/{model}/infer"


def test_serve_roll_out_roll_back_and_delete(cluster: Cluster, namespace: str,
                                             controller: Controller, models: Models) -> None:
    v1 = models.create("smoke", "1.0.0", aliases=["production"])
    v2 = models.create("smoke", "2.0.0")
    v3 = models.create("smoke", "3.0.0", loadable=False)
    create_isvc(namespace, "smoke", {"model": "smoke", "selector": {"alias": "production"},
                                     "replicas": 2, "rollout": ROLLOUT})

    # --- serve v1 ---------------------------------------------------------------
    wait_status(namespace, "smoke", ready_on("1.0.0"), 90, "v1 Ready")
    # Ready (the target serves) can come before every replica is up; phase Ready waits.
    obj = wait_status(namespace, "smoke", lambda o: o["status"].get("readyReplicas") == 2,
                      60, "both replicas ready")
    st = obj["status"]
    assert st["url"] == f"http://smoke.{namespace}.svc.cluster.local"
    assert st["phase"] == "Ready" and st["readyReplicas"] == 2
    assert st["traffic"] == [{"version": "1.0.0", "percent": 100, "readyReplicas": 2,
                              "replicas": 2}]
    assert deployments(cluster, namespace) == {"smoke-v1-0-0": 2}
    pdb = cluster.get_json("pdb", "smoke", "-n", namespace)
    assert pdb["spec"]["maxUnavailable"] == 1
    dep = cluster.get_json("deployment", "smoke-v1-0-0", "-n", namespace)
    assert dep["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    url = service_url(cluster, namespace, "smoke", "smoke")

    with Traffic(url) as client:
        # The first answers may race the proxy learning the new Service's endpoints.
        wait_for(lambda: client.answers["1.0.0"] >= 5, timeout=30, message="answers from v1")
        client.reset()
        wait_for(lambda: client.answers["1.0.0"] >= 5, timeout=30, message="answers from v1")
        assert not client.failures, client.failures[:5]

        # --- move production to v2: canary steps, then promotion -------------------
        client.reset()
        with Sampler(namespace, "smoke") as sampler:
            models.set_aliases(v1, [])
            models.set_aliases(v2, ["production"])
            wait_status(namespace, "smoke", ready_on("2.0.0"), 120, "v2 promoted")
        steps = {s["rollout"]["step"] for s in sampler.samples
                 if s.get("canaryVersion") == "2.0.0"}
        assert steps == {0, 1, 2}, sampler.samples[-3:]
        during = [s for s in sampler.samples if s.get("canaryVersion")]
        assert all(condition({"status": s}, "Serving").get("status") == "True" for s in during)
        assert all(condition({"status": s}, "Ready").get("status") == "False" for s in during)
        assert all(condition({"status": s}, "RolloutProgressing").get("status") == "True"
                   for s in during)
        reasons = [e["reason"] for e in events(cluster, namespace, "smoke")]
        assert reasons.count("CanaryStep") >= 2 and "Promoted" in reasons, reasons
        st = get_isvc(namespace, "smoke")["status"]
        assert st["previousVersion"] == "1.0.0"
        wait_for(lambda: deployments(cluster, namespace) == {"smoke-v2-0-0": 2}, timeout=30,
                 message="v1 Deployment removed")
        assert client.answers["2.0.0"] > 0
        rollout_failures = list(client.failures)

        # --- v3 cannot load: rolled back, v2 keeps serving -------------------------
        client.reset()
        with Sampler(namespace, "smoke") as sampler:
            models.set_aliases(v2, [])
            models.set_aliases(v3, ["production"])
            obj = wait_status(
                namespace, "smoke",
                lambda o: condition(o, "RolledBack").get("status") == "True", 90,
                "v3 rolled back")
        rolled = condition(obj, "RolledBack")
        assert rolled["reason"] == "ProgressDeadlineExceeded", rolled
        assert "2.0.0 keeps serving" in rolled["message"]
        st = obj["status"]
        assert st["activeVersion"] == "2.0.0" and not st.get("canaryVersion")
        assert condition(obj, "Ready")["reason"] == "RolledBack"
        assert st["phase"] == "Degraded"
        assert any(s.get("canaryVersion") == "3.0.0" for s in sampler.samples)
        assert all(condition({"status": s}, "Serving").get("status") == "True"
                   for s in sampler.samples if s)
        wait_for(lambda: deployments(cluster, namespace) == {"smoke-v2-0-0": 2}, timeout=30,
                 message="v3 Deployment removed")
        warnings = [e for e in events(cluster, namespace, "smoke") if e["type"] == "Warning"]
        assert any(e["reason"] == "RolledBack" for e in warnings)
        # The stable path never failed a request, and nothing reached v3.
        assert client.failures == [], client.failures[:5]
        assert set(client.answers) == {"2.0.0"} and client.answers["2.0.0"] > 20
    print(f"answers during the v1->v2 rollout: failures={len(rollout_failures)}")
    assert rollout_failures == [], rollout_failures[:5]

    # --- deleting the service removes its children --------------------------------
    cluster.kubectl("delete", "inferenceservice", "smoke", "-n", namespace, "--timeout=60s")

    def children_gone() -> bool:
        left = cluster.kubectl("get", "deployments,services,pdb", "-n", namespace,
                               "-l", "forja.dev/inferenceservice=smoke", "-o", "name").stdout
        return not left.strip()

    wait_for(children_gone, timeout=60, message="children garbage-collected")


def test_a_newer_version_in_range_rolls_out_by_itself(cluster: Cluster, namespace: str,
                                                      controller: Controller,
                                                      models: Models) -> None:
    models.create("clf", "1.0.0")
    create_isvc(namespace, "clf", {"model": "clf", "selector": {"range": "^1.0"},
                                   "rollout": {"canarySteps": [50, 100], "pauseSeconds": 1,
                                               "progressDeadlineSeconds": 30}})
    wait_status(namespace, "clf", ready_on("1.0.0"), 90, "1.0.0 Ready")
    models.create("clf", "2.0.0")  # outside the range: nothing happens
    models.create("clf", "1.1.0")
    obj = wait_status(namespace, "clf", ready_on("1.1.0"), 90, "1.1.0 rolled out")
    assert obj["status"]["previousVersion"] == "1.0.0"


def test_a_pipeline_answers(cluster: Cluster, namespace: str, controller: Controller,
                            models: Models) -> None:
    models.create("detector", "1.0.0", aliases=["production"])
    models.create("verifier", "0.3.0")
    create_isvc(namespace, "sai", {"stages": [
        {"name": "detector", "model": "detector", "selector": {"alias": "production"},
         "parameters": {"confidence": 0.25}},
        {"name": "verifier", "model": "verifier", "selector": {"range": ">=0.1.0 <1.0.0"},
         "parameters": {"sequenceLength": 4}},
    ]})
    version = "detector@1.0.0,verifier@0.3.0"
    obj = wait_status(namespace, "sai", ready_on(version), 90, "pipeline Ready")
    assert len([d for d in deployments(cluster, namespace) if d.startswith("sai-")]) == 1
    url = service_url(cluster, namespace, "sai", "sai")
    with Traffic(url) as client:
        # The first answers may race the proxy learning the new Service's endpoints.
        wait_for(lambda: sum(client.answers.values()) >= 3, timeout=30, message="answers")
        client.reset()
        wait_for(lambda: sum(client.answers.values()) >= 3, timeout=30, message="answers")
    assert client.failures == []
    assert set(client.answers) == {"1.0.0,0.3.0"}  # detector first, then verifier
    assert obj["status"]["traffic"][0]["version"] == version


def test_a_canary_answering_errors_is_rolled_back(cluster: Cluster, namespace: str,
                                                  controller: Controller,
                                                  models: Models) -> None:
    v1 = models.create("err", "1.0.0", aliases=["production"])
    v2 = models.create("err", "2.0.0", error_rate=1.0)
    create_isvc(namespace, "err", {"model": "err", "selector": {"alias": "production"},
                                   "rollout": {"canarySteps": [50, 100], "pauseSeconds": 20,
                                               "progressDeadlineSeconds": 30,
                                               "maxErrorRate": 0.2}})
    wait_status(namespace, "err", ready_on("1.0.0"), 90, "1.0.0 Ready")
    with Traffic(service_url(cluster, namespace, "err", "err"), interval=0.02) as client:
        # The first answers may race the proxy learning the new Service's endpoints.
        wait_for(lambda: client.answers["1.0.0"] >= 5, timeout=30, message="answers from v1")
        client.reset()
        models.set_aliases(v1, [])
        models.set_aliases(v2, ["production"])
        obj = wait_status(namespace, "err",
                          lambda o: condition(o, "RolledBack").get("status") == "True", 90,
                          "error-rate rollback")
    assert condition(obj, "RolledBack")["reason"] == "ErrorRateExceeded"
    assert obj["status"]["activeVersion"] == "1.0.0"
    # Failures came only from the canary (the stand-in's injected 500s); the stable answered.
    assert client.answers["1.0.0"] > 0
    assert all("500" in f for f in client.failures), client.failures[:5]


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["real"], indirect=True)
def test_the_real_server_becomes_ready_and_answers(cluster: Cluster, namespace: str,
                                                   controller: Controller,
                                                   models: Models) -> None:
    """The real ``python -m forja_server`` behind an InferenceService: ready only after
    fetching, verifying and loading a tiny ONNX classifier; answers through the Service."""
    import numpy as np

    from unit.server._server_tiny_models import TinyClassifier, write_artifact

    stage = write_artifact(models.dir, name="clf", module=TinyClassifier(3), architecture=None,
                           arch_config={}, task="classification", input_shape=[None, 3, 32, 32],
                           fmt="onnx", with_weights=False, class_names=["a", "b", "c"])
    models.create("clf", "1.0.0", artifact=Path(stage.uri.removeprefix("file://")))
    create_isvc(namespace, "clf", {"model": "clf", "selector": {"version": "1.0.0"},
                                   "rateLimit": {"requestsPerSecond": 0.01, "burst": 4},
                                   "predictionCache": {"maxBytes": 1 << 20}})
    obj = wait_status(namespace, "clf", ready_on("1.0.0"), 240, "real server Ready")
    assert obj["status"]["traffic"][0]["readyReplicas"] == 1
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                                   "data": x.reshape(-1).tolist()}]}).encode()
    url = service_url(cluster, namespace, "clf", "clf")

    def infer() -> dict[str, Any]:
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    # The first connection may race the proxy learning the new Service's endpoints.
    answer = wait_for(infer, timeout=30, interval=0.5, message="an answer through the Service")
    assert answer["model_name"] == "clf" and answer["outputs"], answer
    assert answer["model_version"] == "1.0.0"

    # The Open Inference Protocol over gRPC, through the Service's grpc port.
    import grpc

    from forja_server.protocol.grpc import grpc_predict_v2_pb2 as pb
    from forja_server.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    assert obj["status"]["grpcAddress"] == f"clf.{namespace}.svc.cluster.local:8081"
    ip = cluster.get_json("service", "clf", "-n", namespace)["spec"]["clusterIP"]
    with grpc.insecure_channel(f"{ip}:8081") as channel:
        stub = GRPCInferenceServiceStub(channel)
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="clf"), timeout=30)
        assert list(meta.versions) == ["1.0.0"]
        tensor = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                                       shape=[1, 3, 32, 32])
        reply = stub.ModelInfer(pb.ModelInferRequest(
            model_name="clf", model_version="1.0.0", inputs=[tensor],
            raw_input_contents=[x.tobytes()]), timeout=30)
    assert reply.model_version == "1.0.0"
    np.testing.assert_allclose(np.frombuffer(reply.raw_output_contents[0], np.float32),
                               answer["outputs"][0]["data"], rtol=1e-5)

    # spec.predictionCache: the gRPC call hit the HTTP call's entry (same input bytes).
    base = url.removesuffix("/v2/models/clf/infer")
    with urllib.request.urlopen(f"{base}/stats", timeout=30) as resp:
        stats = json.loads(resp.read())
    assert stats["cache"]["backend"] == "memory" and stats["cache"]["hits"] >= 1, stats
    # spec.rateLimit: burst 4 at 0.01/s; two POSTs spent, so some of the next three get 429.
    codes = []
    for _ in range(3):
        try:
            codes.append(infer() and 200)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
            if exc.code == 429:
                assert int(exc.headers["Retry-After"]) >= 1
    assert 429 in codes, codes


@pytest.mark.slow
@pytest.mark.parametrize("controller", ["real"], indirect=True)
def test_load_through_the_service_over_http_and_grpc(cluster: Cluster, namespace: str,
                                                     controller: Controller,
                                                     models: Models) -> None:
    """bench/server/load_service.py against the Service: p50/p99 at concurrency 8 over
    HTTP (binary) and gRPC (raw), no errors; the figures are printed (docs/server.md)."""
    import subprocess
    import sys

    from unit.server._server_tiny_models import TinyClassifier, write_artifact

    stage = write_artifact(models.dir, name="load", module=TinyClassifier(3),
                           architecture=None, arch_config={}, task="classification",
                           input_shape=[None, 3, 32, 32], fmt="onnx", with_weights=False,
                           class_names=["a", "b", "c"])
    models.create("load", "1.0.0", artifact=Path(stage.uri.removeprefix("file://")))
    create_isvc(namespace, "load", {"model": "load", "selector": {"version": "1.0.0"}})
    wait_status(namespace, "load", ready_on("1.0.0"), 240, "real server Ready")
    ip = cluster.get_json("service", "load", "-n", namespace)["spec"]["clusterIP"]
    root = Path(__file__).resolve().parents[3]
    wait_for(lambda: urllib.request.urlopen(f"http://{ip}/v2/health/ready", timeout=5).status
             == 200, timeout=30, message="the Service routing to the server")
    out = subprocess.run(
        [sys.executable, str(root / "bench/server/load_service.py"), "--http", f"http://{ip}",
         "--grpc", f"{ip}:8081", "--model", "load", "--concurrency", "8",
         "--requests", "300", "--json"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(
            str(root / p) for p in ("operator", "trainer_image", "server_image", "hack"))},
        capture_output=True, text=True, timeout=300, check=True).stdout
    results = {r["protocol"]: r for r in map(json.loads, out.splitlines())}
    print("\n" + "\n".join(json.dumps(r) for r in results.values()))
    assert results.keys() == {"http", "grpc"}
    for r in results.values():
        assert r["errors"] == 0 and r["requests"] == 300, r
        assert 0 < r["p50_ms"] <= r["p99_ms"], r
    assert 0 < results["http"]["server_p50_ms"] <= results["http"]["p99_ms"]


def test_deleting_a_service_while_the_operator_is_down_has_a_documented_way_out(
        cluster: Cluster, namespace: str, controller: Controller, models: Models) -> None:
    # kopf daemons always carry kopf's finalizer (kopf/on.py: requires_finalizer=True),
    # so only a live operator finishes a deletion; docs/security.md gives the way out.
    models.create("down", "1.0.0")
    create_isvc(namespace, "down", {"model": "down"})
    obj = wait_status(namespace, "down", ready_on("1.0.0"), 90, "1.0.0 Ready")
    assert obj["metadata"].get("finalizers") == ["kopf.zalando.org/KopfFinalizerMarker"]
    controller.stop()
    cluster.kubectl("delete", "inferenceservice", "down", "-n", namespace, "--wait=false")
    held = get_isvc(namespace, "down")
    assert held["metadata"].get("deletionTimestamp")
    # The documented way out: drop the finalizer; the garbage collector does the rest.
    cluster.kubectl("patch", "inferenceservice", "down", "-n", namespace, "--type=merge",
                    "-p", '{"metadata":{"finalizers":null}}')

    def children_gone() -> bool:
        left = cluster.kubectl("get", "inferenceservices,deployments,services,pdb", "-n",
                               namespace, "-l", "forja.dev/inferenceservice=down", "-o",
                               "name").stdout
        try:
            get_isvc(namespace, "down")
        except ApiException as exc:
            return exc.status == 404 and not left.strip()
        return False

    wait_for(children_gone, timeout=60, message="service and children gone without operator")
