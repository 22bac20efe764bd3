"""Helpers for the InferenceService integration tests: the controller process, model
versions whose artifacts are in the cluster's MinIO, a client that keeps sending
requests."""

from __future__ import annotations

import hashlib
import json
import os
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
from unittest import mock

from kubernetes import client, config

import forja_storage

CHECKOUT = Path(__file__).resolve().parents[3]
# The stand-in goes in as `python -c <source>`: the server image holds no tests.
STANDIN_COMMAND = ["python", "-c",
                   (CHECKOUT / "tests" / "support" / "standin_server.py").read_text()]
GROUP, VERSION = "forja.dev", "v1alpha1"
STORE_SECRET = "forja-artifact-store"


def api() -> client.CustomObjectsApi:
    config.load_kube_config(os.environ["KUBECONFIG"])
    return client.CustomObjectsApi()


@dataclass(frozen=True)
class Store:
    """The cluster's MinIO, where model artifacts live as they do for a user: pods
    fetch them with the credentials Secret the operator names, never from this
    machine's files."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str

    @classmethod
    def from_env(cls) -> Store:
        """From what ``forja_localcluster env`` exports."""
        return cls(os.environ["FORJA_S3_ENDPOINT"], os.environ["AWS_ACCESS_KEY_ID"],
                   os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["FORJA_S3_BUCKET"])

    def _env(self) -> Any:
        # forja_storage reads the endpoint and keys from the environment per call.
        return mock.patch.dict(os.environ, {
            "FORJA_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key})

    def uri(self, *parts: str) -> str:
        return forja_storage.join(f"s3://{self.bucket}/isvc-tests", *parts)

    def upload(self, src: Path, uri: str) -> None:
        with self._env():
            forja_storage.upload(src, uri)

    def delete_prefix(self, uri: str) -> None:
        with self._env():
            for each in forja_storage.list_uris(uri):
                forja_storage.delete(each)

    def operator_config(self) -> dict[str, Any]:
        return {"uri": self.uri(), "endpoint": self.endpoint, "credentialsSecret": STORE_SECRET}

    def create_secret(self, namespace: str) -> None:
        client.CoreV1Api(config.new_client_from_config(os.environ["KUBECONFIG"])) \
            .create_namespaced_secret(namespace, {
                "metadata": {"name": STORE_SECRET},
                "stringData": {"accessKey": self.access_key, "secretKey": self.secret_key}})


@dataclass
class Controller:
    """The operator (``python -m forja_operator``: every handler, the ModelVersion
    controller included), watching only the test's namespace."""

    namespace: str
    log: Path
    store: Store
    proc: subprocess.Popen[bytes] | None = None
    standin: bool = True
    """Serve with tests/support/standin_server.py; False: the real ``python -m forja_server``."""

    def start(self, kubeconfig: Path, tmp: Path) -> None:
        self.store.create_secret(self.namespace)
        cfg = tmp / "operator.yaml"
        cfg.write_text(json.dumps({
            "watchNamespaces": [self.namespace], "metricsPort": 0, "healthPort": 0,
            "inferenceServiceResyncSeconds": 5,
            "artifactStore": self.store.operator_config(),
            **({"serverCommand": STANDIN_COMMAND} if self.standin else {}),
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
    """ModelVersions whose artifacts are stand-in files, or real ones, uploaded to the
    store (the operator verifies them with its verify pods and marks them Ready)."""

    def __init__(self, namespace: str, store: Store, workdir: Path) -> None:
        self.namespace = namespace
        self.store = store
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.api = api()

    def create(self, model: str, version: str, *, aliases: list[str] | None = None,
               loadable: bool = True, error_rate: float = 0.0,
               artifact: Path | None = None, fmt: str = "onnx") -> str:
        """A ModelVersion of a stand-in artifact, or of ``artifact`` (a real one: a
        manifest, uploaded with the files beside it)."""
        name = f"{model}-{version.replace('.', '-')}"
        path = artifact or self.dir / f"{name}.json"
        if artifact is None:
            path.write_text(json.dumps({"standin": True, "loadable": loadable,
                                        "loadSeconds": 0.2, "errorRate": error_rate}))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        prefix = self.store.uri(self.namespace, name)
        self.store.upload(path.parent if artifact else path,
                          prefix if artifact else forja_storage.join(prefix, path.name))
        self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, "modelversions", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelVersion",
            "metadata": {"name": name},
            "spec": {"model": model, "version": version, "format": fmt,
                     "task": "classification", "aliases": aliases or [],
                     "artifact": {"uri": forja_storage.join(prefix, path.name),
                                  "sha256": digest}},
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
        self.store.delete_prefix(self.store.uri(self.namespace))


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
    """Sends requests to the Service's ClusterIP (kube-proxy spreads them over ready
    endpoints) and counts answers per version."""

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
