"""Materialise a pod's volumes as host directories, which the launcher bind-mounts.

emptyDir, configMap, secret, downwardAPI and projected volumes (including the
service-account token from the TokenRequest API, which is how in-cluster clients
authenticate) are written under the pod's directory once, at start; unlike a kubelet
we do not refresh them when the ConfigMap or Secret changes. A
persistentVolumeClaim resolves to its bound PersistentVolume's ``hostPath``.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forja_localcluster.agent.podspec import Mount, field_value, resource_value
from forja_localcluster.config import ClusterConfig
from forja_localcluster.errors import ApiError, NotFoundError
from forja_localcluster.kubeapi import KubeClient

__all__ = ["VolumeError", "claim_host_path", "container_mounts", "prepare_volumes"]

JSON = dict[str, Any]
DEFAULT_MODE = 0o644


class VolumeError(Exception):
    """A volume cannot be set up yet (missing object, unbound claim); names the volume."""


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


def _write(directory: Path, rel: str, data: bytes, mode: int) -> None:
    target = (directory / rel).resolve()
    if directory.resolve() not in target.parents:
        raise VolumeError(f"item path {rel!r} escapes the volume")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(mode)


def _object_data(obj: JSON, kind: str) -> dict[str, bytes]:
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _key_files(
    *,
    client: KubeClient, namespace: str, source: JSON, kind: str, name_field: str,
    directory: Path, default_mode: int, volume: str,
) -> None:
    name = source[name_field]
    plural = "secrets" if kind == "secret" else "configmaps"
    try:
        obj = client.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
    except NotFoundError:
        if source.get("optional"):
            return
        raise VolumeError(f"volume {volume!r}: {kind} {namespace}/{name} not found") from None
    data = _object_data(obj, kind)
    items = source.get("items")
    if not items:
        for key, value in data.items():
            _write(directory, key, value, default_mode)
        return
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f"volume {volume!r}: key {item['key']!r} not in {kind} {name}")
        _write(directory, item["path"], data[item["key"]], int(item.get("mode", default_mode)))


def _downward_files(pod: JSON, items: list[JSON], directory: Path, default_mode: int) -> None:
    containers = {c["name"]: c for c in pod["spec"].get("containers", [])}
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            ref = item["resourceFieldRef"]
            container = containers.get(ref.get("containerName", ""), {})
            value = resource_value(container, ref)
        _write(directory, item["path"], value.encode(), int(item.get("mode", default_mode)))


def _token(client: KubeClient, pod: JSON, source: JSON) -> bytes:
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    spec: JSON = {
        "expirationSeconds": int(source.get("expirationSeconds", 3600)),
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                           "uid": meta["uid"]},
    }
    if source.get("audience"):
        spec["audiences"] = [source["audience"]]
    try:
        answer = client.create(
            f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
    except ApiError as exc:
        raise VolumeError(f"token for serviceaccount {account}: {exc}") from exc
    return str(answer["status"]["token"]).encode()


def prepare_volumes(
    client: KubeClient, pod: JSON, pod_dir: Path, claim_path: Callable[[str, str], Path]
) -> dict[str, Path]:
    """Create every volume of ``pod``; returns volume name -> host directory."""
    namespace = pod["metadata"]["namespace"]
    root = pod_dir / "volumes"
    paths: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes", []) or []:
        name = volume["name"]
        directory = root / name
        if "persistentVolumeClaim" in volume:
            paths[name] = claim_path(namespace, volume["persistentVolumeClaim"]["claimName"])
            continue
        if "hostPath" in volume:
            paths[name] = Path(volume["hostPath"]["path"])
            continue
        if directory.exists() and "emptyDir" not in volume:
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths[name] = directory
        if "emptyDir" in volume:
            continue
        if "configMap" in volume or "secret" in volume:
            kind = "configMap" if "configMap" in volume else "secret"
            source = volume[kind]
            _key_files(client=client, namespace=namespace, source=source, kind=kind.lower(),
                       name_field="name" if kind == "configMap" else "secretName",
                       directory=directory,
                       default_mode=int(source.get("defaultMode", DEFAULT_MODE)), volume=name)
        elif "downwardAPI" in volume:
            source = volume["downwardAPI"]
            _downward_files(pod, source.get("items", []), directory,
                            int(source.get("defaultMode", DEFAULT_MODE)))
        elif "projected" in volume:
            projected = volume["projected"]
            mode = int(projected.get("defaultMode", DEFAULT_MODE))
            for source in projected.get("sources", []) or []:
                if "serviceAccountToken" in source:
                    token_source = source["serviceAccountToken"]
                    _write(directory, token_source["path"], _token(client, pod, token_source),
                           mode)
                elif "configMap" in source:
                    _key_files(client=client, namespace=namespace, source=source["configMap"],
                               kind="configmap", name_field="name", directory=directory,
                               default_mode=mode, volume=name)
                elif "secret" in source:
                    _key_files(client=client, namespace=namespace, source=source["secret"],
                               kind="secret", name_field="name", directory=directory,
                               default_mode=mode, volume=name)
                elif "downwardAPI" in source:
                    _downward_files(pod, source["downwardAPI"].get("items", []), directory, mode)
        else:
            raise VolumeError(f"volume {name!r}: type {sorted(set(volume) - {'name'})} "
                              "is not supported by the forja node agent")
    return paths


def container_mounts(
    container: JSON, volume_paths: dict[str, Path], termination_file: Path
) -> list[Mount]:
    """The bind mounts of one container, the termination-message file included."""
    mounts = []
    for mount in container.get("volumeMounts", []) or []:
        source = volume_paths.get(mount["name"])
        if source is None:
            raise VolumeError(f"volumeMount {mount['name']!r}: no such volume")
        if mount.get("subPath"):
            source = source / mount["subPath"]
            if not source.exists():
                source.mkdir(parents=True)
        mounts.append(Mount(str(source), mount["mountPath"], bool(mount.get("readOnly"))))
    path = container.get("terminationMessagePath") or "/dev/termination-log"
    mounts.append(Mount(str(termination_file), path))
    return mounts
