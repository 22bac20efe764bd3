"""The ModelVersion a succeeded TrainingJob becomes, and the Pod that verifies an artifact."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from forja_api import contract
from forja_api.semver import Version
from forja_api.v1alpha1.common import API_VERSION
from forja_api.v1alpha1.modelversion import ModelVersionSpec
from forja_api.v1alpha1.trainingjob import TrainingJobSpec
from forja_operator.builders.common import (
    JOB_UID_LABEL,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    bounded_name,
    owner_reference,
    pvc_claims,
    pvc_volumes,
    store_env,
)
from forja_operator.config import OperatorConfig

__all__ = [
    "artifact_pod",
    "modelversion_name",
    "promotion_passes",
    "render_modelversion",
    "render_verify_pod",
    "verify_pod_name",
]


def modelversion_name(model: str, version: Version) -> str:
    """``<model>-v<version>``; '+' (build metadata) is not allowed in names.

    At most 63 characters (the name is the forja.dev/version label of its pods): a
    longer one is cut with a digest of the whole, so two versions never share a name.
    """
    return bounded_name(re.sub(r"[^a-z0-9.-]", "-", f"{model}-v{version}".lower()))


def promotion_passes(spec: TrainingJobSpec, metrics: dict[str, float]) -> bool:
    rule = spec.versioning.promotion
    if rule is None or rule.metric not in metrics:
        return False
    value = metrics[rule.metric]
    return value >= rule.threshold if rule.direction == "max" else value <= rule.threshold


def render_modelversion(
    job: dict[str, Any],
    spec: TrainingJobSpec,
    version: Version,
    result: contract.Result,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """The ModelVersion for a succeeded job; its lineage names the job and its config.

    Not owned by the job: deleting a finished TrainingJob (ttlSecondsAfterFinished)
    must not delete the model it produced.
    """
    if result.artifact is None:
        raise ValueError("result has no artifact")
    meta = job["metadata"]
    config = dict(job.get("spec", {}))
    if overrides:
        config["hyperparameters"] = {**config.get("hyperparameters", {}), **overrides}
    metrics = dict(result.metrics)
    rule = spec.versioning.promotion
    aliases = [rule.alias] if rule and promotion_passes(spec, metrics) else []
    mv_spec = ModelVersionSpec.model_validate(
        {
            "model": spec.model,
            "version": str(version),
            "format": result.artifact.format,
            "task": result.artifact.task,
            "artifact": {
                "uri": result.artifact.uri,
                "sha256": result.artifact.sha256,
                "size": result.artifact.size,
                "credentialsSecret": spec.output.credentials_secret,
            },
            "metrics": metrics,
            "source": {
                "trainingJob": meta["name"],
                "datasetUri": spec.dataset.uri,
                "datasetDigest": spec.dataset.digest,
                "pretrainedUri": result.pretrained.uri if result.pretrained else None,
                "pretrainedDigest": result.pretrained.sha256 if result.pretrained else None,
                "config": config,
            },
            "aliases": aliases,
            # The metric the job's promotion rule judges is the one its author cares about.
            "headlineMetric": rule.metric if rule and rule.metric in metrics else None,
        }
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": modelversion_name(spec.model, version),
            "namespace": meta["namespace"],
            "labels": {
                contract.MODEL_LABEL: spec.model,
                contract.JOB_LABEL: meta["name"],
                JOB_UID_LABEL: meta.get("uid", ""),
                contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
            },
        },
        "spec": mv_spec.to_wire(),
    }


def verify_pod_name(mv_name: str, uri: str, sha256: str) -> str:
    """One verify pod per (version, artifact uri, digest): a changed artifact gets a new
    check, and two versions of one artifact whose names share a long prefix never share
    (or adopt) each other's pod."""
    digest = hashlib.sha256(f"{mv_name}\n{uri}\n{sha256}".encode()).hexdigest()[:8]
    return f"{mv_name[: 63 - 16].rstrip('-.')}-verify-{digest}"


def render_verify_pod(mv: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """A short Pod that runs ``python -m forja_storage.verify <uri> <sha256>``.

    It runs in the ModelVersion's namespace with the store credentials from the
    Secret, so the operator itself never reads Secrets; the verdict comes back as
    its exit code and termination message.
    """
    spec = ModelVersionSpec.model_validate(mv["spec"])
    uri, sha = spec.artifact.uri, spec.artifact.sha256
    return artifact_pod(
        mv, spec, config,
        name=verify_pod_name(mv["metadata"]["name"], uri, sha),
        component="verify",
        command=["python", "-m", "forja_storage.verify", uri, sha],
        resources={"requests": {"cpu": "100m", "memory": "128Mi"},
                   "limits": {"memory": "512Mi"}},
        deadline_seconds=600,
    )


def artifact_pod(
    mv: dict[str, Any],
    spec: ModelVersionSpec,
    config: OperatorConfig,
    *,
    name: str,
    component: str,
    command: list[str],
    resources: dict[str, Any],
    deadline_seconds: int,
    env: list[dict[str, Any]] | None = None,
    scratch_tmp: bool = False,
) -> dict[str, Any]:
    """A one-shot Pod of the server image that reads a ModelVersion's artifact (verify,
    benchmark): owned by the version, restricted, no API token, the store credentials
    from the Secret by reference, PVC artifacts mounted read-only; ``scratch_tmp``
    makes /tmp an emptyDir, the only writable path."""
    meta = mv["metadata"]
    uri = spec.artifact.uri
    secret = spec.artifact.credentials_secret or config.artifact_store.credentials_secret
    volumes, mounts = pvc_volumes(pvc_claims(uri), writable=set())
    if scratch_tmp:
        volumes.append({"name": "tmp", "emptyDir": {}})
        mounts.append({"name": "tmp", "mountPath": "/tmp"})  # noqa: S108 - the pod's emptyDir
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {
                contract.VERSION_LABEL: meta["name"],
                contract.MODEL_LABEL: spec.model,
                contract.COMPONENT_LABEL: component,
                contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
            },
            "ownerReferences": [owner_reference(mv)],
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": dict(RESTRICTED_POD_SECURITY),
            "activeDeadlineSeconds": deadline_seconds,
            "containers": [
                {
                    "name": component,
                    "image": config.server_image,
                    "command": command,
                    "env": [
                        *store_env(uri.startswith("s3://"), config.artifact_store.endpoint,
                                   secret),
                        *(env or []),
                    ],
                    "volumeMounts": mounts,
                    "resources": resources,
                    "securityContext": dict(RESTRICTED_CONTAINER_SECURITY),
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
            "volumes": volumes,
        },
    }
