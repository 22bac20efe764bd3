"""The Pods of one training attempt, rendered from the TrainingJob spec.

One Pod per attempt (docs/design.md says why not a batch/v1 Job), named
``<job>-a<N>`` so that re-running a reconcile after an operator crash finds the
pod it already created instead of starting a second one.

With ``spec.workers: N > 1`` an attempt is a gang of N pods ``<job>-a<N>-w<rank>``
and a ClusterIP Service selecting rank 0 (:func:`render_rendezvous_service`). The
clusters forja is tested on have no DNS, and a real one may lack it too, so no rank
looks a name up: the operator creates the Service first and renders the other ranks
with its allocated ClusterIP as ``MASTER_ADDR`` (a Service's ClusterIP is fixed for
its life, and the create response carries it). Rank 0 hosts torch's TCPStore and
reaches it on 127.0.0.1, so it needs no hairpin route back through its own Service.
A TensorFlow gang needs every worker's address instead: one Service per worker and
TF_CONFIG (builders/tf_cluster.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from forja_api import contract
from forja_api.v1alpha1.trainingjob import DISTRIBUTED_TRAINERS, TrainerName, TrainingJobSpec
from forja_operator.builders.common import (
    JOB_UID_LABEL,
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    bounded_name,
    join_uri,
    owner_reference,
    pvc_claims,
    pvc_volumes,
    scheduling_fields,
    store_env,
)
from forja_operator.builders.tf_cluster import tf_worker_env, tf_worker_port, uses_tf_config
from forja_operator.config import OperatorConfig

__all__ = [
    "OVERRIDES_ANNOTATION",
    "RESUME_ANNOTATION",
    "AttemptInputs",
    "StoreLayout",
    "attempt_name",
    "attempt_pod_names",
    "processes_per_pod",
    "render_attempt_pod",
    "render_attempt_pods",
    "render_rendezvous_service",
    "rendezvous_service_name",
    "store_layout",
    "trainer_account_name",
    "worker_name",
]

OVERRIDES_ANNOTATION = f"{contract.GROUP}/overrides"
RESUME_ANNOTATION = f"{contract.GROUP}/resume-from"
# Enough for a trainer to finish its epoch's checkpoint after SIGTERM (suspend, preemption).
TERMINATION_GRACE_SECONDS = 60
MAX_NAME = 63


def attempt_name(job: str, index: int) -> str:
    """``<job>-a<N>``; a job name too long for that is cut with a digest, never just cut
    (``<62 chars>x`` and ``<62 chars>y`` would share their pods)."""
    return bounded_name(job, f"-a{index}", MAX_NAME)


def worker_name(job: str, index: int, rank: int) -> str:
    """``<job>-a<N>-w<rank>``: the pod of ``rank`` in a multi-worker attempt."""
    return bounded_name(job, f"-a{index}-w{rank}", MAX_NAME)


def attempt_pod_names(job: str, index: int, workers: int) -> list[str]:
    """The attempt's pods by rank: the attempt's own name for one worker."""
    if workers <= 1:
        return [attempt_name(job, index)]
    return [worker_name(job, index, rank) for rank in range(workers)]


def rendezvous_service_name(job: str, index: int) -> str:
    """``<job>-a<N>-rdzv``; a Service name must start with a letter, a job name need not."""
    base = job if job[:1].isalpha() else f"tj-{job}"
    return bounded_name(base, f"-a{index}-rdzv", MAX_NAME)


def trainer_account_name(job: str, index: int) -> str:
    """The ServiceAccount (and Role, RoleBinding) of attempt ``index``'s trainer."""
    return f"{attempt_name(job, index)}-trainer"


@dataclass(frozen=True)
class StoreLayout:
    base: str
    checkpoint_uri: str
    credentials_secret: str | None
    endpoint: str | None

    def artifact_uri(self, index: int) -> str:
        return join_uri(self.base, f"artifacts/attempt-{index}/")


def store_layout(
    namespace: str, job: str, spec: TrainingJobSpec, config: OperatorConfig
) -> StoreLayout:
    """``<store>/<namespace>/<job>/checkpoints/`` and ``.../artifacts/attempt-N/``."""
    root = spec.output.uri or config.artifact_store.uri
    base = join_uri(root, namespace, job)
    secret = spec.output.credentials_secret or config.artifact_store.credentials_secret
    return StoreLayout(
        base=base,
        checkpoint_uri=join_uri(base, "checkpoints/"),
        credentials_secret=secret,
        endpoint=config.artifact_store.endpoint,
    )


@dataclass(frozen=True)
class AttemptInputs:
    """What differs between attempts of one job."""

    index: int
    overrides: dict[str, Any] = field(default_factory=dict)
    resume_from: str | None = None
    deadline_seconds: int | None = None
    """Seconds left of the job's activeDeadlineSeconds, set on the pod as well."""
    resume_sha256: str | None = None
    """The recorded digest of ``resume_from``, checked by the trainer before it loads."""
    workers: int = 1
    """Pods in the attempt's gang (spec.workers when the attempt was planned)."""
    master_addr: str | None = None
    """The rendezvous Service's ClusterIP: MASTER_ADDR of ranks 1..N-1."""
    worker_addrs: tuple[str, ...] = ()
    """A TensorFlow gang's per-worker Service ClusterIPs, by rank (its TF_CONFIG)."""


def _image_and_command(spec: TrainingJobSpec, config: OperatorConfig) -> tuple[str, list[str]]:
    tf = spec.trainer == TrainerName.DISTILL_QAT_TFLITE
    image = spec.image or (config.trainer_tf_image if tf else config.trainer_image)
    if spec.command:
        return image, list(spec.command)
    return image, ["python", "-m", "forja_trainer_tf" if tf else "forja_trainer"]


def _trainer_env(
    job: dict[str, Any], spec: TrainingJobSpec, attempt: AttemptInputs, layout: StoreLayout
) -> list[dict[str, Any]]:
    meta = job["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    artifact_uri = layout.artifact_uri(attempt.index)
    rendered = contract.RenderedSpec(
        name=name,
        namespace=namespace,
        uid=meta.get("uid", ""),
        attempt=attempt.index,
        spec=job.get("spec", {}),
        overrides=attempt.overrides,
        checkpoint_uri=layout.checkpoint_uri,
        artifact_uri=artifact_uri,
        resume_from=attempt.resume_from,
        resume_sha256=attempt.resume_sha256 if attempt.resume_from else None,
    )
    env: list[dict[str, Any]] = [
        {"name": contract.SPEC_ENV, "value": rendered.to_json()},
        {"name": contract.ATTEMPT_ENV, "value": str(attempt.index)},
        {"name": contract.JOB_NAME_ENV, "value": name},
        {"name": contract.NAMESPACE_ENV, "value": namespace},
        {"name": contract.POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": contract.POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": contract.CHECKPOINT_URI_ENV, "value": layout.checkpoint_uri},
        {"name": contract.ARTIFACT_URI_ENV, "value": artifact_uri},
    ]
    if attempt.resume_from:
        env.append({"name": contract.RESUME_FROM_ENV, "value": attempt.resume_from})
        if attempt.resume_sha256:
            env.append({"name": contract.RESUME_SHA256_ENV, "value": attempt.resume_sha256})
    env += store_env(
        any(u and u.startswith("s3://") for u in _store_uris(spec, layout)),
        layout.endpoint,
        layout.credentials_secret,
    )
    return env


def processes_per_pod(spec: TrainingJobSpec) -> int:
    """Trainer processes in each pod: one per GPU for a trainer that runs distributed.

    The pod's command stays ``python -m forja_trainer``: with LOCAL_WORLD_SIZE > 1 it
    starts one process per GPU itself (forja_trainer.launch), as torchrun's
    ``--nproc-per-node`` would, but keeps what the pod contract needs from one
    process: one Result in the termination message and the trainer's own exit code
    (torchrun reports any child's failure as exit 1). Other trainers get the GPUs as
    before, in one process (Ultralytics starts its own DDP processes; TensorFlow's
    strategies use every GPU a process sees).
    """
    torch_loop = spec.trainer in DISTRIBUTED_TRAINERS and not uses_tf_config(spec)
    if torch_loop and spec.resources.gpus > 1:
        return spec.resources.gpus
    return 1


def _local_world_env(group_rank: int, nproc: int) -> list[dict[str, Any]]:
    return [
        {"name": contract.GROUP_RANK_ENV, "value": str(group_rank)},
        {"name": contract.LOCAL_WORLD_SIZE_ENV, "value": str(nproc)},
    ]


def _single_pod_world_env(nproc: int) -> list[dict[str, Any]]:
    """One pod of ``nproc`` processes: the store on loopback, no Service."""
    return [
        {"name": contract.WORLD_SIZE_ENV, "value": str(nproc)},
        {"name": contract.RANK_ENV, "value": "0"},
        {"name": contract.LOCAL_RANK_ENV, "value": "0"},
        {"name": contract.MASTER_ADDR_ENV, "value": "127.0.0.1"},
        {"name": contract.MASTER_PORT_ENV, "value": str(contract.RENDEZVOUS_PORT)},
        *_local_world_env(0, nproc),
    ]


def _distributed_env(attempt: AttemptInputs, rank: int, nproc: int = 1) -> list[dict[str, Any]]:
    """torch.distributed's env:// rendezvous, under torchrun's names; with ``nproc``
    processes per pod the world is workers x nproc and RANK is the pod's first."""
    if rank == 0:
        addr, port = "127.0.0.1", contract.RENDEZVOUS_PORT
    else:
        if not attempt.master_addr:
            raise ValueError("ranks above 0 need the rendezvous Service's ClusterIP")
        addr, port = attempt.master_addr, contract.RENDEZVOUS_SERVICE_PORT
    env = [
        {"name": contract.WORLD_SIZE_ENV, "value": str(attempt.workers * nproc)},
        {"name": contract.RANK_ENV, "value": str(rank * nproc)},
        {"name": contract.LOCAL_RANK_ENV, "value": "0"},
        {"name": contract.MASTER_ADDR_ENV, "value": addr},
        {"name": contract.MASTER_PORT_ENV, "value": str(port)},
    ]
    return env + _local_world_env(rank, nproc) if nproc > 1 else env


def _store_uris(spec: TrainingJobSpec, layout: StoreLayout) -> list[str | None]:
    """Everything the trainer reads or writes: dataset, its own store, pretrained weights."""
    return [spec.dataset.uri, layout.base, spec.pretrained.uri if spec.pretrained else None]


def _trainer_resources(spec: TrainingJobSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    quantities = {
        k: v for k, v in (("cpu", spec.resources.cpu), ("memory", spec.resources.memory)) if v
    }
    if quantities:
        resources = {"requests": dict(quantities), "limits": dict(quantities)}
    if spec.resources.gpus:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(spec.resources.gpus)
    return resources


def _gang_selector(job: dict[str, Any], index: int) -> dict[str, str]:
    return {JOB_UID_LABEL: job["metadata"].get("uid", ""), contract.ATTEMPT_LABEL: str(index)}


def _attempt_metadata(
    job: dict[str, Any], spec: TrainingJobSpec, attempt: AttemptInputs, rank: int | None
) -> dict[str, Any]:
    meta = job["metadata"]
    name = meta["name"]
    labels = {
        contract.JOB_LABEL: name,
        **_gang_selector(job, attempt.index),
        contract.MODEL_LABEL: spec.model,
        contract.COMPONENT_LABEL: "trainer",
        contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
    }
    if rank is not None:
        labels[contract.RANK_LABEL] = str(rank)
        labels[contract.WORLD_SIZE_LABEL] = str(attempt.workers)
    annotations = {OVERRIDES_ANNOTATION: json.dumps(attempt.overrides, sort_keys=True)}
    kueue_labels, kueue_annotations = _kueue_metadata(job, spec, attempt)
    labels.update(kueue_labels)
    annotations.update(kueue_annotations)
    if attempt.resume_from:
        annotations[RESUME_ANNOTATION] = attempt.resume_from
    return {
        "name": attempt_name(name, attempt.index)
        if rank is None
        else worker_name(name, attempt.index, rank),
        "namespace": meta["namespace"],
        "labels": labels,
        "annotations": annotations,
        "ownerReferences": [owner_reference(job)],
    }


def _one_worker_per_node(job: dict[str, Any], index: int) -> dict[str, Any]:
    """No two pods of this attempt's gang on one node: the selector is the gang's own
    (job uid and attempt), so another job's workers, or this job's finished attempt,
    never keep a node from it."""
    return {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": _gang_selector(job, index)},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }


def _kueue_metadata(
    job: dict[str, Any], spec: TrainingJobSpec, attempt: AttemptInputs
) -> tuple[dict[str, str], dict[str, str]]:
    """Kueue's pod-group labels and annotations when the job names a queue, else none.

    The queue is the job's ``kueue.x-k8s.io/queue-name`` label (Kueue's own opt-in),
    else ``spec.scheduling.queueName``; its ``kueue.x-k8s.io/priority-class`` label
    goes along. Every pod of the attempt is in one group named after the attempt (a
    single worker is a group of one), so Kueue admits, and preempts, the gang as one
    Workload. Never retried inside the group: the next attempt is a new group.
    """
    job_labels = job["metadata"].get("labels") or {}
    queue = job_labels.get(contract.KUEUE_QUEUE_LABEL) or spec.scheduling.queue_name
    if not queue:
        return {}, {}
    labels = {
        contract.KUEUE_QUEUE_LABEL: queue,
        contract.KUEUE_POD_GROUP_LABEL: attempt_name(job["metadata"]["name"], attempt.index),
    }
    priority = job_labels.get(contract.KUEUE_PRIORITY_CLASS_LABEL)
    if priority:
        labels[contract.KUEUE_PRIORITY_CLASS_LABEL] = priority
    annotations = {
        contract.KUEUE_POD_GROUP_TOTAL_COUNT_ANNOTATION: str(max(1, attempt.workers)),
        contract.KUEUE_RETRIABLE_IN_GROUP_ANNOTATION: "false",
    }
    return labels, annotations


NODE_LOST_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _node_lost_tolerations(spec: TrainingJobSpec, config: OperatorConfig) -> list[dict[str, Any]]:
    """How long the pod stays on a node that stopped reporting: config.nodeLostSeconds
    instead of the API server's default 300 s, unless the spec tolerates the taint itself."""
    own = {t.key for t in spec.scheduling.tolerations}
    return [
        {
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": config.node_lost_seconds,
        }
        for key in NODE_LOST_TAINTS
        if key not in own
    ]


def render_attempt_pods(
    job: dict[str, Any], spec: TrainingJobSpec, attempt: AttemptInputs, config: OperatorConfig
) -> list[dict[str, Any]]:
    """Every pod of ``attempt``, by rank: one for one worker, else the gang."""
    if attempt.workers <= 1:
        return [render_attempt_pod(job, spec, attempt, config)]
    return [
        render_attempt_pod(job, spec, attempt, config, rank=rank)
        for rank in range(attempt.workers)
    ]


def render_rendezvous_service(job: dict[str, Any], index: int) -> dict[str, Any]:
    """The ClusterIP Service in front of rank 0's TCPStore for attempt ``index``.

    Selected by the job's uid, the attempt and rank 0, so a pod of another job or
    attempt is never an endpoint. publishNotReadyAddresses: the store is needed
    while the workers start, before anything could call a trainer ready.
    """
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": rendezvous_service_name(meta["name"], index),
            "namespace": meta["namespace"],
            "labels": {
                contract.JOB_LABEL: meta["name"],
                contract.ATTEMPT_LABEL: str(index),
                contract.COMPONENT_LABEL: "rendezvous",
                contract.MANAGED_BY_LABEL: contract.MANAGED_BY,
            },
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {**_gang_selector(job, index), contract.RANK_LABEL: "0"},
            "publishNotReadyAddresses": True,
            "ports": [
                {
                    "name": "rendezvous",
                    "protocol": "TCP",
                    "port": contract.RENDEZVOUS_SERVICE_PORT,
                    "targetPort": contract.RENDEZVOUS_PORT,
                }
            ],
        },
    }


def render_attempt_pod(
    job: dict[str, Any],
    spec: TrainingJobSpec,
    attempt: AttemptInputs,
    config: OperatorConfig,
    rank: int | None = None,
) -> dict[str, Any]:
    """The Pod manifest for ``attempt`` of the TrainingJob ``job`` (its full body); with
    ``rank``, that worker of a multi-worker attempt."""
    meta = job["metadata"]
    layout = store_layout(meta["namespace"], meta["name"], spec, config)
    image, command = _image_and_command(spec, config)
    claims = pvc_claims(*_store_uris(spec, layout))
    volumes, mounts = pvc_volumes(claims, writable=set(pvc_claims(layout.base)))
    env = _trainer_env(job, spec, attempt, layout)
    container_extra: dict[str, Any] = {}
    nproc = processes_per_pod(spec)
    if rank is None and nproc > 1:
        env += _single_pod_world_env(nproc)
    if rank is not None and uses_tf_config(spec):
        if len(attempt.worker_addrs) != attempt.workers:
            raise ValueError("a TensorFlow gang needs every worker Service's ClusterIP")
        env += tf_worker_env(attempt.worker_addrs, rank)
        container_extra["ports"] = [
            {"name": "tf-worker", "containerPort": tf_worker_port(rank), "protocol": "TCP"}
        ]
    elif rank is not None:
        env += _distributed_env(attempt, rank, nproc)
        if rank == 0:
            container_extra["ports"] = [
                {"name": "rendezvous", "containerPort": contract.RENDEZVOUS_PORT, "protocol": "TCP"}
            ]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Its own identity, allowed only to patch this pod (builders/rbac.py).
        "serviceAccountName": trainer_account_name(meta["name"], attempt.index),
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": dict(RESTRICTED_POD_SECURITY),
        "containers": [
            {
                "name": "trainer",
                "image": image,
                "command": command,
                "env": env,
                **container_extra,
                "resources": _trainer_resources(spec),
                "volumeMounts": mounts,
                "securityContext": dict(RESTRICTED_CONTAINER_SECURITY),
                "terminationMessagePath": contract.TERMINATION_MESSAGE_PATH,
                # A crash before the Result is written still leaves its traceback.
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": volumes,
        **scheduling_fields(spec.scheduling),
    }
    tolerations = [*pod_spec.get("tolerations", []), *_node_lost_tolerations(spec, config)]
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if rank is not None and spec.scheduling.one_worker_per_node:
        pod_spec["affinity"] = _one_worker_per_node(job, attempt.index)
    if attempt.deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = max(1, attempt.deadline_seconds)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _attempt_metadata(job, spec, attempt, rank),
        "spec": pod_spec,
    }
