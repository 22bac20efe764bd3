"""Fixtures: Argo CD on the suite's real-node cluster and a local git repository it
syncs from. The chart's operator that Argo CD installs runs from forja/operator on the
real nodes, and the jobs it runs from forja/trainer (their versions' verify and
benchmark pods from forja/server), in a namespace that enforces the restricted
profile."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import (
    REAL_NODES_INSTANCE,
    on_real_nodes,
    real_cli,
    restricted_namespaces,
)
from forja_localcluster.argocd import NAMESPACE, TRACKING_ANNOTATION, ArgoCD

cluster = on_real_nodes("operator", "trainer", "server")
namespace = restricted_namespaces()

ROOT = Path(__file__).resolve().parents[3]
# Shifted like Argo CD's own ports, by the instance it runs beside: the real-node one,
# not this process's (another instance's tests may serve their own repository).
GIT_DAEMON_PORT = 19418 + 100 * int(REAL_NODES_INSTANCE)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "forja", "GIT_AUTHOR_EMAIL": "forja@localhost",
    "GIT_COMMITTER_NAME": "forja", "GIT_COMMITTER_EMAIL": "forja@localhost",
}


@pytest.fixture(scope="module")
def argocd(cluster: Any) -> Iterator[ArgoCD]:
    """Argo CD beside the real-node cluster for this module. When the module ends, Argo
    CD stops and what its Applications installed is gone, so later modules on that
    shared cluster meet no second forja operator."""
    argo = ArgoCD(info=cluster.info)
    started = real_cli("start", module="forja_localcluster.argocd", timeout=600)
    if started.returncode != 0:
        pytest.fail(f"Argo CD did not start:\n{started.stdout}{started.stderr[-4000:]}",
                    pytrace=False)
    try:
        yield argo
    finally:
        # First the Applications, then Argo CD: nothing left to sync them back.
        argo.kubectl("delete", "applications.argoproj.io", "--all", "-n", NAMESPACE)
        stopped = real_cli("stop", module="forja_localcluster.argocd", timeout=120)
        _remove_synced(cluster)
        assert stopped.returncode == 0, stopped.stderr[-2000:]


def _synced(cluster: Any, kinds: str) -> list[tuple[str, str]]:
    """(kind/name, namespace) of the objects of ``kinds`` Argo CD synced (its tracking
    annotation)."""
    items = json.loads(cluster.kubectl("get", kinds, "-A", "-o", "json").stdout)["items"]
    return [(f"{o['kind'].lower()}/{o['metadata']['name']}", o["metadata"].get("namespace", ""))
            for o in items if TRACKING_ANNOTATION in (o["metadata"].get("annotations") or {})]


def _remove_synced(cluster: Any) -> None:
    # An Application deleted without Argo CD's resources finalizer leaves what it
    # synced. Not a cascading delete: that would prune the CRDs the chart ships too,
    # which the suite's other modules share. The chart's RBAC is cluster-scoped, so
    # it outlives the test's namespace: it goes here.
    for ref, _ in _synced(cluster, "clusterrolebindings,clusterroles"):
        cluster.kubectl("delete", ref, "--ignore-not-found")
    # The namespace fixture deletes the test's namespace, the chart operator with it;
    # the next module must not start while that operator still acts.
    wait_for(lambda: not _synced(cluster, "deployments"), timeout=180, interval=2,
             message="the chart operators Argo CD installed gone")


@dataclass
class GitRepo:
    """A working copy whose commits a git daemon on loopback serves as ``url``."""

    work: Path
    url: str

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.work, check=True, capture_output=True, text=True,
            env={**os.environ, **GIT_ENV},
        ).stdout

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", "HEAD:main")
        return self.git("rev-parse", "HEAD").strip()


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"git daemon exited {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"git daemon not listening on {port}")


@pytest.fixture
def git_repo(tmp_path: Path) -> Iterator[GitRepo]:
    """A bare repository served by ``git daemon`` (git://127.0.0.1) and a clone to edit.

    It starts with the chart at ``charts/forja``, copied from this checkout.
    """
    served = tmp_path / "served"
    bare = served / "forja.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True,
                   capture_output=True)
    repo = GitRepo(work=work, url=f"git://127.0.0.1:{GIT_DAEMON_PORT}/forja.git")
    repo.git("checkout", "-q", "-b", "main")
    shutil.copytree(ROOT / "helm" / "forja", work / "charts" / "forja")
    repo.commit("forja chart")
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={served}",
         "--listen=127.0.0.1", f"--port={GIT_DAEMON_PORT}", str(served)],
    )
    try:
        _wait_port(GIT_DAEMON_PORT, daemon)
        yield repo
    finally:
        daemon.terminate()
        daemon.wait(10)
