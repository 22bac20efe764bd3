"""The PVC provisioner against a recording stand-in for the API server."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from forja_localcluster.config import ClusterConfig
from forja_localcluster.pki import CLIENTS
from forja_localcluster.provisioner import IDENTITY, PROVISIONER, STORAGE_CLASS, Provisioner


class FakeApi:
    def __init__(self, volumes: list[dict[str, Any]], claims: list[dict[str, Any]]) -> None:
        self.lists = {"/api/v1/persistentvolumes": volumes,
                      "/api/v1/persistentvolumeclaims": claims}
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    def get(self, path: str, **_params: str) -> dict[str, Any]:
        return {"items": self.lists[path]}

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        return body

    def delete(self, path: str, body: object = None) -> dict[str, Any]:
        self.deleted.append(path)
        return {}


def _claim(name: str, uid: str, storage_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"resources": {"requests": {"storage": "1Gi"}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"metadata": {"name": name, "namespace": "ns", "uid": uid}, "spec": spec,
            "status": {"phase": "Pending"}}


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_pending_claim_gets_a_directory_every_uid_can_write(tmp_path: Path, umask_022):
    """Restricted pods run as arbitrary non-root uids and hostPath gets no fsGroup."""
    api = FakeApi([], [_claim("data", "u" * 36), _claim("other", "o" * 36, "fast-ssd")])
    Provisioner(api, ClusterConfig(tmp_path)).sync()  # type: ignore[arg-type]
    assert [pv["spec"]["claimRef"]["name"] for pv in api.created] == ["data"]
    path = Path(api.created[0]["spec"]["hostPath"]["path"])
    assert path.is_relative_to(tmp_path / "pvc" / "ns")
    assert stat.S_IMODE(path.stat().st_mode) == 0o777


def test_a_claim_already_given_a_volume_is_not_provisioned_again(tmp_path: Path):
    pv = {"metadata": {"name": "pvc-u", "annotations": {
              "pv.kubernetes.io/provisioned-by": PROVISIONER}},
          "spec": {"claimRef": {"uid": "u" * 36}}, "status": {"phase": "Available"}}
    api = FakeApi([pv], [_claim("data", "u" * 36, STORAGE_CLASS)])
    Provisioner(api, ClusterConfig(tmp_path)).sync()  # type: ignore[arg-type]
    assert api.created == [] and api.deleted == []


def test_released_volumes_go_with_their_directory_but_nothing_outside_ours(tmp_path: Path):
    ours, elsewhere = tmp_path / "pvc" / "ns" / "data-1", tmp_path / "precious"
    for directory in (ours, elsewhere):
        directory.mkdir(parents=True)
        (directory / "file").write_text("x")
    volumes = [
        {"metadata": {"name": name, "annotations": {
            "pv.kubernetes.io/provisioned-by": PROVISIONER}},
         "spec": {"hostPath": {"path": str(path)}}, "status": {"phase": "Released"}}
        for name, path in (("pvc-ours", ours), ("pvc-forged", elsewhere))
    ]
    api = FakeApi(volumes, [])
    Provisioner(api, ClusterConfig(tmp_path)).sync()  # type: ignore[arg-type]
    assert api.deleted == ["/api/v1/persistentvolumes/pvc-ours",
                           "/api/v1/persistentvolumes/pvc-forged"]
    assert not ours.exists()
    assert (elsewhere / "file").exists()


def test_the_provisioner_is_no_cluster_admin():
    identity = next(c for c in CLIENTS if c.common_name == IDENTITY)
    assert "system:masters" not in identity.organization
