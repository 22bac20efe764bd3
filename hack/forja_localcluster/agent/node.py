"""The Node object, its Lease heartbeat and its Ready condition."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

from forja_localcluster.agent.status import now_rfc3339
from forja_localcluster.config import KUBELET_PORT
from forja_localcluster.errors import NotFoundError
from forja_localcluster.kubeapi import KubeClient

__all__ = ["GPU_RESOURCE", "heartbeat", "node_manifest", "register"]

JSON = dict[str, Any]
GPU_RESOURCE = "nvidia.com/gpu"
LEASE_SECONDS = 40
KUBELET_VERSION = "v1.37.2"


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def _conditions() -> list[JSON]:
    now = now_rfc3339()
    healthy = [
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
        ("Ready", "True", "KubeletReady"),
    ]
    return [
        {"type": t, "status": s, "reason": r, "message": "forja node agent",
         "lastHeartbeatTime": now, "lastTransitionTime": now}
        for t, s, r in healthy
    ]


def _cpu_capacity() -> str:
    """CPU the node offers the scheduler: 8x the cores unless FORJA_NODE_CPU says.

    Pods here are processes sharing the machine's cores, so requests are
    overcommitted on purpose: a test of 20 concurrent jobs, each asking for a
    realistic "1" CPU, must schedule on a 2-core machine. Limits are not enforced
    for CPU (memory limits are, through cgroups).
    """
    return os.environ.get("FORJA_NODE_CPU") or str(8 * (os.cpu_count() or 1))


def node_status(host_ip: str, gpus: int, state_dir: Path) -> JSON:
    stat = os.statvfs(state_dir)
    resources = {
        "cpu": _cpu_capacity(),
        "memory": f"{_memory_bytes() // 1024}Ki",
        "pods": "110",
        "ephemeral-storage": f"{stat.f_bavail * stat.f_frsize // 1024}Ki",
        GPU_RESOURCE: str(gpus),
    }
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": _conditions(),
        "addresses": [{"type": "InternalIP", "address": host_ip},
                      {"type": "Hostname", "address": platform.node()}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": platform.release(), "osImage": "forja local node",
            "containerRuntimeVersion": "forja-agent://1", "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
        },
    }


def node_manifest(name: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "forja.dev/local-node": "true",
            },
        },
        "spec": {},
    }


def register(client: KubeClient, name: str, host_ip: str, gpus: int, state_dir: Path) -> None:
    """Create the Node if missing, then set its status (capacity, addresses, Ready)."""
    try:
        client.get(f"/api/v1/nodes/{name}")
    except NotFoundError:
        client.create("/api/v1/nodes", node_manifest(name))
    client.merge_patch(f"/api/v1/nodes/{name}/status",
                       {"status": node_status(host_ip, gpus, state_dir)})


def _micro_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def heartbeat(client: KubeClient, name: str, update_status: bool) -> None:
    """Renew the node's Lease; also refresh the Ready condition when ``update_status``."""
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
    try:
        client.merge_patch(path, {"spec": {"renewTime": _micro_now(),
                                           "holderIdentity": name}})
    except NotFoundError:
        node = client.get(f"/api/v1/nodes/{name}")
        client.create(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {
                    "name": name, "namespace": "kube-node-lease",
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                                         "uid": node["metadata"]["uid"]}],
                },
                "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": _micro_now()},
            },
        )
    if update_status:
        client.merge_patch(f"/api/v1/nodes/{name}/status",
                           {"status": {"conditions": _conditions()}})
