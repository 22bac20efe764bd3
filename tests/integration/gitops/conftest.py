"""Fixtures: Argo CD on the local cluster and a local git repository it syncs from."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from forja_localcluster.argocd import ArgoCD, ArgoCDError, build
from forja_localcluster.config import INSTANCE

ROOT = Path(__file__).resolve().parents[3]
GIT_DAEMON_PORT = 19418 + 100 * INSTANCE
GIT_ENV = {
    "GIT_AUTHOR_NAME": "forja", "GIT_AUTHOR_EMAIL": "forja@localhost",
    "GIT_COMMITTER_NAME": "forja", "GIT_COMMITTER_EMAIL": "forja@localhost",
}


@pytest.fixture(scope="session")
def argocd(cluster: Any) -> Iterator[ArgoCD]:
    try:
        argo = ArgoCD(bin_dir=build(), info=cluster.info)
    except ArgoCDError as exc:
        pytest.fail(str(exc), pytrace=False)
    # A separate process, as for the cluster: the components it starts are detached
    # and outlive the test run.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "hack"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-m", "forja_localcluster.argocd", "start"],
                            capture_output=True, text=True, env=env, timeout=600, check=False)
    if result.returncode != 0:
        pytest.fail(f"Argo CD did not start:\n{result.stdout}{result.stderr[-4000:]}",
                    pytrace=False)
    yield argo
    # Left running like the cluster: `python -m forja_localcluster.argocd stop`.


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
