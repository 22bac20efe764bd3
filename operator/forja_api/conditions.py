"""Condition types and reasons, one place for the operator, the docs and the tests.

A reason is CamelCase and means one thing everywhere it appears (status,
events, metrics labels). docs/operations.md explains what to do about each.
"""

from __future__ import annotations

from typing import Final

# --- TrainingJob condition types ---------------------------------------------------
CREATED: Final = "Created"
RUNNING: Final = "Running"
RESTARTING: Final = "Restarting"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
SUSPENDED: Final = "Suspended"
VERSIONED: Final = "Versioned"

# --- TrainingJob attempt / condition reasons ---------------------------------------
REASON_COMPLETED: Final = "Completed"
REASON_OOM_KILLED: Final = "OOMKilled"
REASON_EVICTED: Final = "Evicted"
REASON_PREEMPTED: Final = "Preempted"
# The attempt's node stopped reporting and Kubernetes evicted its pod (taint manager).
REASON_NODE_LOST: Final = "NodeLost"
REASON_DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
REASON_BACKOFF_LIMIT_EXCEEDED: Final = "BackoffLimitExceeded"
REASON_PREEMPTION_LIMIT_EXCEEDED: Final = "PreemptionLimitExceeded"
REASON_ERROR: Final = "Error"
REASON_UNSCHEDULABLE: Final = "Unschedulable"
REASON_WAITING_FOR_ADMISSION: Final = "WaitingForAdmission"
"""The attempt's pods are gated until a queue (Kueue) admits them."""
REASON_INVALID_CONFIG: Final = "InvalidConfig"
REASON_INVALID_DATASET: Final = "InvalidDataset"
REASON_GPU_UNAVAILABLE: Final = "GPUUnavailable"
REASON_SUSPENDED: Final = "Suspended"
REASON_INCOMPATIBLE_PRETRAINED: Final = "IncompatiblePretrained"
# What a trainer reports in its Result for an ending the operator calls Error (retried).
REASON_RETRYABLE: Final = "Retryable"
REASON_OUT_OF_MEMORY: Final = "OutOfMemory"
REASON_TERMINATED: Final = "Terminated"
REASON_STORAGE_ERROR: Final = "StorageError"
# A pod with one of our child names that this object does not control: never trusted.
REASON_POD_NOT_OWNED: Final = "PodNotOwned"
# Event: the job trained from pretrained weights whose digest it did not pin.
REASON_PRETRAINED_UNPINNED: Final = "PretrainedUnpinned"
# The recorded resume point lies outside the job's own checkpoint prefix: never loaded.
REASON_CHECKPOINT_REFUSED: Final = "CheckpointRefused"

# --- ModelVersion -------------------------------------------------------------------
ARTIFACT_VERIFIED: Final = "ArtifactVerified"
READY: Final = "Ready"
REASON_CHECKSUM_MATCH: Final = "ChecksumMatch"
REASON_CHECKSUM_MISMATCH: Final = "ChecksumMismatch"
REASON_ARTIFACT_NOT_FOUND: Final = "ArtifactNotFound"
REASON_VERIFY_ERROR: Final = "VerifyError"
REASON_ALIAS_MOVED: Final = "AliasMoved"
# The benchmark of a Ready version: informative only, never part of Ready.
BENCHMARKED: Final = "Benchmarked"
REASON_BENCHMARK_RUNNING: Final = "BenchmarkRunning"
REASON_BENCHMARK_SUCCEEDED: Final = "BenchmarkSucceeded"
REASON_BENCHMARK_RETRYING: Final = "BenchmarkRetrying"
REASON_BENCHMARK_FAILED: Final = "BenchmarkFailed"
REASON_BENCHMARK_UNSUPPORTED: Final = "BenchmarkUnsupported"

# --- InferenceService ---------------------------------------------------------------
SERVING: Final = "Serving"
ROLLOUT_PROGRESSING: Final = "RolloutProgressing"
ROLLED_BACK: Final = "RolledBack"
REASON_NO_MATCHING_VERSION: Final = "NoMatchingVersion"
REASON_CANARY_STEP: Final = "CanaryStep"
REASON_PROGRESS_DEADLINE: Final = "ProgressDeadlineExceeded"
REASON_ERROR_RATE: Final = "ErrorRateExceeded"
REASON_ROLLOUT_COMPLETE: Final = "RolloutComplete"
REASON_TARGET_SERVING: Final = "TargetServing"
REASON_ROLLOUT_IN_PROGRESS: Final = "RolloutInProgress"
REASON_REPLICAS_READY: Final = "ReplicasReady"
REASON_NO_READY_REPLICAS: Final = "NoReadyReplicas"
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_STABLE: Final = "Stable"
REASON_ROLLED_BACK: Final = "RolledBack"
REASON_ROLLOUT_ABORTED: Final = "RolloutAborted"
REASON_ROLLOUT_STARTED: Final = "RolloutStarted"
REASON_DEPLOYING: Final = "Deploying"
REASON_PROMOTED: Final = "Promoted"
