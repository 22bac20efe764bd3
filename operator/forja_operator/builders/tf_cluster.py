"""The TensorFlow side of a multi-worker attempt: one Service per worker, and TF_CONFIG.

``tf.distribute.MultiWorkerMirroredStrategy`` dials every worker, not only rank 0
(torch's rendezvous needs just rank 0's store). With no cluster DNS to resolve pod or
Service names, the operator creates one ClusterIP Service per worker first (as
Kubeflow's TFJob does, one Service per replica) and renders each pod with a
``TF_CONFIG`` that lists the others by their Services' ClusterIPs, allocated on create
and fixed for each Service's life.

Each worker's own entry is ``127.0.0.1:<its port>``: TensorFlow binds its gRPC server
on every address, at the port of its own entry, and never dials itself through its
Service (no hairpin). Worker ``i`` listens on ``TF_WORKER_PORT_BASE + i`` and its
Service forwards ``TF_WORKER_SERVICE_PORT`` there (contract.py says why they differ).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from forja_api import contract
from forja_api.v1alpha1.trainingjob import TrainerName, TrainingJobSpec
from forja_operator.builders.common import JOB_UID_LABEL, bounded_name, owner_reference

__all__ = [
    "TF_WORKER_COMPONENT",
    "render_worker_service",
    "render_worker_services",
    "tf_config",
    "tf_worker_env",
    "tf_worker_port",
    "uses_tf_config",
    "worker_service_name",
]

TF_WORKER_COMPONENT = "tf-worker"
"""app.kubernetes.io/component of the per-worker Services."""
MAX_NAME = 63


def uses_tf_config(spec: TrainingJobSpec) -> bool:
    """Whether the workers of a multi-worker attempt meet through TF_CONFIG (TensorFlow)."""
    return spec.trainer == TrainerName.DISTILL_QAT_TFLITE


def tf_worker_port(rank: int) -> int:
    return contract.TF_WORKER_PORT_BASE + rank


def worker_service_name(job: str, index: int, rank: int) -> str:
    """``<job>-a<N>-w<rank>``, the name of the worker's pod; a Service name must start
    with a letter, a job name need not."""
    base = job if job[:1].isalpha() else f"tj-{job}"
    return bounded_name(base, f"-a{index}-w{rank}", MAX_NAME)


def render_worker_service(job: dict[str, Any], index: int, rank: int) -> dict[str, Any]:
    """The ClusterIP Service in front of worker ``rank`` of attempt ``index``.

    Selected by the job's uid, the attempt and the rank, so no pod of another job or
    attempt is ever an endpoint. publishNotReadyAddresses: workers dial each other
    while they start, before anything could call a trainer ready.
    """
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": worker_service_name(meta["name"], index, rank),
            "namespace": meta["namespace"],
            "labels": {
                contract.JOB_LABEL: meta["name"],
                contract.ATTEMPT_LABEL: str(index),
                contract.RANK_LABEL: str(rank),
                contract.COMPONENT_LABEL: TF_WORKER_COMPONENT,
                contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
            },
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {
                JOB_UID_LABEL: meta.get("uid", ""),
                contract.ATTEMPT_LABEL: str(index),
                contract.RANK_LABEL: str(rank),
            },
            "publishNotReadyAddresses": True,
            "ports": [
                {
                    "name": TF_WORKER_COMPONENT,
                    "protocol": "TCP",
                    "port": contract.TF_WORKER_SERVICE_PORT,
                    "targetPort": tf_worker_port(rank),
                }
            ],
        },
    }


def render_worker_services(job: dict[str, Any], index: int, workers: int) -> list[dict[str, Any]]:
    """Every worker's Service of attempt ``index``, by rank."""
    return [render_worker_service(job, index, rank) for rank in range(workers)]


def tf_config(addresses: Sequence[str], rank: int) -> str:
    """TF_CONFIG of worker ``rank``: the others at their Services' ClusterIPs (by rank),
    itself at 127.0.0.1 on the port it listens on."""
    if not 0 <= rank < len(addresses):
        raise ValueError(f"rank {rank} is not one of {len(addresses)} workers")
    workers = [
        f"127.0.0.1:{tf_worker_port(r)}" if r == rank
        else f"{addr}:{contract.TF_WORKER_SERVICE_PORT}"
        for r, addr in enumerate(addresses)
    ]
    return json.dumps(
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank}},
        separators=(",", ":"),
    )


def tf_worker_env(addresses: Sequence[str], rank: int) -> list[dict[str, Any]]:
    """TF_CONFIG, and the world under torchrun's names for anything that reads those."""
    return [
        {"name": contract.TF_CONFIG_ENV, "value": tf_config(addresses, rank)},
        {"name": contract.WORLD_SIZE_ENV, "value": str(len(addresses))},
        {"name": contract.RANK_ENV, "value": str(rank)},
        {"name": contract.LOCAL_RANK_ENV, "value": "0"},
    ]
