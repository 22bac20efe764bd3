"""The contract between the InferenceService operator and the model server pod.

Both sides import this module: the operator renders a :class:`ServingConfig` into
the server Deployment (one env var holding JSON, like ``FORJA_SPEC`` for
trainers), and ``python -m forja_server`` parses the same type back. It depends
only on the standard library and pydantic.

How a server pod is configured
------------------------------
* ``FORJA_SERVER_CONFIG`` holds a :class:`ServingConfig` as JSON: one stage
  serves one model; several stages are a pipeline (e.g. detector then verifier)
  served as one endpoint. Each stage names a ModelVersion artifact by ``uri``,
  ``sha256`` and ``format``; the server fetches it, checks the digest (and, for
  a manifest, every listed file's digest) and only then loads it.
* The server binds ``FORJA_POD_IP`` (from the downward API) or ``0.0.0.0``, on
  :data:`DEFAULT_PORT` (HTTP, port name :data:`PORT_NAME`) and
  :data:`DEFAULT_GRPC_PORT` (the Open Inference Protocol over gRPC, port name
  :data:`GRPC_PORT_NAME`) unless the config says otherwise.
* Readiness (:data:`READY_PATH`) turns true only after every stage is fetched,
  verified, loaded and warmed up, and turns false first on SIGTERM so endpoints
  drop the pod before in-flight requests are drained
  (``graceful_shutdown_seconds``; the pod's terminationGracePeriodSeconds must
  be longer).
* Object-store credentials come from a Secret as ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` (see :mod:`forja_api.contract`); they never appear
  in this config.

The same settings can be given as command-line flags for local runs
(:data:`CLI_FLAGS`); flags win over the env config.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "CLI_FLAGS",
    "DEFAULT_GRPC_PORT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "GRPC_PORT_NAME",
    "LIVE_PATH",
    "METRICS_PATH",
    "MODEL_CACHE_ENV",
    "PORT_NAME",
    "READY_PATH",
    "SERVER_COMMAND",
    "SERVER_CONFIG_ENV",
    "BatchingConfig",
    "PredictionCacheConfig",
    "RateLimitConfig",
    "ServingConfig",
    "StageArtifact",
]

# --- environment handed to the server pod -----------------------------------------
SERVER_CONFIG_ENV = "FORJA_SERVER_CONFIG"
"""JSON of a :class:`ServingConfig`."""
MODEL_CACHE_ENV = "FORJA_MODEL_CACHE"
"""A writable directory (an emptyDir) for fetched artifacts; default /tmp/forja-models."""
# The bind address comes from forja_api.contract.POD_IP_ENV (FORJA_POD_IP).

SERVER_COMMAND = ["python", "-m", "forja_server"]
DEFAULT_PORT = 8080
PORT_NAME = "http"
DEFAULT_GRPC_PORT = 8081
"""The Open Inference Protocol's gRPC service (``GRPCInferenceService``); 0 turns it off."""
GRPC_PORT_NAME = "grpc"
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MODEL_CACHE = "/tmp/forja-models"  # noqa: S108 - an emptyDir mount in the pod

# --- paths the operator points probes and scrapes at ------------------------------
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"

# Flag -> ServingConfig field, for `python -m forja_server --model-uri ...` runs.
CLI_FLAGS: dict[str, str] = {
    "--config": "whole config as JSON (same as FORJA_SERVER_CONFIG)",
    "--name": "name",
    "--model-uri": "stages[0].uri",
    "--sha256": "stages[0].sha256",
    "--format": "stages[0].format",
    "--host": "host",
    "--port": "port",
    "--grpc-port": "grpc_port",
    "--max-batch-size": "batching.max_batch_size",
    "--max-latency-ms": "batching.max_latency_ms",
}


class _Wire(BaseModel):
    """camelCase JSON on the wire, snake_case in Python; unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class StageArtifact(_Wire):
    """One served ModelVersion: where its artifact is and how to load it."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    """The stage (and, for a single model, the served model) name in URLs."""
    uri: str = Field(pattern=r"^(s3|pvc|file)://.+")
    """The ModelVersion's artifact.uri: a forja-model.json manifest or a single file."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """The ModelVersion's artifact.sha256, checked before anything is loaded."""
    format: str
    """A forja_api.v1alpha1.modelversion.ModelFormat value."""
    task: str | None = None
    """The ModelVersion's task when the artifact is a single file without a manifest."""
    model: str | None = None
    """The model series, for metrics labels and responses."""
    version: str | None = None
    """The ModelVersion's semantic version, reported in v2 metadata."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Stage settings, e.g. {"confidence": 0.25} or {"sequenceLength": 4}."""


class BatchingConfig(_Wire):
    max_batch_size: int = Field(default=8, ge=1, le=1024)
    """Largest batch handed to one forward pass."""
    max_latency_ms: float = Field(default=5.0, ge=0, le=10000)
    """Longest a request waits for others to join its batch (only while more are coming)."""


class RateLimitConfig(_Wire):
    """A token bucket per client over the prediction endpoints (429 with Retry-After)."""

    requests_per_second: float = Field(gt=0, le=1_000_000)
    """Tokens added to each client's bucket per second: its sustained request rate."""
    burst: int = Field(default=10, ge=1, le=1_000_000)
    """The bucket's size: how many requests a quiet client may send at once."""
    client_header: str | None = Field(default=None, max_length=128,
                                      pattern=r"^[A-Za-z0-9-]+$")
    """A header naming the client (e.g. X-Api-Key); default: the first hop of
    X-Forwarded-For, else the peer address."""
    max_clients: int = Field(default=10_000, ge=1, le=10_000_000)
    """Buckets kept at most; the least recently seen client is forgotten first."""


class PredictionCacheConfig(_Wire):
    """Answers kept by the digest of the input, the model and its served version."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    """In-process: the most bytes of cached outputs (least recently used go first)."""
    redis_url: str | None = Field(default=None, pattern=r"^rediss?://.+", max_length=512)
    """redis://host:port/db: a Redis shared by all replicas instead of the in-process store.
    Redis being down means cache misses, never failed predictions."""
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86400)
    """How long Redis keeps an answer."""
    timeout_ms: float = Field(default=50.0, gt=0, le=5000)
    """Redis socket timeout: a slow Redis costs at most this per request."""


class ServingConfig(_Wire):
    """Everything a server pod needs, rendered by the operator into FORJA_SERVER_CONFIG."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    """The InferenceService name; the pipeline endpoint's model name when stages > 1."""
    stages: list[StageArtifact] = Field(min_length=1, max_length=8)
    """One stage serves a model; several are a pipeline, each feeding the next."""
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    host: str | None = None
    """Bind address; default FORJA_POD_IP, else 0.0.0.0."""
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    grpc_port: int = Field(default=DEFAULT_GRPC_PORT, ge=0, le=65535)
    """The Open Inference Protocol over gRPC, same models and limits; 0 turns it off."""
    rate_limit: RateLimitConfig | None = None
    """Per-client rate limit of the prediction endpoints; none when unset."""
    prediction_cache: PredictionCacheConfig | None = None
    """Prediction cache; off when unset."""
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    """Requests larger than this are refused with 413."""
    graceful_shutdown_seconds: float = Field(default=20.0, ge=0, le=600)
    """How long in-flight requests may drain after SIGTERM."""
    warmup: bool = True

    @model_validator(mode="after")
    def _stage_names_unique(self) -> ServingConfig:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: names must be unique, got {names}")
        return self

    @property
    def is_pipeline(self) -> bool:
        return len(self.stages) > 1

    def to_env(self) -> dict[str, str]:
        """The env vars a Deployment sets (besides FORJA_POD_IP and credentials)."""
        return {SERVER_CONFIG_ENV: self.to_json()}
