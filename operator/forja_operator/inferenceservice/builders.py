"""Pure builders of an InferenceService's children, as manifest dicts.

One Deployment per served revision (a version, or a pipeline's version set), one
Service over all of them, a PodDisruptionBudget, and optionally a
HorizontalPodAutoscaler (on the active revision) and a Gateway API HTTPRoute with
per-revision Services as its weighted backends. No client imports: the handler
applies what these return.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from forja_api import contract, serving
from forja_api.v1alpha1.common import API_VERSION
from forja_api.v1alpha1.inferenceservice import InferenceServiceSpec
from forja_operator.builders.common import scheduling_fields
from forja_operator.inferenceservice.errors import InvalidServiceSpecError
from forja_operator.inferenceservice.resolve import Revision

__all__ = [
    "GATEWAY_API_VERSION",
    "GRPC_SERVICE_PORT",
    "REVISION_LABEL",
    "SERVER_COMPONENT",
    "VERSION_ANNOTATION",
    "Owner",
    "ServerSettings",
    "child_name",
    "grpc_address",
    "render_deployment",
    "render_hpa",
    "render_http_route",
    "render_pdb",
    "render_revision_service",
    "render_service",
    "selector_labels",
    "service_url",
    "serving_config",
]

REVISION_LABEL = f"{contract.GROUP}/revision"
VERSION_ANNOTATION = f"{contract.GROUP}/version"
SERVER_COMPONENT = "model-server"
GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
SERVICE_PORT = 80
GRPC_SERVICE_PORT = serving.DEFAULT_GRPC_PORT
NONROOT_UID = 65532
PVC_ROOT = "/mnt/forja/pvc"
# The server's default cache sits in /tmp, the pod's one writable emptyDir (the root
# filesystem is read-only).
MODEL_CACHE_DIR = serving.DEFAULT_MODEL_CACHE


@dataclass(frozen=True)
class ServerSettings:
    """Operator configuration the server pods need (from Helm values via config)."""

    image: str
    command: tuple[str, ...] = tuple(serving.SERVER_COMMAND)
    s3_endpoint: str | None = None
    s3_secret: str | None = None
    """A Secret with the default store's credentials under keys accessKey / secretKey."""
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class Owner:
    """The InferenceService children are owned by (garbage-collected with it)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "InferenceService",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def child_name(base: str, suffix: str = "") -> str:
    """base-suffix, shortened with a digest to fit a DNS label (63 chars)."""
    name = f"{base}-{suffix}" if suffix else base
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: 63 - 9].rstrip('-')}-{digest}"


def selector_labels(owner: Owner) -> dict[str, str]:
    return {contract.ISVC_LABEL: owner.name, contract.COMPONENT_LABEL: SERVER_COMPONENT}


def _meta(owner: Owner, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {
            **selector_labels(owner),
            contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
            **(labels or {}),
        },
        "ownerReferences": [owner.reference()],
    }


def serving_config(
    owner: Owner, spec: InferenceServiceSpec, revision: Revision
) -> serving.ServingConfig:
    """The server's whole configuration for one revision (FORJA_SERVER_CONFIG)."""
    single = len(revision.stages) == 1 and not spec.stages
    return serving.ServingConfig(
        name=owner.name[:63],
        stages=[
            serving.StageArtifact(
                # A single model is served under its model name (/v2/models/<model>).
                name=s.record.model if single else s.stage,
                uri=s.record.uri,
                sha256=s.record.sha256,
                format=s.record.format,
                task=s.record.task,
                model=s.record.model,
                version=s.record.version,
                parameters=dict(s.parameters),
            )
            for s in revision.stages
        ],
        batching=serving.BatchingConfig(
            max_batch_size=spec.batching.max_batch_size,
            max_latency_ms=spec.batching.max_latency_ms,
        ),
        port=serving.DEFAULT_PORT,
        grpc_port=serving.DEFAULT_GRPC_PORT,
        rate_limit=serving.RateLimitConfig(
            requests_per_second=spec.rate_limit.requests_per_second,
            burst=spec.rate_limit.burst,
            client_header=spec.rate_limit.client_header,
        ) if spec.rate_limit else None,
        prediction_cache=serving.PredictionCacheConfig(
            max_bytes=spec.prediction_cache.max_bytes,
            redis_url=spec.prediction_cache.redis_url,
            ttl_seconds=spec.prediction_cache.ttl_seconds,
        ) if spec.prediction_cache else None,
    )


def _credentials_secret(revision: Revision, settings: ServerSettings) -> str | None:
    own = {s.record.credentials_secret for s in revision.stages if s.record.credentials_secret}
    if len(own) > 1:
        raise InvalidServiceSpecError(
            "stages", f"stages' ModelVersions name different credentials Secrets: {sorted(own)}"
        )
    return own.pop() if own else settings.s3_secret


def _pvc_claims(revision: Revision) -> list[str]:
    return sorted(
        {
            urlparse(s.record.uri).netloc
            for s in revision.stages
            if s.record.uri.startswith("pvc://")
        }
    )


def _resources(spec: InferenceServiceSpec) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if spec.resources.cpu:
        amounts["cpu"] = spec.resources.cpu
    if spec.resources.memory:
        amounts["memory"] = spec.resources.memory
    limits: dict[str, str] = dict(amounts)
    if spec.resources.gpus:
        limits["nvidia.com/gpu"] = str(spec.resources.gpus)
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = amounts
    if limits:
        out["limits"] = limits
    return out


def _server_env(
    config: serving.ServingConfig, revision: Revision, settings: ServerSettings
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        *({"name": k, "value": v} for k, v in config.to_env().items()),
        {"name": serving.MODEL_CACHE_ENV, "value": MODEL_CACHE_DIR},
        *(
            {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}
            for name, path in (
                (contract.NAMESPACE_ENV, "metadata.namespace"),
                (contract.POD_NAME_ENV, "metadata.name"),
                (contract.POD_IP_ENV, "status.podIP"),
            )
        ),
    ]
    # Store credentials only for pods that read the store (least privilege).
    uses_s3 = any(s.record.uri.startswith("s3://") for s in revision.stages)
    secret = _credentials_secret(revision, settings) if uses_s3 else None
    if uses_s3 and settings.s3_endpoint:
        env.append({"name": contract.S3_ENDPOINT_ENV, "value": settings.s3_endpoint})
    if secret:
        env += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for var, key in (
                ("AWS_ACCESS_KEY_ID", "accessKey"),
                ("AWS_SECRET_ACCESS_KEY", "secretKey"),
            )
        ]
    return env


def _server_volumes(revision: Revision) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts): a writable /tmp and each PVC the revision reads, read-only."""
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, the pod's own
    ]
    for i, claim in enumerate(_pvc_claims(revision)):
        volumes.append(
            {"name": f"pvc-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
        mounts.append({"name": f"pvc-{i}", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
    return volumes, mounts


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _server_pod_spec(
    spec: InferenceServiceSpec,
    revision: Revision,
    config: serving.ServingConfig,
    settings: ServerSettings,
) -> dict[str, Any]:
    volumes, mounts = _server_volumes(revision)
    container = {
        "name": "server",
        "image": spec.image or settings.image,
        "command": list(settings.command),
        "ports": [
            {"name": serving.PORT_NAME, "containerPort": config.port, "protocol": "TCP"},
            *([{"name": serving.GRPC_PORT_NAME, "containerPort": config.grpc_port,
                "protocol": "TCP"}] if config.grpc_port else []),
        ],
        "env": _server_env(config, revision, settings),
        # Ready means: artifact fetched, sha256 verified, model loaded (the server's
        # own readiness endpoint turns true only then).
        "readinessProbe": _probe(serving.READY_PATH, 1, 2),
        "livenessProbe": {**_probe(serving.LIVE_PATH, 10, 3), "initialDelaySeconds": 10},
        "resources": _resources(spec),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": NONROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # Longer than the server's graceful_shutdown_seconds (its drain after SIGTERM).
        "terminationGracePeriodSeconds": int(config.graceful_shutdown_seconds) + 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": NONROOT_UID,
            "runAsGroup": NONROOT_UID,
            "fsGroup": NONROOT_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    return pod_spec | scheduling_fields(spec.scheduling)


def render_deployment(
    owner: Owner,
    spec: InferenceServiceSpec,
    revision: Revision,
    replicas: int | None,
    settings: ServerSettings,
) -> dict[str, Any]:
    """The Deployment serving one revision. replicas None leaves them to the HPA."""
    labels = {**selector_labels(owner), REVISION_LABEL: revision.slug}
    if len(revision.stages) == 1:
        labels[contract.MODEL_LABEL] = revision.stages[0].record.model
    config = serving_config(owner, spec, revision)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": {**selector_labels(owner), REVISION_LABEL: revision.slug}},
        "revisionHistoryLimit": 2,
        "progressDeadlineSeconds": max(spec.rollout.progress_deadline_seconds, 10),
        # A spec change to a serving revision never drops below its replicas.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": labels, "annotations": {VERSION_ANNOTATION: revision.version}},
            "spec": _server_pod_spec(spec, revision, config, settings),
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_meta(owner, child_name(owner.name, revision.slug), labels),
            "annotations": {VERSION_ANNOTATION: revision.version},
        },
        "spec": deployment_spec,
    }


def _service(owner: Owner, name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(owner, name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                # gRPC over cleartext HTTP/2; appProtocol tells meshes and gateways so.
                {"name": serving.GRPC_PORT_NAME, "port": GRPC_SERVICE_PORT,
                 "targetPort": serving.GRPC_PORT_NAME, "protocol": "TCP",
                 "appProtocol": "kubernetes.io/h2c"},
            ],
        },
    }


def render_service(owner: Owner) -> dict[str, Any]:
    """One Service over every revision's ready pods: the stable address of the model."""
    return _service(owner, child_name(owner.name), selector_labels(owner))


def render_revision_service(owner: Owner, revision_slug: str) -> dict[str, Any]:
    """A Service over one revision, an HTTPRoute backend."""
    svc = _service(
        owner,
        child_name(owner.name, revision_slug),
        {**selector_labels(owner), REVISION_LABEL: revision_slug},
    )
    svc["metadata"]["labels"][REVISION_LABEL] = revision_slug
    return svc


def render_http_route(
    owner: Owner, spec: InferenceServiceSpec, weights: Mapping[str, int]
) -> dict[str, Any]:
    """Exact traffic weights per revision slug through the spec's Gateway."""
    assert spec.gateway is not None
    parent: dict[str, Any] = {"name": spec.gateway.name}
    if spec.gateway.namespace:
        parent["namespace"] = spec.gateway.namespace
    if spec.gateway.section_name:
        parent["sectionName"] = spec.gateway.section_name
    backends = [
        {"name": child_name(owner.name, slug), "port": SERVICE_PORT, "weight": weight}
        for slug, weight in sorted(weights.items())
    ]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": _meta(owner, child_name(owner.name)),
        "spec": {
            "parentRefs": [parent],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": backends,
                }
            ],
        },
    }


def render_pdb(owner: Owner) -> dict[str, Any]:
    # maxUnavailable 1 rather than minAvailable: a one-replica service must not
    # block node drains forever, and during a rollout the pod count changes.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(owner, child_name(owner.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner)}},
    }


def render_hpa(owner: Owner, spec: InferenceServiceSpec, active_slug: str) -> dict[str, Any]:
    """Scales the active revision's Deployment; canaries keep their step's replicas."""
    assert spec.autoscaling is not None
    auto = spec.autoscaling
    if auto.max_replicas < auto.min_replicas:
        raise InvalidServiceSpecError("autoscaling.maxReplicas", "must be >= minReplicas")
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(owner, child_name(owner.name)),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": child_name(owner.name, active_slug),
            },
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": auto.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def service_url(owner: Owner, settings: ServerSettings) -> str:
    return f"http://{child_name(owner.name)}.{owner.namespace}.svc.{settings.cluster_domain}"


def grpc_address(owner: Owner, settings: ServerSettings) -> str:
    """host:port of the Service's gRPC port (what gRPC clients take, no scheme)."""
    host = f"{child_name(owner.name)}.{owner.namespace}.svc.{settings.cluster_domain}"
    return f"{host}:{GRPC_SERVICE_PORT}"
