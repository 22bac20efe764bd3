"""Operator configuration, read once at start from the YAML at ``$FORJA_CONFIG``.

The Helm chart renders exactly these keys from its values; every key has a
default so ``python -m forja_operator`` runs against a local cluster with no file.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from forja_operator.controller.validation import validation_message
from forja_operator.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "ArtifactStore",
    "BenchmarkConfig",
    "LeaderElection",
    "OperatorConfig",
    "load_config",
]

CONFIG_ENV = "FORJA_CONFIG"


class _Config(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ArtifactStore(_Config):
    uri: str = Field(default="s3://forja", pattern=r"^(s3|pvc|file)://.+")
    """Root of checkpoints and artifacts: <uri>/<namespace>/<job>/..."""
    endpoint: str | None = None
    """S3 endpoint URL for MinIO or any S3 API; None for AWS."""
    credentials_secret: str | None = "forja-artifact-store"  # noqa: S105 - a name
    """A Secret (keys accessKey, secretKey) expected in each namespace that runs jobs."""


class LeaderElection(_Config):
    """One acting operator among replicas and installs: a Lease in the operator's namespace."""

    enabled: bool = False
    """Off for local runs and tests (one process); the chart turns it on."""
    lease_name: str = "forja-operator"
    namespace: str | None = None
    """None: the pod's namespace ($FORJA_POD_NAMESPACE)."""
    lease_duration_seconds: int = Field(default=15, ge=2)
    renew_deadline_seconds: int = Field(default=10, ge=2)
    retry_period_seconds: int = Field(default=2, ge=1)


class BenchmarkConfig(_Config):
    """The short benchmark pod each Ready ModelVersion gets (never part of Ready)."""

    enabled: bool = True
    """false: no version is benchmarked (a version's spec.benchmark.enabled: false turns
    off just that one)."""
    requests: int = Field(default=50, ge=1, le=10_000)
    """Batch-1 forward passes the latency percentiles are taken over."""
    batch_size: int = Field(default=8, ge=1, le=1024)
    """The batch throughput is measured at (the serving default's maxBatchSize)."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Failed benchmark pods per artifact before the benchmark is recorded as Failed."""
    cpu: str = Field(default="1", pattern=r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
    """CPU request and limit: figures are comparable only at a fixed CPU share."""
    memory_limit: str = Field(default="2Gi", pattern=r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$")
    deadline_seconds: int = Field(default=300, ge=30, le=3600)
    """activeDeadlineSeconds of the pod: a stuck benchmark ends as a failure."""


class OperatorConfig(_Config):
    trainer_image: str = "forja/trainer:0.1.0"
    trainer_tf_image: str = "forja/trainer-tf:0.1.0"
    server_image: str = "forja/server:0.1.0"
    artifact_store: ArtifactStore = Field(default_factory=ArtifactStore)
    watch_namespaces: list[str] = Field(default_factory=list)
    """Empty: the whole cluster."""
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    """0 disables the metrics endpoint (tests running several operators)."""
    health_port: int = Field(default=8081, ge=0, le=65535)
    node_lost_seconds: int = Field(default=60, ge=0)
    """How long an attempt pod stays bound to a NotReady or unreachable node (its
    NoExecute tolerations) before Kubernetes evicts it and the job resumes elsewhere."""
    unschedulable_seconds: int = Field(default=600, ge=0)
    """How long an attempt may have a pod the scheduler cannot place (PodScheduled False,
    reason Unschedulable) before the whole attempt is torn down and retried; 0 waits
    forever. Pods held by a scheduling gate (Kueue's admission) never count."""
    server_command: list[str] | None = None
    """The model server's command; None: ``python -m forja_server``. Local runs and tests
    set a stand-in server here; the chart leaves it unset."""
    leader_election: LeaderElection = Field(default_factory=LeaderElection)
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig)
    inference_service_resync_seconds: float = Field(default=30.0, gt=0)
    """Longest an InferenceService goes without a pass (drift of children nobody watches);
    tests shorten it."""


def load_config(path: str | Path | None = None) -> OperatorConfig:
    """Read the configuration; errors name the file and the field."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or None
    if path is None:
        return OperatorConfig()
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read operator configuration: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: operator configuration must be a mapping")
    try:
        return OperatorConfig.model_validate(data)
    except ValidationError as exc:
        fields = validation_message(exc, prefix=None)
        raise ConfigError(f"{path}: {fields}") from exc
