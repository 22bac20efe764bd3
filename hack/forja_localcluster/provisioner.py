"""A dynamic provisioner for PersistentVolumeClaims: a local directory per claim.

``python -m forja_localcluster.provisioner --state-dir DIR``, started detached by
``forja_localcluster start`` like the control plane's components. The default
StorageClass ``forja-local`` names us as its provisioner; for each pending claim of
that class (or of no class) we create a hostPath PersistentVolume pre-bound to the
claim, and kube-controller-manager's PV binder completes the binding, so the
scheduler and the operator see real Bound claims. Released volumes of ours are
deleted with their directory (reclaim policy Delete). Every node runs on this
machine, so a hostPath is the same directory whichever node a pod lands on.

It authenticates as ``forja-provisioner`` (pki.CLIENTS), which RBAC (:data:`RBAC`,
applied by ``start``) allows no more than this needs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

from forja_localcluster.config import ClusterConfig
from forja_localcluster.errors import ApiError
from forja_localcluster.kubeapi import KubeClient

__all__ = ["IDENTITY", "PROVISIONER", "RBAC", "STORAGE_CLASS", "Provisioner", "main"]

JSON = dict[str, Any]
log = logging.getLogger("forja.provisioner")
STORAGE_CLASS = "forja-local"
PROVISIONER = "forja.dev/local"
IDENTITY = "forja-provisioner"  # the CN of its client certificate: its RBAC user
POLL_SECONDS = 2.0
# Pods under the restricted Pod Security profile run as arbitrary non-root uids, and
# a hostPath volume gets no fsGroup ownership change: only a world-writable directory
# is writable to all of them (Rancher's local-path-provisioner: `mkdir -m 0777`).
DIRECTORY_MODE = 0o777

_ROLE = f"forja:{IDENTITY}"
RBAC: tuple[tuple[str, JSON], ...] = (
    ("/apis/rbac.authorization.k8s.io/v1/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": _ROLE},
        "rules": [
            {"apiGroups": [""], "resources": ["persistentvolumes"],
             "verbs": ["get", "list", "watch", "create", "delete"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
             "verbs": ["get", "create"]},
        ],
    }),
    ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": _ROLE},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": _ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": IDENTITY}],
    }),
)


def apply_rbac(admin: KubeClient) -> None:
    """Server-side apply of the provisioner's ClusterRole and binding (idempotent, and a
    changed rule reaches a cluster that already has the old one)."""
    for collection, obj in RBAC:
        admin.request("PATCH", f"{collection}/{obj['metadata']['name']}", obj,
                      params={"fieldManager": "forja-localcluster", "force": "true"},
                      content_type="application/apply-patch+yaml")


class Provisioner:
    def __init__(self, client: KubeClient, config: ClusterConfig) -> None:
        self.client = client
        self.config = config

    def ensure_storage_class(self) -> None:
        try:
            self.client.get(f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}")
        except ApiError as exc:
            if exc.status != 404:
                raise
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
        # chmod, not mkdir's mode: the umask would take the group and other bits away.
        directory.chmod(DIRECTORY_MODE)
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
                "hostPath": {"path": str(directory), "type": "Directory"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                             "namespace": meta["namespace"], "name": meta["name"],
                             "uid": meta["uid"]},
            },
        })
        log.info("provisioned %s for %s/%s", directory, meta["namespace"], meta["name"])

    def reclaim(self, pv: JSON) -> None:
        path = (pv["spec"].get("hostPath") or {}).get("path")
        self.client.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
        # Only what we made: a PV claiming our annotation must not delete anything else.
        if path and Path(path).resolve().is_relative_to(self.config.pvc_dir.resolve()):
            shutil.rmtree(path, ignore_errors=True)
            log.info("reclaimed %s", path)

    def sync(self) -> None:
        volumes = self.client.get("/api/v1/persistentvolumes")["items"]
        claimed = {(v["spec"].get("claimRef") or {}).get("uid") for v in volumes}
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forja_localcluster.provisioner")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ClusterConfig(args.state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
    Provisioner(KubeClient.for_pki(config.pki, "provisioner"), config).run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
