"""Operator benchmark: apply -> first pod latency, burst throughput, peak RSS.

Runs the real operator (``python -m forja_operator``) as a subprocess against the
cluster in $KUBECONFIG and prints figures:

* apply -> attempt pod created, p50 / p99 over N jobs applied one after another
  (time from the create request to the pod's ADDED event on a watch);
* M jobs created at once (8 client threads) -> seconds until every attempt pod
  exists, and the rate;
* the operator's CPU during that burst and its peak RSS (VmHWM) over the run.

With ``--kubeflow DIR`` it then does the same, in the same run on the same cluster,
for Kubeflow's training-operator (built from its pinned Go module by
hack/build-training-operator.sh) with PyTorchJobs of one Master replica running the
same command, and prints both side by side. On the local cluster:

    bash hack/netns.sh env PYTHONPATH=operator python bench/operator/bench_operator.py \
        --jobs 200 --burst 1000 --kubeflow "$(bash hack/build-training-operator.sh)"

Applies crds/ (kubectl on PATH). Pods get a node selector no node has, so they are
created and stay Pending: the figures are the operators', not a node's. No other
forja operator may watch the bench namespaces (uninstall the chart first).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
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
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config, watch

ROOT = Path(__file__).resolve().parents[2]


# Pods stay Pending on a cluster with nodes: a node agent running thousands of
# no-op trainers would measure the node, not the operator.
NO_NODE = {"forja.dev/bench": "no-such-node"}


def forja_job(name: str) -> dict:
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "model": "bench",
            "trainer": "custom",
            "command": ["python", "-c", "pass"],
            "dataset": {"uri": "generated://bench", "format": "generated"},
            "scheduling": {"nodeSelector": NO_NODE},
        },
    }


def pytorch_job(name: str) -> dict:
    """The same work for Kubeflow: one Master replica running the same command."""
    container = {
        "name": "pytorch",
        "image": "forja-trainer:bench",
        "command": ["python", "-c", "pass"],
    }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "restartPolicy": "Never",
                    "template": {"spec": {"containers": [container], "nodeSelector": NO_NODE}},
                }
            }
        },
    }


@dataclass(frozen=True)
class Subject:
    """One operator under test: how to start it and what it reconciles."""

    name: str
    group: str
    version: str
    plural: str
    pod_label: str  # the label its attempt pods carry, valued with the job's name
    body: Callable[[str], dict]
    start: Callable[[list[str], Path], subprocess.Popen]


def start_forja(namespaces: list[str], logdir: Path) -> subprocess.Popen:
    cfg = logdir / "config.yaml"
    cfg.write_text(f"watchNamespaces: [{', '.join(namespaces)}]\nmetricsPort: 0\nhealthPort: 0\n")
    env = {
        **os.environ,
        "FORJA_CONFIG": str(cfg),
        "PYTHONPATH": f"{ROOT / 'operator'}:{os.environ.get('PYTHONPATH', '')}",
        "PYTHONWARNINGS": "ignore",
    }
    log = open(logdir / "forja-operator.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "forja_operator"], env=env, stdout=log, stderr=log
    )


def kubeflow_starter(
    binary: Path, crd: Path, threads: int
) -> Callable[[list[str], Path], subprocess.Popen]:
    def start(namespaces: list[str], logdir: Path) -> subprocess.Popen:
        core, admission = client.CoreV1Api(), client.AdmissionregistrationV1Api()
        home = namespaces[0]
        kubectl("apply", "--server-side", "-f", str(crd))
        # Its cert rotator needs a Secret to fill and a ValidatingWebhookConfiguration to
        # inject the CA into. The webhook is registered but never called (no object matches
        # its selector): the API server here cannot reach a webhook outside the cluster.
        # That spares Kubeflow a round trip per create; forja's admission (CEL) stays on.
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
        return subprocess.Popen(
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

    return start


# Fixed in its source (pkg/cert); in a pod it is a Secret volume.
KUBEFLOW_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # noqa: S108


def mount_cert_secret(core: client.CoreV1Api, namespace: str) -> None:
    """Do the kubelet's part: put the rotator's Secret where the operator waits for it.

    The training-operator starts its controllers only once its webhook certificate is
    on disk, which in a pod is a Secret volume.
    """
    for _ in range(120):
        data = core.read_namespaced_secret("training-operator-webhook-cert", namespace).data or {}
        if "tls.crt" in data and "tls.key" in data:
            KUBEFLOW_CERT_DIR.mkdir(parents=True, exist_ok=True)
            for key in ("tls.crt", "tls.key", "ca.crt"):
                if key in data:
                    (KUBEFLOW_CERT_DIR / key).write_bytes(base64.b64decode(data[key]))
            return
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubectl(*args: str) -> None:
    subprocess.run(["kubectl", *args], check=True, stdout=subprocess.DEVNULL)


class PodWatcher:
    """Records when each attempt pod is first seen in a namespace."""

    def __init__(self, core: client.CoreV1Api, namespace: str, label: str) -> None:
        self.label = label
        self.seen: dict[str, float] = {}
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
            name = ev["object"].metadata.labels[self.label]
            with self.cond:
                self.seen.setdefault(name, time.perf_counter())
                self.cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        end = time.perf_counter() + timeout
        with self.cond:
            while len(self.seen) < count:
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


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


@dataclass
class Figures:
    p50: float
    p99: float
    burst_seconds: float
    burst_pods: int
    cpu_seconds: float
    rss_mb: float


def run_subject(subject: Subject, jobs: int, burst: int, keep: bool) -> Figures | None:
    core, custom = client.CoreV1Api(), client.CustomObjectsApi()
    run = uuid.uuid4().hex[:6]
    ns_seq, ns_burst = f"bench-{subject.name}-seq-{run}", f"bench-{subject.name}-burst-{run}"
    for ns in (ns_seq, ns_burst):
        core.create_namespace({"metadata": {"name": ns}})
        # A bare API server has no controller-manager to create it; pods name none.
        with contextlib.suppress(client.ApiException):
            core.create_namespaced_service_account(ns, {"metadata": {"name": "default"}})

    def create(ns: str, name: str) -> None:
        custom.create_namespaced_custom_object(
            subject.group, subject.version, ns, subject.plural, subject.body(name)
        )

    logdir = Path(tempfile.mkdtemp(prefix=f"bench-{subject.name}-"))
    op = subject.start([ns_seq, ns_burst], logdir)
    try:
        time.sleep(5)  # startup: CRD discovery, initial LIST, (Kubeflow) cert rotation
        if op.poll() is not None:
            print(f"{subject.name}: operator exited early, see {logdir}")
            return None

        # 1. apply -> first pod, one job at a time
        w = PodWatcher(core, ns_seq, subject.pod_label)
        lat: list[float] = []
        for i in range(jobs):
            name = f"seq-{i}"
            t0 = time.perf_counter()
            create(ns_seq, name)
            if not w.wait_for(i + 1, 60):
                print(f"{subject.name}: timeout waiting for the pod of {name}, see {logdir}")
                return None
            lat.append((w.seen[name] - t0) * 1000)
        w.stop()

        # 2. a burst of jobs at once
        w = PodWatcher(core, ns_burst, subject.pod_label)
        cpu0 = cpu_seconds(op.pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: create(ns_burst, f"burst-{i}"), range(burst)))
        applied = time.perf_counter() - t0
        ok = w.wait_for(burst, 900)
        total = max(w.seen.values()) - t0 if w.seen else float("nan")
        w.stop()
        figures = Figures(
            p50=pct(lat, 50),
            p99=pct(lat, 99),
            burst_seconds=total,
            burst_pods=len(w.seen),
            cpu_seconds=cpu_seconds(op.pid) - cpu0,
            rss_mb=peak_rss_mb(op.pid),
        )
        print(
            f"{subject.name}: apply -> first pod over {jobs} jobs: p50 {figures.p50:.1f} ms, "
            f"p99 {figures.p99:.1f} ms, mean {statistics.mean(lat):.1f} ms, "
            f"max {max(lat):.1f} ms"
        )
        print(
            f"{subject.name}: {burst} jobs applied in {applied:.1f} s; {len(w.seen)} pods exist "
            f"{total:.1f} s after the first apply ({len(w.seen) / total:.0f} pods/s)"
            + ("" if ok else " (TIMEOUT)")
        )
        print(
            f"{subject.name}: operator CPU during the burst {figures.cpu_seconds:.1f} s, "
            f"peak RSS {figures.rss_mb:.0f} MB"
        )
        return figures if ok else None
    finally:
        op.terminate()
        op.wait(30)
        if not keep:
            for ns in (ns_seq, ns_burst):
                with contextlib.suppress(client.ApiException):
                    core.delete_namespace(ns)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--keep", action="store_true", help="keep the namespaces")
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
    if args.kubeflow:
        crd = args.kubeflow / "kubeflow.org_pytorchjobs.yaml"
        start = kubeflow_starter(args.kubeflow / "training-operator", crd, args.kubeflow_threads)
        subjects.append(
            Subject(
                "kubeflow",
                "kubeflow.org",
                "v1",
                "pytorchjobs",
                "training.kubeflow.org/job-name",
                pytorch_job,
                start,
            )
        )
    results = {s.name: run_subject(s, args.jobs, args.burst, args.keep) for s in subjects}
    if None in results.values():
        return 1
    if len(results) > 1:
        print("\nside by side          " + "".join(f"{n:>12}" for n in results))
        rows = [
            ("apply->pod p50 (ms)", "p50"),
            ("apply->pod p99 (ms)", "p99"),
            (f"{args.burst} jobs -> pods (s)", "burst_seconds"),
            ("burst CPU (s)", "cpu_seconds"),
            ("peak RSS (MB)", "rss_mb"),
        ]
        for label, attr in rows:
            print(f"{label:<22}" + "".join(f"{getattr(f, attr):>12.1f}" for f in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
