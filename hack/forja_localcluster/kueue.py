"""Kueue against the local cluster: its controller manager as a local process.

The binary is built from its pinned Go module by ``hack/build-kueue.sh``, which also
copies Kueue's CRDs and webhook configurations from the same module source. Kueue
runs detached in the cluster's network namespace (like Argo CD, ``argocd.py``), on
ports shifted by the cluster instance, with the admin kubeconfig and state under
``<cluster>/kueue``.

The API server must reach Kueue's admission webhooks, and there is no Service in
front of a host process: the module's webhook configurations are applied with each
``service`` reference replaced by ``url: https://127.0.0.1:<port><path>`` and the
cluster CA as ``caBundle``; the serving certificate is signed by that CA (pki.py).
Only the webhooks for pods and for Kueue's own kinds are kept: the others (Jobs,
Deployments, JobSets, ...) would refuse their objects, since only the ``pod``
integration is enabled here.

Kueue manages pods only in namespaces that opt in with the label
``forja.dev/kueue=enabled`` (Kueue's ``managedJobsNamespaceSelector`` and the pod
webhooks' namespaceSelector), so other tests on the same cluster never meet it.

    python -m forja_localcluster.kueue start | stop | status
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from forja_localcluster import pki, processes
from forja_localcluster.config import CHECKOUT, INSTANCE, ClusterConfig, ClusterInfo

__all__ = [
    "NAMESPACE",
    "OPT_IN_LABEL",
    "Kueue",
    "KueueError",
    "build",
    "kueue_configuration",
    "webhook_configurations",
]

NAMESPACE = "kueue-system"
OPT_IN_LABEL = ("forja.dev/kueue", "enabled")
_OFFSET = 100 * INSTANCE
WEBHOOK_PORT = 19443 + _OFFSET
HEALTH_PORT = 18091 + _OFFSET
METRICS_PORT = 18093 + _OFFSET
# Kueue reads its metrics certificate from this fixed path when it does not manage its
# own certificates; the process gets the instance's directory bound there, in a mount
# namespace of its own.
METRICS_CERT_PATH = Path("/etc/kueue/metrics/certs")
KEPT_GROUPS = {"", "kueue.x-k8s.io"}
POD_WEBHOOKS = {"mpod.kb.io", "vpod.kb.io"}
CRDS = ("workloads", "clusterqueues", "localqueues", "resourceflavors",
        "workloadpriorityclasses", "admissionchecks", "cohorts", "topologies")


class KueueError(RuntimeError):
    """Kueue could not be built, configured or started."""


def build() -> Path:
    """Run hack/build-kueue.sh (a no-op once cached); return the bin directory."""
    script = CHECKOUT / "hack" / "build-kueue.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KueueError(f"{script} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def kueue_configuration(cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration: the pod integration only, in opted-in namespaces."""
    opt_in = {"matchLabels": {OPT_IN_LABEL[0]: OPT_IN_LABEL[1]}}
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{HEALTH_PORT}"},
        "metrics": {"bindAddress": f"127.0.0.1:{METRICS_PORT}"},
        "webhook": {"port": WEBHOOK_PORT, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": opt_in,
        "integrations": {"frameworks": ["pod"]},
        "clientConnection": {"qps": 50, "burst": 100},
    }


def webhook_configurations(manifests: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, for the webhooks this setup serves, by URL.

    Each ``service`` reference becomes ``https://127.0.0.1:<port><path>`` with the
    cluster CA; the pod webhooks only see opted-in namespaces.
    """
    ca = base64.b64encode(ca_pem).decode()
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not doc:
            continue
        kept = []
        for hook in doc.get("webhooks") or []:
            groups = {g for rule in hook.get("rules") or [] for g in rule.get("apiGroups") or []}
            if not groups or not groups <= KEPT_GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{WEBHOOK_PORT}{path}",
                                    "caBundle": ca}
            if hook["name"] in POD_WEBHOOKS:
                hook["namespaceSelector"] = {
                    "matchLabels": {OPT_IN_LABEL[0]: OPT_IN_LABEL[1]}}
            kept.append(hook)
        name = doc["metadata"]["name"]
        doc["metadata"] = {"name": f"kueue-{name}"}
        doc["webhooks"] = kept
        out.append(doc)
    if not any(h["name"] == "mpod.kb.io" for d in out for h in d["webhooks"]):
        raise KueueError("Kueue's webhook manifests have no pod webhook (mpod.kb.io)")
    return out


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Kueue:
    """Kueue's controller manager for one local cluster instance."""

    info: ClusterInfo
    bin_dir: Path | None = None
    """Where hack/build-kueue.sh put the binary; only start needs it."""

    @property
    def state_dir(self) -> Path:
        return Path(self.info.state_dir) / "kueue"

    @property
    def source_dir(self) -> Path:
        return self._bin_dir.parent

    @property
    def _bin_dir(self) -> Path:
        if self.bin_dir is None:
            raise KueueError("no Kueue binary given (forja_localcluster.kueue.build())")
        return self.bin_dir

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "kueue.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "kueue.log"

    def kubectl(self, *args: str, input: str | None = None) -> str:
        env = {**os.environ, "KUBECONFIG": self.info.kubeconfig}
        result = subprocess.run(
            [str(Path(self.info.bin_dir) / "kubectl"), *args], capture_output=True, text=True,
            env=env, input=input, check=False, timeout=120,
        )
        if result.returncode != 0:
            raise KueueError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def _pid(self) -> int | None:
        return processes.alive_pid(self.pid_file)

    def _certificates(self) -> Path:
        """The webhook serving certificate (127.0.0.1, signed by the cluster CA), under
        the names controller-runtime and Kueue's metrics server read."""
        config = ClusterConfig()
        crt, key = pki.ensure_serving_cert(config, "kueue-webhook", "kueue-webhook",
                                           ["127.0.0.1"])
        certs = self.state_dir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        for src, name in ((crt, "tls.crt"), (key, "tls.key")):
            dst = certs / name
            dst.write_bytes(src.read_bytes())
            dst.chmod(0o600)
        return certs

    def configure(self, certs: Path) -> None:
        """CRDs (from the module source), the namespace and the webhook configurations."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                     str(self.source_dir / "crds"))
        for crd in CRDS:
            self._wait_established(f"{crd}.kueue.x-k8s.io")
        ca = (Path(self.info.state_dir) / "pki" / "ca.crt").read_bytes()
        manifests = (self.source_dir / "webhook" / "manifests.yaml").read_text()
        docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
                *webhook_configurations(manifests, ca)]
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                     input="\n".join(json.dumps(d) for d in docs))
        (self.state_dir / "config.yaml").write_text(yaml.safe_dump(kueue_configuration(certs)))

    def _wait_established(self, crd: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                conditions = json.loads(self.kubectl("get", "crd", crd, "-o", "json")).get(
                    "status", {}).get("conditions") or []
            except (KueueError, ValueError):
                conditions = []
            if any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions):
                return
            if time.monotonic() > deadline:
                raise KueueError(f"CRD {crd} not Established after {timeout:.0f} s")
            time.sleep(0.5)

    def start(self, timeout: float = 120) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        certs = self._certificates()
        self.configure(certs)
        if self._pid() is None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            # The mount point must exist on the machine; what is bound over it exists
            # only in the process's own mount namespace, so instances never share it.
            METRICS_CERT_PATH.mkdir(parents=True, exist_ok=True)
            argv = [
                "unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"',
                str(certs), str(METRICS_CERT_PATH),
                str(self._bin_dir / "kueue"), f"--config={self.state_dir / 'config.yaml'}",
                "--feature-gates=VisibilityOnDemand=false", "--zap-log-level=info",
            ]
            env = {**os.environ, "KUBECONFIG": self.info.kubeconfig}
            with self.log_file.open("ab") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env,
                                        cwd=self.state_dir, start_new_session=True,
                                        stdin=subprocess.DEVNULL)
            self.pid_file.write_text(str(proc.pid))
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Its webhook listening and its readiness probe passing (caches synced)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._pid() is None:
                raise KueueError(f"kueue exited; log:\n{self.log_tail()}")
            if _port_open(WEBHOOK_PORT) and self._ready():
                return
            if time.monotonic() > deadline:
                raise KueueError(f"kueue not ready after {timeout:.0f} s; log:\n"
                                 f"{self.log_tail()}")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/readyz",
                                        timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 3000) -> str:
        log = self.log_file
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def running(self) -> bool:
        return self._pid() is not None

    def stop(self) -> None:
        if not self.pid_file.exists():
            return  # never started here (or stopped): no process, no webhooks of ours
        processes.stop_pid_file(self.pid_file)
        # Webhooks pointing at a stopped process would refuse every pod (and Kueue
        # object) they match: they go with it.
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            name = f"kueue-{kind.replace('webhookconfiguration', '')}-webhook-configuration"
            subprocess.run(
                [str(Path(self.info.bin_dir) / "kubectl"), "delete", kind, name,
                 "--ignore-not-found"],
                env={**os.environ, "KUBECONFIG": self.info.kubeconfig},
                capture_output=True, check=False, timeout=60,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forja_localcluster.kueue")
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    # Only start needs the binary: stop and status must not build it (CI's teardown
    # runs them inside the network namespace, where no module can be downloaded).
    info = ClusterInfo.load(ClusterConfig().info_file)
    kueue = Kueue(info=info, bin_dir=build() if args.command == "start" else None)
    try:
        if args.command == "start":
            kueue.start()
        elif args.command == "stop":
            kueue.stop()
    except KueueError as exc:
        print(f"[kueue] error: {exc}", file=sys.stderr)
        return 1
    up = kueue.running()
    print(f"kueue: {'running' if up else 'stopped'}")
    return 0 if args.command == "stop" or up else 1


if __name__ == "__main__":
    sys.exit(main())
