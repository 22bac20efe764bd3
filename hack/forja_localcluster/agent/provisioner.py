"""A dynamic provisioner for PersistentVolumeClaims: a local directory per claim.

The default StorageClass ``forja-local`` names us as its provisioner; for each
pending claim of that class (or of no class) we create a hostPath PersistentVolume
pre-bound to the claim, and kube-controller-manager's PV binder completes the
binding, so the scheduler and the operator see real Bound claims. Released volumes
of ours are deleted with their directory (reclaim policy Delete).
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from forja_localcluster.agent.volumes import VolumeError
from forja_localcluster.config import ClusterConfig
from forja_localcluster.errors import ApiError, NotFoundError
from forja_localcluster.kubeapi import KubeClient

__all__ = ["PROVISIONER", "STORAGE_CLASS", "Provisioner", "claim_host_path"]

JSON = dict[str, Any]
log = logging.getLogger("forja.agent.provisioner")
STORAGE_CLASS = "forja-local"
PROVISIONER = "forja.dev/local"
POLL_SECONDS = 2.0


def claim_host_path(client: KubeClient, config: ClusterConfig, namespace: str,
                    claim: str) -> Path:
    """The host directory behind a claim: its bound volume's hostPath."""
    try:
        pvc = client.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    except NotFoundError:
        raise VolumeError(f"persistentVolumeClaim {namespace}/{claim} not found") from None
    volume = pvc.get("spec", {}).get("volumeName")
    if volume:
        pv = client.get(f"/api/v1/persistentvolumes/{volume}")
        host_path = (pv["spec"].get("hostPath") or {}).get("path")
        if host_path:
            Path(host_path).mkdir(parents=True, exist_ok=True)
            return Path(host_path)
    path = config.pvc_dir / namespace / claim
    path.mkdir(parents=True, exist_ok=True)
    return path


class Provisioner:
    def __init__(self, client: KubeClient, config: ClusterConfig) -> None:
        self.client = client
        self.config = config

    def ensure_storage_class(self) -> None:
        try:
            self.client.get(f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}")
        except NotFoundError:
            self.client.create("/apis/storage.k8s.io/v1/storageclasses", {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS, "annotations": {
                    "storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": PROVISIONER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            })

    def provision(self, pvc: JSON) -> None:
        meta, spec = pvc["metadata"], pvc["spec"]
        directory = self.config.pvc_dir / meta["namespace"] / f"{meta['name']}-{meta['uid'][:8]}"
        directory.mkdir(parents=True, exist_ok=True)
        size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        self.client.create("/api/v1/persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pvc-{meta['uid']}",
                         "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": spec.get("storageClassName") or "",
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": str(directory), "type": "DirectoryOrCreate"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "namespace": meta["namespace"], "name": meta["name"],
                             "uid": meta["uid"]},
            },
        })
        log.info("provisioned %s for %s/%s", directory, meta["namespace"], meta["name"])

    def reclaim(self, pv: JSON) -> None:
        path = (pv["spec"].get("hostPath") or {}).get("path")
        self.client.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
        if path and Path(path).resolve().is_relative_to(self.config.pvc_dir.resolve()):
            shutil.rmtree(path, ignore_errors=True)

    def sync(self) -> None:
        volumes = self.client.get("/api/v1/persistentvolumes")["items"]
        claimed = {
            (v["spec"].get("claimRef") or {}).get("uid") for v in volumes
        }
        for pv in volumes:
            ours = pv["metadata"].get("annotations", {}).get(
                "pv.kubernetes.io/provisioned-by") == PROVISIONER
            if ours and pv.get("status", {}).get("phase") in ("Released", "Failed"):
                self.reclaim(pv)
        for pvc in self.client.get("/api/v1/persistentvolumeclaims")["items"]:
            cls = pvc["spec"].get("storageClassName")
            if (pvc.get("status", {}).get("phase") == "Pending"
                    and not pvc["spec"].get("volumeName")
                    and cls in (STORAGE_CLASS, "", None)
                    and pvc["metadata"]["uid"] not in claimed
                    and not pvc["metadata"].get("deletionTimestamp")):
                self.provision(pvc)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.ensure_storage_class()
                break
            except (OSError, ApiError) as exc:
                log.warning("storage class: %s", exc)
                stop.wait(2.0)
        while not stop.is_set():
            try:
                self.sync()
            except (OSError, ApiError) as exc:
                log.warning("provisioner: %s", exc)
            stop.wait(POLL_SECONDS)
