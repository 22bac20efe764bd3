"""Operator benchmark: apply -> first pod latency, bursts of jobs, CPU and peak RSS.

Runs the real operator (``python -m forja_operator``) as a subprocess against the
cluster in $KUBECONFIG and prints figures:

* apply -> attempt pod created, p50 / p99 over N jobs applied one after another
  (time from the create request to the pod's ADDED event on a watch);
* for each ``--burst COUNT[xWORKERS]``: COUNT jobs of WORKERS pods each created at once
  (8 client threads) -> seconds until every pod exists, and the rate in pods/s;
* the operator's CPU seconds during each burst and its peak RSS (VmHWM).

Each of these runs is a phase of its own: a fresh operator process on a fresh, empty
namespace, up once a warm-up job's pod exists, stopped and the namespace emptied and
deleted (and waited for) before the next, so the peak RSS of a burst is that burst's.
Phases go size by size, each for every operator in turn, so a run cut short still
compares. forja's multi-worker jobs are image-classifier gangs (the trainers that
take workers > 1): ``WORKERS`` pods and a rendezvous Service.

With ``--trainer DIR`` the same runs, in the same run on the same cluster, go to
Kubeflow Trainer v2 (TrainJob -> JobSet -> Jobs -> pods; its controller manager and
the JobSet controller, built from their pinned Go modules by hack/build-trainer.sh):
TrainJobs with ``numNodes`` WORKERS on a minimal ClusterTrainingRuntime running the
same command. Both managers serve their webhooks, which are registered as shipped
(TrainJob and JobSet defaulting and validation, JobSet's pod webhooks) at a 127.0.0.1
URL with a certificate made here for the API server to trust. Their CPU and RSS are
reported separately and summed. The pods are made by the kube-controller-manager's
Job controller, whose CPU is shown on its own row for every subject.

With ``--kubeflow DIR`` the same for Kubeflow's training-operator v1 (built from its
pinned Go module by hack/build-training-operator.sh) with PyTorchJobs of one Master
replica (and WORKERS - 1 Worker replicas) running the same command. On the local
cluster:

    bash hack/netns.sh env PYTHONPATH=operator python bench/operator/bench_operator.py \\
        --jobs 200 --burst 1000 --burst 5000 --burst 200x4 \\
        --trainer "$(bash hack/build-trainer.sh)" \\
        --kubeflow "$(bash hack/build-training-operator.sh)"

Applies crds/ (kubectl on PATH). Pods get a node selector no node has, so they are
created and stay Pending: the figures are the operators', not a node's. No other
forja operator may watch the bench namespaces (uninstall the chart first).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[2]


# Pods stay Pending on a cluster with nodes: kubelets running thousands of
# no-op trainers would measure the node, not the operator.
NO_NODE = {"forja.dev/bench": "no-such-node"}
COMMAND = ["python", "-c", "pass"]
IMAGE = "forja-trainer:bench"


def forja_job(name: str, workers: int) -> dict:
    spec: dict = {
        "model": "bench",
        "trainer": "custom",
        "command": COMMAND,
        "dataset": {"uri": "generated://bench", "format": "generated"},
        "scheduling": {"nodeSelector": NO_NODE},
    }
    if workers > 1:  # only the data-parallel trainers take workers > 1
        spec = {
            "model": "bench",
            "trainer": "image-classifier",
            "workers": workers,
            "dataset": {"uri": "generated://shapes", "format": "image-folder"},
            "scheduling": {"nodeSelector": NO_NODE},
        }
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": spec,
    }


def pytorch_job(name: str, workers: int) -> dict:
    """The same work for the training-operator: a Master and ``workers - 1`` Workers."""
    container = {"name": "pytorch", "image": IMAGE, "command": COMMAND}

    def replicas(count: int) -> dict:
        return {
            "replicas": count,
            "restartPolicy": "Never",
            "template": {"spec": {"containers": [container], "nodeSelector": NO_NODE}},
        }

    specs = {"Master": replicas(1)}
    if workers > 1:
        specs["Worker"] = replicas(workers - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {"pytorchReplicaSpecs": specs},
    }


TRAINER_RUNTIME = "forja-bench-torch"


def train_job(name: str, workers: int) -> dict:
    """The same work for Trainer v2: a TrainJob of ``workers`` nodes on the bench runtime."""
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name},
        "spec": {
            "runtimeRef": {
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
                "name": TRAINER_RUNTIME,
            },
            "trainer": {"numNodes": workers},
        },
    }


def trainer_runtime() -> dict:
    """A minimal torch ClusterTrainingRuntime: its shipped torch-distributed, our pod."""
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {
            "name": TRAINER_RUNTIME,
            "labels": {"trainer.kubeflow.org/framework": "torch"},
        },
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {
                                "metadata": {
                                    "labels": {
                                        "trainer.kubeflow.org/trainjob-ancestor-step": "trainer"
                                    }
                                },
                                "spec": {
                                    "template": {
                                        "spec": {
                                            "containers": [
                                                {"name": "node", "image": IMAGE, "command": COMMAND}
                                            ],
                                            "nodeSelector": NO_NODE,
                                        }
                                    }
                                },
                            },
                        }
                    ]
                }
            },
        },
    }


@dataclass(frozen=True)
class Burst:
    """``jobs`` jobs of ``workers`` pods each, created at once."""

    jobs: int
    workers: int = 1

    @classmethod
    def parse(cls, text: str) -> Burst:
        jobs, _, workers = text.partition("x")
        return cls(int(jobs), int(workers or 1))

    @property
    def pods(self) -> int:
        return self.jobs * self.workers

    def __str__(self) -> str:
        return f"{self.jobs:,} x {self.workers}"


Processes = list[tuple[str, subprocess.Popen]]
"""The operator's processes, each with the name its figures are shown under."""


@dataclass(frozen=True)
class Subject:
    """One operator under test: how to start it and what it reconciles."""

    name: str
    group: str
    version: str
    plural: str
    pod_label: str  # a label its pods carry, valued with the job's name
    body: Callable[[str, int], dict]
    start: Callable[[str, Path], Processes]
    stop: Callable[[], None] = lambda: None  # removes what start left outside the namespace


def start_forja(namespace: str, logdir: Path) -> Processes:
    cfg = logdir / "config.yaml"
    cfg.write_text(f"watchNamespaces: [{namespace}]\nmetricsPort: 0\nhealthPort: 0\n")
    env = {
        **os.environ,
        "FORJA_CONFIG": str(cfg),
        "PYTHONPATH": f"{ROOT / 'operator'}:{os.environ.get('PYTHONPATH', '')}",
        "PYTHONWARNINGS": "ignore",
    }
    log = open(logdir / "forja-operator.log", "w")  # noqa: SIM115
    return [
        (
            "forja",
            subprocess.Popen(
                [sys.executable, "-m", "forja_operator"], env=env, stdout=log, stderr=log
            ),
        )
    ]


def kubeflow_starter(binary: Path, crd: Path, threads: int) -> Callable[[str, Path], Processes]:
    def start(home: str, logdir: Path) -> Processes:
        core, admission = client.CoreV1Api(), client.AdmissionregistrationV1Api()
        kubectl("apply", "--server-side", "-f", str(crd))
        kubectl("wait", "--for=condition=Established", "-f", str(crd))
        time.sleep(2)  # served once established, on every API server handler
        # Its cert rotator needs a Secret to fill and a ValidatingWebhookConfiguration to
        # inject the CA into. The webhook is registered but never called (no object matches
        # its selector): that spares the training-operator a round trip per create, as it
        # always has here; forja's admission (CEL) stays on.
        core.create_namespaced_secret(
            home, {"metadata": {"name": "training-operator-webhook-cert"}}
        )
        vwc = "validator.training-operator.kubeflow.org"
        with contextlib.suppress(client.ApiException):
            admission.delete_validating_webhook_configuration(vwc)
        admission.create_validating_webhook_configuration(
            {
                "metadata": {"name": vwc},
                "webhooks": [
                    {
                        "name": "validator.pytorchjob.training-operator.kubeflow.org",
                        "admissionReviewVersions": ["v1"],
                        "sideEffects": "None",
                        "failurePolicy": "Fail",
                        "clientConfig": {
                            "service": {
                                "name": "training-operator",
                                "namespace": home,
                                "path": "/validate-kubeflow-org-v1-pytorchjob",
                            }
                        },
                        "objectSelector": {"matchLabels": {"forja.dev/bench-never": "x"}},
                        "rules": [
                            {
                                "apiGroups": ["kubeflow.org"],
                                "apiVersions": ["v1"],
                                "operations": ["CREATE", "UPDATE"],
                                "resources": ["pytorchjobs"],
                            }
                        ],
                    }
                ],
            }
        )
        log = open(logdir / "training-operator.log", "w")  # noqa: SIM115
        threading.Thread(target=mount_cert_secret, args=(core, home), daemon=True).start()
        proc = subprocess.Popen(
            [
                str(binary),
                "--enable-scheme=pytorchjob",
                f"--controller-threads={threads}",
                "--metrics-bind-address=0",
                "--health-probe-bind-address=0",
                f"--webhook-server-port={free_port()}",
            ],
            env={**os.environ, "MY_POD_NAMESPACE": home},
            stdout=log,
            stderr=log,
        )
        return [("training-operator", proc)]

    return start


# Fixed in their sources (controller-runtime's default); in a pod it is a Secret volume.
WEBHOOK_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # noqa: S108


def mount_cert_secret(core: client.CoreV1Api, namespace: str) -> None:
    """Do the kubelet's part: put the rotator's Secret where the operator waits for it.

    The training-operator starts its controllers only once its webhook certificate is
    on disk, which in a pod is a Secret volume.
    """
    for _ in range(120):
        data = core.read_namespaced_secret("training-operator-webhook-cert", namespace).data or {}
        if "tls.crt" in data and "tls.key" in data:
            WEBHOOK_CERT_DIR.mkdir(parents=True, exist_ok=True)
            for key in ("tls.crt", "tls.key", "ca.crt"):
                if key in data:
                    (WEBHOOK_CERT_DIR / key).write_bytes(base64.b64decode(data[key]))
            return
        time.sleep(0.5)


def serving_cert(cert_dir: Path) -> bytes:
    """A self-signed 127.0.0.1 serving certificate in ``cert_dir``; returns its PEM.

    Made with the openssl CLI as the local cluster's own PKI is: the API server trusts
    it through each webhook's caBundle.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(cert_dir / "tls.key"),
            "-out",
            str(cert_dir / "tls.crt"),
        ],
        check=True,
        capture_output=True,
    )
    return (cert_dir / "tls.crt").read_bytes()


def shipped_webhooks(path: Path, prefix: str, port: int, ca: bytes) -> list[dict]:
    """The webhook configurations a module ships, pointed at 127.0.0.1:``port``.

    Each service reference becomes a URL with the same path; the names get ``prefix``
    (Trainer and JobSet ship configurations of the same names). JobSet's kustomize
    patches limit its pod webhooks to pods of a JobSet: that selector is applied here.
    """
    out = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        doc["metadata"] = {"name": f"{prefix}-{doc['metadata']['name']}"}
        for hook in doc["webhooks"]:
            url = f"https://127.0.0.1:{port}{hook['clientConfig']['service']['path']}"
            hook["clientConfig"] = {"url": url, "caBundle": base64.b64encode(ca).decode()}
            if any("pods" in rule["resources"] for rule in hook["rules"]):
                hook["objectSelector"] = {
                    "matchExpressions": [
                        {"key": "jobset.sigs.k8s.io/jobset-name", "operator": "Exists"}
                    ]
                }
        out.append(doc)
    return out


def register_webhooks(configs: list[dict]) -> None:
    admission = client.AdmissionregistrationV1Api()
    for cfg in configs:
        if cfg["kind"] == "MutatingWebhookConfiguration":
            delete, create = (
                admission.delete_mutating_webhook_configuration,
                admission.create_mutating_webhook_configuration,
            )
        else:
            delete, create = (
                admission.delete_validating_webhook_configuration,
                admission.create_validating_webhook_configuration,
            )
        with contextlib.suppress(client.ApiException):
            delete(cfg["metadata"]["name"])
        create(cfg)


def unregister_webhooks(prefix: str) -> None:
    """Without their servers the JobSet pod webhooks (failurePolicy Fail) would refuse pods."""
    admission = client.AdmissionregistrationV1Api()
    for hooks in admission.list_mutating_webhook_configuration().items:
        if hooks.metadata.name.startswith(prefix):
            admission.delete_mutating_webhook_configuration(hooks.metadata.name)
    for hooks in admission.list_validating_webhook_configuration().items:
        if hooks.metadata.name.startswith(prefix):
            admission.delete_validating_webhook_configuration(hooks.metadata.name)


def wait_port(port: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > end:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
        time.sleep(0.2)


WEBHOOK_PREFIX = "forja-bench"


def trainer_starter(directory: Path) -> Callable[[str, Path], Processes]:
    """Trainer v2's controller manager and the JobSet controller, with the shipped config.

    Leader election, metrics and health probes are off (one replica, no scraper), the
    internal cert rotation too (it wants a Service in front of the webhook); the rest is
    their shipped configuration: the manager's QPS 50 / burst 100 and TrainJob
    concurrency 5 (manifests/base/manager), JobSet's QPS 500 / burst 500 (its flags).
    """
    ready = {"crds": False}

    def start(namespace: str, logdir: Path) -> Processes:
        if not ready["crds"]:
            kubectl("apply", "--server-side", "-f", str(directory / "crds"))
            # The manager reads discovery at start and exits if a group is not served yet.
            kubectl("wait", "--for=condition=Established", "-f", str(directory / "crds"))
            time.sleep(2)
            ready["crds"] = True
        ca = serving_cert(WEBHOOK_CERT_DIR)
        trainer_port, jobset_port = free_port(), free_port()
        (logdir / "trainer.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "config.trainer.kubeflow.org/v1alpha1",
                    "kind": "Configuration",
                    "health": {"healthProbeBindAddress": "0"},
                    "metrics": {"bindAddress": "0"},
                    "webhook": {"port": trainer_port, "host": "127.0.0.1"},
                    "leaderElection": {"leaderElect": False},
                    "controller": {
                        "groupKindConcurrency": {
                            "TrainJob.trainer.kubeflow.org": 5,
                            "TrainingRuntime.trainer.kubeflow.org": 1,
                            "ClusterTrainingRuntime.trainer.kubeflow.org": 1,
                        }
                    },
                    "certManagement": {"enable": False},
                    "clientConnection": {"qps": 50, "burst": 100},
                }
            )
        )
        (logdir / "jobset.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
                    "kind": "Configuration",
                    "leaderElection": {"leaderElect": False},
                    "internalCertManagement": {"enable": False},
                    "webhook": {
                        "port": jobset_port,
                        "host": "127.0.0.1",
                        "certDir": str(WEBHOOK_CERT_DIR),
                    },
                    "metrics": {"bindAddress": "0"},
                    "health": {"healthProbeBindAddress": "0"},
                }
            )
        )
        procs: Processes = []
        for name, argv in (
            (
                "jobset",
                [str(directory / "jobset-controller"), f"--config={logdir / 'jobset.yaml'}"],
            ),
            (
                "trainer",
                [
                    str(directory / "trainer-controller-manager"),
                    f"--config={logdir / 'trainer.yaml'}",
                ],
            ),
        ):
            log = open(logdir / f"{name}.log", "w")  # noqa: SIM115
            procs.append((name, subprocess.Popen(argv, stdout=log, stderr=log)))
        try:
            wait_port(jobset_port, 120)
            wait_port(trainer_port, 120)
        except TimeoutError:
            # Not returned, so not stopped by the phase: a JobSet controller left
            # running would reconcile the next runs' JobSets beside the measured one.
            for _, p in procs:
                p.kill()
            raise
        register_webhooks(
            shipped_webhooks(
                directory / "jobset-webhooks.yaml", f"{WEBHOOK_PREFIX}-jobset", jobset_port, ca
            )
            + shipped_webhooks(
                directory / "webhook-manifests.yaml", f"{WEBHOOK_PREFIX}-trainer", trainer_port, ca
            )
        )
        custom = client.CustomObjectsApi()
        with contextlib.suppress(client.ApiException):
            custom.delete_cluster_custom_object(
                "trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes", TRAINER_RUNTIME
            )
        custom.create_cluster_custom_object(
            "trainer.kubeflow.org", "v1alpha1", "clustertrainingruntimes", trainer_runtime()
        )
        return procs

    return start


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubectl(*args: str) -> None:
    subprocess.run(["kubectl", *args], check=True, stdout=subprocess.DEVNULL)


class PodWatcher:
    """Records when each pod, and the first pod of each job, is first seen in a namespace."""

    def __init__(
        self, core: client.CoreV1Api, namespace: str, label: str, ignore: str = ""
    ) -> None:
        self.label = label
        self.ignore = ignore  # a job whose pods do not count (the warm-up)
        self.seen: dict[str, float] = {}  # job name -> its first pod
        self.pods: dict[str, float] = {}  # pod name -> first seen
        self.cond = threading.Condition()
        self._w = watch.Watch()
        self._t = threading.Thread(target=self._run, args=(core, namespace), daemon=True)
        self._t.start()
        time.sleep(0.5)

    def _run(self, core: client.CoreV1Api, namespace: str) -> None:
        with contextlib.suppress(Exception):  # the stream ends with an error when stopped
            self._stream(core, namespace)

    def _stream(self, core: client.CoreV1Api, namespace: str) -> None:
        for ev in self._w.stream(core.list_namespaced_pod, namespace, label_selector=self.label):
            meta = ev["object"].metadata
            job = meta.labels[self.label]
            if job == self.ignore:
                continue
            now = time.perf_counter()
            with self.cond:
                self.seen.setdefault(job, now)
                self.pods.setdefault(meta.name, now)
                self.cond.notify_all()

    def wait_for(self, jobs: int, timeout: float, pods: int = 0) -> bool:
        end = time.perf_counter() + timeout
        with self.cond:
            while len(self.seen) < jobs or len(self.pods) < pods:
                left = end - time.perf_counter()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self) -> None:
        self._w.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def controller_manager_pid() -> int | None:
    """The local cluster's kube-controller-manager (its pid file beside the kubeconfig)."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return None
    try:
        pid = int(
            (Path(kubeconfig).parent / "pids" / "controller-manager.pid").read_text().split()[0]
        )
        cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


@dataclass
class Latency:
    p50: float
    p99: float


@dataclass
class BurstFigures:
    seconds: float
    pods: int
    cpu: dict[str, float] = field(default_factory=dict)  # per process
    rss_mb: dict[str, float] = field(default_factory=dict)  # per process
    controller_manager_cpu: float = float("nan")


class Phase:
    """A fresh operator on a fresh namespace; stopped and the namespace gone on exit."""

    def __init__(self, subject: Subject, tag: str, keep: bool) -> None:
        self.subject, self.keep = subject, keep
        self.core, self.custom = client.CoreV1Api(), client.CustomObjectsApi()
        self.ns = f"bench-{subject.name}-{tag}-{uuid.uuid4().hex[:6]}"
        self.logdir = Path(tempfile.mkdtemp(prefix=f"bench-{subject.name}-{tag}-"))
        self.procs: Processes = []

    def create(self, name: str, workers: int = 1) -> None:
        s = self.subject
        self.custom.create_namespaced_custom_object(
            s.group, s.version, self.ns, s.plural, s.body(name, workers)
        )

    def __enter__(self) -> Phase:
        self.core.create_namespace({"metadata": {"name": self.ns}})
        # The cluster's controller-manager makes it too, but not at once.
        with contextlib.suppress(client.ApiException):
            self.core.create_namespaced_service_account(self.ns, {"metadata": {"name": "default"}})
        try:
            self.procs = self.subject.start(self.ns, self.logdir)
            # Up means a job's pods exist: informers synced, webhooks served, certs in place.
            w = PodWatcher(self.core, self.ns, self.subject.pod_label)
            self.create("warmup")
            up = w.wait_for(1, 180)
            w.stop()
            if not up or any(p.poll() is not None for _, p in self.procs):
                raise RuntimeError(f"{self.subject.name}: operator not up, see {self.logdir}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        if not self.keep:
            # Deleted while the operator runs: nothing of it is left holding a finalizer.
            t0 = time.perf_counter()
            with contextlib.suppress(client.ApiException):
                self.core.delete_namespace(self.ns)
            empty_namespace(self.subject, self.ns)
            end = t0 + 900
            while time.perf_counter() < end:
                try:
                    self.core.read_namespace(self.ns)
                except client.ApiException:
                    break
                time.sleep(2)
            took = time.perf_counter() - t0
            print(f"  ({self.subject.name}: namespace {self.ns} deleted in {took:.0f} s)")
        for _, p in self.procs:
            p.terminate()
        for _, p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.subject.stop()


def empty_namespace(subject: Subject, ns: str) -> None:
    """Delete the jobs and pods of a terminating namespace, 16 at a time.

    The namespace controller alone takes minutes for 5,000 pods on this machine (the
    API server deletes a collection one item after another), and a namespace still
    being emptied would weigh on the next phase. No operator can create anything in a
    terminating namespace.
    """
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    jobs = custom.list_namespaced_custom_object(subject.group, subject.version, ns, subject.plural)
    listed = core.list_namespaced_pod(ns, _preload_content=False)
    pods = [p["metadata"]["name"] for p in json.loads(listed.data)["items"]]

    def delete_job(name: str) -> None:
        with contextlib.suppress(client.ApiException):
            custom.delete_namespaced_custom_object(
                subject.group, subject.version, ns, subject.plural, name
            )

    def delete_pod(name: str) -> None:
        with contextlib.suppress(client.ApiException):
            core.delete_namespaced_pod(name, ns, grace_period_seconds=0)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(delete_job, [j["metadata"]["name"] for j in jobs["items"]]))
        list(pool.map(delete_pod, pods))


def latency_phase(subject: Subject, jobs: int, keep: bool) -> Latency:
    with Phase(subject, "seq", keep) as ph:
        w = PodWatcher(ph.core, ph.ns, subject.pod_label, ignore="warmup")
        lat: list[float] = []
        for i in range(jobs):
            name = f"seq-{i}"
            t0 = time.perf_counter()
            ph.create(name)
            if not w.wait_for(i + 1, 60):
                raise RuntimeError(
                    f"{subject.name}: timeout waiting for the pod of {name}, see {ph.logdir}"
                )
            lat.append((w.seen[name] - t0) * 1000)
        w.stop()
    figures = Latency(p50=pct(lat, 50), p99=pct(lat, 99))
    print(
        f"{subject.name}: apply -> first pod over {jobs} jobs: p50 {figures.p50:.1f} ms, "
        f"p99 {figures.p99:.1f} ms, mean {statistics.mean(lat):.1f} ms, max {max(lat):.1f} ms"
    )
    return figures


def burst_phase(subject: Subject, burst: Burst, keep: bool) -> BurstFigures | None:
    with Phase(subject, f"burst{burst.jobs}x{burst.workers}", keep) as ph:
        w = PodWatcher(ph.core, ph.ns, subject.pod_label, ignore="warmup")
        cm = controller_manager_pid()
        cm0 = cpu_seconds(cm) if cm else float("nan")
        cpu0 = {name: cpu_seconds(p.pid) for name, p in ph.procs}
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: ph.create(f"burst-{i}", burst.workers), range(burst.jobs)))
        applied = time.perf_counter() - t0
        # Generous: the training-operator makes about 10 jobs' pods a second.
        ok = w.wait_for(burst.jobs, 300 + burst.pods / 4, pods=burst.pods)
        total = max(w.pods.values()) - t0 if w.pods else float("nan")
        w.stop()
        figures = BurstFigures(
            seconds=total,
            pods=len(w.pods),
            cpu={name: cpu_seconds(p.pid) - cpu0[name] for name, p in ph.procs},
            rss_mb={name: peak_rss_mb(p.pid) for name, p in ph.procs},
            controller_manager_cpu=cpu_seconds(cm) - cm0 if cm else float("nan"),
        )
    print(
        f"{subject.name}: {burst} ({burst.pods} pods) applied in {applied:.1f} s; "
        f"{figures.pods} pods exist {total:.1f} s after the first apply "
        f"({figures.pods / total:.0f} pods/s)" + ("" if ok else " (TIMEOUT)")
    )
    print(
        f"{subject.name}: operator CPU during the burst "
        + ", ".join(f"{n} {c:.1f} s" for n, c in figures.cpu.items())
        + "; peak RSS "
        + ", ".join(f"{n} {r:.0f} MB" for n, r in figures.rss_mb.items())
        + f"; controller-manager CPU {figures.controller_manager_cpu:.1f} s"
    )
    return figures if ok else None


@dataclass
class Results:
    latency: Latency | None = None
    bursts: dict[Burst, BurstFigures | None] = field(default_factory=dict)


def run_all(
    subjects: list[Subject], jobs: int, bursts: list[Burst], keep: bool
) -> dict[str, Results]:
    """Phase by phase, each for every subject in turn: a run cut short still compares."""
    results = {s.name: Results() for s in subjects}
    for subject in subjects:
        try:
            if jobs:
                results[subject.name].latency = latency_phase(subject, jobs, keep)
        except Exception as exc:
            print(f"{subject.name}: {exc!r}")
    for burst in bursts:
        for subject in subjects:
            try:
                results[subject.name].bursts[burst] = burst_phase(subject, burst, keep)
            except Exception as exc:
                print(f"{subject.name}: {exc!r}")
    return results


def summed(values: dict[str, float], fmt: str) -> str:
    """One process: its value; several: each, then their sum."""
    if len(values) == 1:
        return format(next(iter(values.values())), fmt)
    return (
        " + ".join(format(v, fmt) for v in values.values())
        + " = "
        + format(sum(values.values()), fmt)
    )


def print_table(results: dict[str, Results], jobs: int, bursts: list[Burst]) -> None:
    rows: list[tuple[str, list[str]]] = []
    if jobs:
        for label, attr in (("p50", "p50"), ("p99", "p99")):
            rows.append(
                (
                    f"apply->pod {label} over {jobs} (ms)",
                    [
                        f"{getattr(r.latency, attr):.0f}" if r.latency else "-"
                        for r in results.values()
                    ],
                )
            )
    for burst in bursts:
        figs = [r.bursts.get(burst) for r in results.values()]
        rows += [
            (f"{burst}: every pod exists (s)", [f"{f.seconds:.1f}" if f else "-" for f in figs]),
            (f"{burst}: pods/s", [f"{f.pods / f.seconds:.0f}" if f else "-" for f in figs]),
            (f"{burst}: operator CPU (s)", [summed(f.cpu, ".1f") if f else "-" for f in figs]),
            (f"{burst}: peak RSS (MB)", [summed(f.rss_mb, ".0f") if f else "-" for f in figs]),
            (
                f"{burst}: controller-manager CPU (s)",
                [f"{f.controller_manager_cpu:.1f}" if f else "-" for f in figs],
            ),
        ]
    width = max(len(label) for label, _ in rows) + 2
    cols = [
        max(len(name), *(len(cells[i]) for _, cells in rows)) + 2 for i, name in enumerate(results)
    ]
    print(
        "\nside by side".ljust(width + 1)
        + "".join(n.rjust(c) for n, c in zip(results, cols, strict=True))
    )
    for label, cells in rows:
        print(label.ljust(width) + "".join(v.rjust(c) for v, c in zip(cells, cols, strict=True)))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=200, help="jobs applied one at a time (0: none)")
    ap.add_argument(
        "--burst",
        type=Burst.parse,
        action="append",
        metavar="COUNT[xWORKERS]",
        help="COUNT jobs of WORKERS pods (default 1) created at once; repeatable (default: 1000)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the namespaces")
    ap.add_argument(
        "--trainer",
        type=Path,
        metavar="DIR",
        help="also run Kubeflow Trainer v2 and JobSet from DIR (hack/build-trainer.sh prints it)",
    )
    ap.add_argument(
        "--kubeflow",
        type=Path,
        metavar="DIR",
        help="also run Kubeflow's training-operator from DIR (hack/build-training-operator.sh "
        "prints it: the binary and its PyTorchJob CRD)",
    )
    ap.add_argument(
        "--kubeflow-threads",
        type=int,
        default=1,
        help="the training-operator's --controller-threads (its default is 1)",
    )
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    bursts: list[Burst] = args.burst or [Burst(1000)]

    config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    subjects = [
        Subject(
            "forja",
            "forja.dev",
            "v1alpha1",
            "trainingjobs",
            "forja.dev/trainingjob",
            forja_job,
            start_forja,
        )
    ]
    if args.trainer:
        subjects.append(
            Subject(
                "trainer-v2",
                "trainer.kubeflow.org",
                "v1alpha1",
                "trainjobs",
                "jobset.sigs.k8s.io/jobset-name",
                train_job,
                trainer_starter(args.trainer),
                lambda: unregister_webhooks(WEBHOOK_PREFIX),
            )
        )
    if args.kubeflow:
        crd = args.kubeflow / "kubeflow.org_pytorchjobs.yaml"
        start = kubeflow_starter(args.kubeflow / "training-operator", crd, args.kubeflow_threads)
        subjects.append(
            Subject(
                "training-op-v1",
                "kubeflow.org",
                "v1",
                "pytorchjobs",
                "training.kubeflow.org/job-name",
                pytorch_job,
                start,
            )
        )
    t0 = time.perf_counter()
    results = run_all(subjects, args.jobs, bursts, args.keep)
    print_table(results, args.jobs, bursts)
    print(f"\n(the whole run took {time.perf_counter() - t0:.0f} s)")
    complete = all(
        (r.latency is not None or not args.jobs) and all(r.bursts.get(b) for b in bursts)
        for r in results.values()
    )
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
