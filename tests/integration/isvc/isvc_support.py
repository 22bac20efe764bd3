"""Helpers for the InferenceService integration tests: the controller process, model
versions backed by stand-in artifacts, a client that keeps sending requests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

CHECKOUT = Path(__file__).resolve().parents[3]
STANDIN = CHECKOUT / "tests" / "support" / "standin_server.py"
# Not under /tmp: server pods mount an emptyDir there and would not see the files.
ARTIFACT_ROOT = Path("/var/tmp/forja-isvc-tests")
GROUP, VERSION = "forja.dev", "v1alpha1"


def api() -> client.CustomObjectsApi:
    config.load_kube_config(os.environ["KUBECONFIG"])
    return client.CustomObjectsApi()


@dataclass
class Controller:
    """The operator (``python -m forja_operator``: every handler, the ModelVersion
    controller included), watching only the test's namespace."""

    namespace: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    standin: bool = True
    """Serve with tests/support/standin_server.py; False: the real ``python -m forja_server``."""

    def start(self, kubeconfig: Path, tmp: Path) -> None:
        cfg = tmp / "operator.yaml"
        cfg.write_text(json.dumps({
            "watchNamespaces": [self.namespace], "metricsPort": 0, "healthPort": 0,
            "serverImage": "forja/server:test", "inferenceServiceResyncSeconds": 5,
            **({"serverCommand": ["python", str(STANDIN)]} if self.standin else {}),
        }))
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "FORJA_CONFIG": str(cfg),
            "PYTHONPATH": os.pathsep.join(
                str(CHECKOUT / d) for d in ("operator", "trainer_image", "server_image", "hack")
            ),
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "forja_operator"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Models:
    """ModelVersions whose artifacts are stand-in files (the operator verifies them
    with its verify pods and marks them Ready)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.dir = ARTIFACT_ROOT / namespace
        self.dir.mkdir(parents=True, exist_ok=True)
        self.api = api()

    def create(self, model: str, version: str, *, aliases: list[str] | None = None,
               loadable: bool = True, error_rate: float = 0.0,
               artifact: Path | None = None) -> str:
        """A ModelVersion of a stand-in artifact, or of ``artifact`` (a real one)."""
        path = artifact or self.dir / f"{model}-{version}.json"
        if artifact is None:
            path.write_text(json.dumps({"standin": True, "loadable": loadable,
                                        "loadSeconds": 0.2, "errorRate": error_rate}))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        name = f"{model}-{version.replace('.', '-')}"
        self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelversions", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
            "metadata": {"name": name},
            "spec": {"model": model, "version": version, "format": "onnx",
                     "task": "classification", "aliases": aliases or [],
                     "artifact": {"uri": f"file://{path}", "sha256": digest}},
        })
        return name

    def phase(self, name: str) -> str:
        obj = self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace,
                                                    "modelversions", name)
        return str((obj.get("status") or {}).get("phase", ""))

    def set_aliases(self, name: str, aliases: list[str]) -> None:
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "modelversions", name, {"spec": {"aliases": aliases}})

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def get_isvc(namespace: str, name: str) -> dict[str, Any]:
    return dict(api().get_namespaced_custom_object(GROUP, VERSION, namespace,
                                                   "inferenceservices", name))


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


@dataclass
class Traffic:
    """Sends requests to the Service's ClusterIP (the agent's proxy spreads them over
    ready endpoints, as kube-proxy does) and counts answers per version."""

    url: str
    interval: float = 0.05
    answers: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _one(self) -> None:
        req = urllib.request.Request(self.url, data=b'{"inputs": [1]}', method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                body = json.loads(resp.read())
            self.answers[",".join(s["version"] for s in body["stages"])] += 1
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            self.failures.append(f"{time.strftime('%H:%M:%S')} {exc}")

    def _run(self) -> None:
        while not self._stop.is_set():
            self._one()
            self._stop.wait(self.interval)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def reset(self) -> None:
        self.answers.clear()
        self.failures.clear()


class Sampler:
    """Samples an InferenceService's status in the background (what a user would see)."""

    def __init__(self, namespace: str, name: str, interval: float = 0.3) -> None:
        self.namespace, self.name, self.interval = namespace, name, interval
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._api = api()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                obj = self._api.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "inferenceservices", self.name)
                self.samples.append(dict(obj.get("status") or {}))
            except client.ApiException:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
