"""The operator as a real process against the local cluster, and helpers for its tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.contract_command import CONTRACT_TRAINER
from support.crds import crd_documents

ROOT = Path(__file__).resolve().parents[3]

__all__ = [
    "STORE_SECRET",
    "TRAINER",
    "Operator",
    "apply",
    "crd_documents",
    "get",
    "phase_is",
    "trainingjob",
    "wait_phase",
]


TRAINER = CONTRACT_TRAINER
STORE_SECRET = "forja-store"


class Operator:
    """``python -m forja_operator`` in a subprocess; kill() is a real SIGKILL."""

    def __init__(self, config: Path, kubeconfig: Path) -> None:
        self.config, self.kubeconfig = config, kubeconfig
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkdtemp(prefix="forja-op-")) / "operator.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "FORJA_CONFIG": str(self.config),
            "PYTHONPATH": os.pathsep.join(
                str(ROOT / d) for d in ("operator", "trainer_image", "server_image", "hack")
            ),
            "PYTHONWARNINGS": "ignore",
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "forja_operator"], env=env, stdout=out, stderr=out
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def logged(self, text: str) -> bool:
        """Whether the whole log (not just its tail: kopf's start-up pushes early lines
        out of it) holds ``text``."""
        return self.log.exists() and text in self.log.read_text(errors="replace")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def trainingjob(name: str, model: str = "m", **spec: Any) -> dict[str, Any]:
    hp = spec.pop("hyperparameters", {})
    body: dict[str, Any] = {
        "model": model,
        "trainer": "custom",
        "command": TRAINER,
        "dataset": {"uri": "generated://contract", "format": "generated"},
        "hyperparameters": {"epochs": 2, "epoch_seconds": 0.2, "batch_size": 32, **hp},
        "restartPolicy": {"backoffLimit": 3, "backoffSeconds": 0},
        "resources": {"cpu": "100m", "memory": "256Mi"},
    }
    body.update(spec)
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": body,
    }


def apply(cluster: Any, namespace: str, *objs: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objs))


def get(
    cluster: Any, namespace: str, kind: str, name: str | None = None, selector: str | None = None
) -> Any:
    args = ["get", kind, "-n", namespace, "-o", "json"]
    if name:
        args.insert(2, name)
    if selector:
        args += ["-l", selector]
    out = cluster.kubectl(*args, check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def phase_is(cluster: Any, ns: str, name: str, *phases: str) -> Callable[[], Any]:
    def check() -> Any:
        job = get(cluster, ns, "trainingjobs.forja.dev", name)
        return job if job and job.get("status", {}).get("phase") in phases else None

    return check


def wait_phase(cluster: Any, ns: str, name: str, *phases: str, timeout: float = 120) -> Any:
    """Wait for the job to reach one of ``phases``; on timeout fail with what was seen."""
    check = phase_is(cluster, ns, name, *phases)
    deadline = time.monotonic() + timeout
    while True:
        job = check()
        if job:
            return job
        if time.monotonic() > deadline:
            seen = get(cluster, ns, "trainingjobs.forja.dev", name) or {}
            pods = get(cluster, ns, "pods") or {"items": []}
            pod_states = {
                p["metadata"]["name"]: (
                    p.get("status", {}).get("phase"),
                    p.get("status", {}).get("containerStatuses"),
                )
                for p in pods["items"]
            }
            pytest.fail(
                f"{name} not {phases} after {timeout}s: "
                f"status={seen.get('status')} pods={pod_states}"
            )
        time.sleep(0.5)
