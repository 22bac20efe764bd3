"""The cluster's stop ends the add-ons started beside it (Kueue, Argo CD) first: left
running they outlived the cluster, talking to an API server that was gone."""

import subprocess
import sys
from pathlib import Path

from forja_localcluster import control_plane
from forja_localcluster.config import ClusterConfig, ClusterInfo


def _cluster(tmp_path: Path, monkeypatch) -> ClusterConfig:
    monkeypatch.setenv("FORJA_CLUSTER_DIR", str(tmp_path / "cluster"))
    config = ClusterConfig()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # kubectl records what it was asked: Kueue's stop deletes its webhook configurations.
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "kubectl.log"}\n')
    kubectl.chmod(0o755)
    config.state_dir.mkdir(parents=True)
    ClusterInfo(state_dir=str(config.state_dir), kubeconfig="kc", bin_dir=str(bin_dir),
                api_server="https://127.0.0.1:1", s3_endpoint="", s3_access_key="",
                s3_secret_key="", bucket="", checkout="", nodes=[],
                gpus_per_node=0).save(config.info_file)
    return config


def _addon_process(pid_file: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(proc.pid))
    return proc


def test_stop_ends_a_running_kueue_and_argocd_and_removes_kueues_webhooks(tmp_path, monkeypatch):
    config = _cluster(tmp_path, monkeypatch)
    kueue = _addon_process(config.state_dir / "kueue" / "kueue.pid")
    argo = _addon_process(config.state_dir / "argocd" / "argocd-repo-server.pid")
    said: list[str] = []
    try:
        control_plane._stop_addons(config, said.append)
        # Ended well before their 60 s sleep, or wait() raises. Not their exit codes:
        # stop may have reaped them itself (they are this test's children), and then
        # Popen reads 0.
        kueue.wait(timeout=15)
        argo.wait(timeout=15)
    finally:
        kueue.kill()
        argo.kill()
    assert said == ["stopped kueue", "stopped argocd"]
    assert not (config.state_dir / "kueue" / "kueue.pid").exists()
    deleted = (tmp_path / "kubectl.log").read_text()
    assert "delete mutatingwebhookconfiguration kueue-mutating-webhook-configuration" in deleted


def test_stop_without_add_ons_asks_nothing_of_the_cluster(tmp_path, monkeypatch):
    config = _cluster(tmp_path, monkeypatch)
    said: list[str] = []
    control_plane._stop_addons(config, said.append)
    assert said == []
    # No kubectl call: the API server of a stopped cluster would not answer it.
    assert not (tmp_path / "kubectl.log").exists()
