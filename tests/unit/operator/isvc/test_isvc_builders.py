from __future__ import annotations

import json

from forja_api import contract, serving
from forja_api.v1alpha1.inferenceservice import InferenceServiceSpec
from forja_operator.inferenceservice import builders as b
from forja_operator.inferenceservice.resolve import resolve_service

from .isvc_helpers import record

OWNER = b.Owner(name="smoke", namespace="ns", uid="uid-1")
SETTINGS = b.ServerSettings(
    image="forja/server:test", s3_endpoint="http://minio:9000", s3_secret="store"
)


def spec(**extra: object) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {"model": "smoke", "selector": {"version": "1.2.0"}, "replicas": 3, **extra}
    )


def deployment(sp: InferenceServiceSpec | None = None, replicas: int | None = 3) -> dict:
    sp = sp or spec()
    rev = resolve_service(sp, [record("1.2.0")])
    return b.render_deployment(OWNER, sp, rev, replicas, SETTINGS)


def env(dep: dict) -> dict:
    return {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_deployment_names_labels_and_owner() -> None:
    dep = deployment()
    meta = dep["metadata"]
    assert meta["name"] == "smoke-v1-2-0" and meta["namespace"] == "ns"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "forja.dev/v1alpha1",
            "kind": "InferenceService",
            "name": "smoke",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["annotations"][b.VERSION_ANNOTATION] == "1.2.0"
    selector = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    assert selector[b.REVISION_LABEL] == "v1-2-0"
    assert dep["spec"]["replicas"] == 3


def test_the_server_config_parses_back_on_the_server_side() -> None:
    value = env(deployment())[serving.SERVER_CONFIG_ENV]["value"]
    config = serving.ServingConfig.model_validate(json.loads(value))
    stage = config.stages[0]
    assert stage.name == "smoke" and stage.version == "1.2.0" and stage.sha256 == "a" * 64
    assert stage.uri == "s3://models/smoke/1.2.0/forja-model.json"
    assert config.batching.max_batch_size == 8


def test_no_store_credentials_for_pods_that_do_not_read_the_store() -> None:
    sp = spec()
    rec = record("1.2.0")
    rec = type(rec)(**{**rec.__dict__, "uri": "file:///models/smoke/m.onnx"})
    e = env(b.render_deployment(OWNER, sp, resolve_service(sp, [rec]), 1, SETTINGS))
    assert "AWS_ACCESS_KEY_ID" not in e and contract.S3_ENDPOINT_ENV not in e


def test_credentials_only_by_secret_reference() -> None:
    e = env(deployment())
    assert e[contract.S3_ENDPOINT_ENV]["value"] == "http://minio:9000"
    assert e["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {
        "name": "store",
        "key": "accessKey",
    }
    assert "value" not in e["AWS_SECRET_ACCESS_KEY"]
    assert e[contract.POD_IP_ENV]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_restricted_pod_security() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    sc = ctr["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert (
        pod["terminationGracePeriodSeconds"]
        > serving.ServingConfig(
            name="x",
            stages=[{"name": "x", "uri": "s3://a/b", "sha256": "a" * 64, "format": "onnx"}],
        ).graceful_shutdown_seconds
    )


def test_readiness_probe_is_the_servers_loaded_and_verified_signal() -> None:
    ctr = deployment()["spec"]["template"]["spec"]["containers"][0]
    assert ctr["readinessProbe"]["httpGet"] == {"path": serving.READY_PATH, "port": "http"}
    assert ctr["livenessProbe"]["httpGet"]["path"] == serving.LIVE_PATH
    assert ctr["command"] == serving.SERVER_COMMAND


def test_resources_and_gpus() -> None:
    ctr = deployment(spec(resources={"cpu": "500m", "memory": "1Gi", "gpus": 1}))["spec"][
        "template"
    ]["spec"]["containers"][0]
    assert ctr["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert ctr["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_hpa_owned_replicas_are_left_out() -> None:
    assert "replicas" not in deployment(replicas=None)["spec"]


def test_pvc_artifacts_are_mounted_read_only() -> None:
    sp = spec()
    rec = record("1.2.0")
    rec = type(rec)(**{**rec.__dict__, "uri": "pvc://models/smoke/1.2.0/m.onnx"})
    dep = b.render_deployment(OWNER, sp, resolve_service(sp, [rec]), 1, SETTINGS)
    pod = dep["spec"]["template"]["spec"]
    assert {
        "name": "pvc-0",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    } in pod["volumes"]
    assert any(
        m["mountPath"] == "/mnt/forja/pvc/models" and m["readOnly"]
        for m in pod["containers"][0]["volumeMounts"]
    )


def test_pipeline_stages_in_one_deployment() -> None:
    sp = InferenceServiceSpec.model_validate(
        {
            "stages": [
                {"name": "detector", "model": "det", "selector": {"version": "1.0.0"}},
                {
                    "name": "verifier",
                    "model": "ver",
                    "selector": {"version": "2.0.0"},
                    "parameters": {"sequenceLength": 4},
                },
            ]
        }
    )
    rev = resolve_service(sp, [record("1.0.0", model="det"), record("2.0.0", model="ver")])
    dep = b.render_deployment(OWNER, sp, rev, 1, SETTINGS)
    config = serving.ServingConfig.model_validate_json(env(dep)[serving.SERVER_CONFIG_ENV]["value"])
    assert [s.name for s in config.stages] == ["detector", "verifier"]
    assert config.is_pipeline and config.stages[1].parameters == {"sequenceLength": 4}
    assert contract.MODEL_LABEL not in dep["metadata"]["labels"]


def test_service_selects_every_revision() -> None:
    svc = b.render_service(OWNER)
    assert svc["spec"]["selector"] == {
        contract.ISVC_LABEL: "smoke",
        contract.COMPONENT_LABEL: b.SERVER_COMPONENT,
    }
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert b.service_url(OWNER, SETTINGS) == "http://smoke.ns.svc.cluster.local"


def test_http_route_exact_weights() -> None:
    sp = spec(gateway={"name": "gw", "namespace": "infra"})
    route = b.render_http_route(OWNER, sp, {"v1-0-0": 90, "v2-0-0": 10})
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert backends == [
        {"name": "smoke-v1-0-0", "port": 80, "weight": 90},
        {"name": "smoke-v2-0-0", "port": 80, "weight": 10},
    ]
    assert route["spec"]["parentRefs"] == [{"name": "gw", "namespace": "infra"}]
    rev_svc = b.render_revision_service(OWNER, "v2-0-0")
    assert rev_svc["metadata"]["name"] == "smoke-v2-0-0"
    assert rev_svc["spec"]["selector"][b.REVISION_LABEL] == "v2-0-0"


def test_hpa_and_pdb() -> None:
    hpa = b.render_hpa(OWNER, spec(autoscaling={"minReplicas": 2, "maxReplicas": 5}), "v1-2-0")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "smoke-v1-2-0"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    pdb = b.render_pdb(OWNER)
    assert pdb["spec"]["maxUnavailable"] == 1


def test_long_names_fit_a_dns_label() -> None:
    name = b.child_name("x" * 60, "v1-2-0")
    assert len(name) <= 63 and name != b.child_name("x" * 60, "v1-2-1")


def test_grpc_port_on_the_pod_and_the_service() -> None:
    dep = deployment()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": serving.DEFAULT_PORT, "grpc": serving.DEFAULT_GRPC_PORT}
    config = serving.ServingConfig.model_validate(
        json.loads(env(dep)[serving.SERVER_CONFIG_ENV]["value"]))
    assert config.grpc_port == serving.DEFAULT_GRPC_PORT
    svc_ports = {p["name"]: p for p in b.render_service(OWNER)["spec"]["ports"]}
    assert svc_ports["grpc"]["targetPort"] == "grpc"
    assert svc_ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert b.grpc_address(OWNER, SETTINGS) == f"smoke.ns.svc.cluster.local:{b.GRPC_SERVICE_PORT}"


def test_rate_limit_and_prediction_cache_reach_the_server() -> None:
    def config_of(sp: InferenceServiceSpec) -> serving.ServingConfig:
        value = env(deployment(sp))[serving.SERVER_CONFIG_ENV]["value"]
        return serving.ServingConfig.model_validate(json.loads(value))

    plain = config_of(spec())
    assert plain.rate_limit is None and plain.prediction_cache is None  # off by default
    config = config_of(spec(
        rateLimit={"requestsPerSecond": 20, "burst": 40, "clientHeader": "X-Api-Key"},
        predictionCache={"maxBytes": 1 << 20, "redisUrl": "redis://redis:6379/0"}))
    assert config.rate_limit is not None and config.prediction_cache is not None
    assert (config.rate_limit.requests_per_second, config.rate_limit.burst,
            config.rate_limit.client_header) == (20, 40, "X-Api-Key")
    assert config.prediction_cache.max_bytes == 1 << 20
    assert config.prediction_cache.redis_url == "redis://redis:6379/0"
