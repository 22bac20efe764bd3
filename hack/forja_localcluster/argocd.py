"""Argo CD against the local cluster: Redis, the repo server and the application controller.

Only the parts of Argo CD that sync and judge health run here (no API server, UI,
Dex or ApplicationSet controller): Applications are created with kubectl. The
binary is built from its pinned Go module by ``hack/build-argocd.sh``; it becomes
each component by its argv[0] (symlinks beside it). Everything runs as detached
local processes in the cluster's network namespace, on ports shifted by the
cluster instance like the cluster's own, with state under ``<cluster>/argocd``.

forja's Lua health checks are put into ``argocd-cm`` exactly as the chart ships
them (``helm/forja/argocd/health/<group>_<kind>.lua`` becomes the key
``resource.customizations.health.<group>_<kind>``).

    python -m forja_localcluster.argocd start | stop | status
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from forja_localcluster import processes
from forja_localcluster.config import CHECKOUT, INSTANCE, ClusterConfig, ClusterInfo

__all__ = [
    "NAMESPACE",
    "TRACKING_ANNOTATION",
    "ArgoCD",
    "ArgoCDError",
    "build",
    "health_customizations",
]

NAMESPACE = "argocd"
# How Argo CD 3 marks each object an Application synced (its default tracking method):
# an Application deleted without Argo CD's resources finalizer leaves them, so this is
# how to find them.
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
_OFFSET = 100 * INSTANCE
REDIS_PORT = 16379 + _OFFSET
REPO_SERVER_PORT = 18081 + _OFFSET
REPO_SERVER_METRICS_PORT = 18084 + _OFFSET
CONTROLLER_METRICS_PORT = 18082 + _OFFSET
HEALTH_DIR = CHECKOUT / "helm" / "forja" / "argocd" / "health"
COMPONENTS = ("redis", "argocd-repo-server", "argocd-application-controller")


class ArgoCDError(RuntimeError):
    """Argo CD could not be built, configured or started."""


def build() -> Path:
    """Run hack/build-argocd.sh (a no-op once cached); return the bin directory."""
    script = CHECKOUT / "hack" / "build-argocd.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ArgoCDError(f"{script} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def health_customizations(health_dir: Path = HEALTH_DIR) -> dict[str, str]:
    """argocd-cm keys for forja's health checks, the Lua text unchanged."""
    checks = {
        f"resource.customizations.health.{lua.stem}": lua.read_text()
        for lua in sorted(health_dir.glob("*.lua"))
    }
    if not checks:
        raise ArgoCDError(f"no health checks in {health_dir}")
    return checks


def _config_objects() -> list[dict[str, object]]:
    labels = {"app.kubernetes.io/part-of": "argocd"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "argocd-cm", "namespace": NAMESPACE, "labels": labels},
            "data": {
                **health_customizations(),
                # Re-read Git often: a test commits and expects the sync soon.
                "timeout.reconciliation": "10s",
                # Argo CD 3 skips refreshes caused by status-only updates unless the
                # health *status* changes; here every status update refreshes, so the
                # health message follows the epochs the trainer reports.
                "resource.ignoreResourceUpdatesEnabled": "false",
            },
        },
        {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "default", "namespace": NAMESPACE},
            "spec": {
                "sourceRepos": ["*"],
                "destinations": [{"server": "*", "namespace": "*"}],
                "clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            },
        },
    ]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class ArgoCD:
    """The Argo CD components of one local cluster instance."""

    info: ClusterInfo
    bin_dir: Path | None = None
    """Where hack/build-argocd.sh put the binaries; only start needs them."""

    @property
    def state_dir(self) -> Path:
        return Path(self.info.state_dir) / "argocd"

    @property
    def crd_dir(self) -> Path:
        return self._bin_dir.parent / "crds"

    @property
    def _bin_dir(self) -> Path:
        if self.bin_dir is None:
            raise ArgoCDError("no Argo CD binaries given (forja_localcluster.argocd.build())")
        return self.bin_dir

    def kubectl(self, *args: str, input: str | None = None) -> str:
        env = {**os.environ, "KUBECONFIG": self.info.kubeconfig}
        result = subprocess.run(
            [str(Path(self.info.bin_dir) / "kubectl"), *args], capture_output=True, text=True,
            env=env, input=input, check=False, timeout=120,
        )
        if result.returncode != 0:
            raise ArgoCDError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def _pid(self, name: str) -> int | None:
        return processes.alive_pid(self.state_dir / f"{name}.pid")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        if self._pid(name) is not None:
            return
        log = self.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=out, env=env, cwd=self.state_dir,
                start_new_session=True, stdin=subprocess.DEVNULL,
            )
        (self.state_dir / f"{name}.pid").write_text(str(proc.pid))

    @property
    def server(self) -> str:
        """The destination server Applications name: the local API server itself."""
        return self.info.api_server

    def _cluster_secret(self) -> dict[str, object]:
        # Argo CD's in-cluster destination (https://kubernetes.default.svc) needs a pod's
        # service-account mount; outside a pod the cluster is declared as a cluster
        # Secret with the admin kubeconfig's credentials instead.
        view = json.loads(self.kubectl("config", "view", "--raw", "--flatten", "-o", "json"))
        cluster = view["clusters"][0]["cluster"]
        user = view["users"][0]["user"]
        config = {"tlsClientConfig": {
            "caData": cluster["certificate-authority-data"],
            "certData": user["client-certificate-data"],
            "keyData": user["client-key-data"],
        }}
        return {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "forja-local-cluster", "namespace": NAMESPACE,
                         "labels": {"argocd.argoproj.io/secret-type": "cluster"}},
            "stringData": {"name": "forja-local", "server": self.server,
                           "config": json.dumps(config)},
        }

    def configure(self) -> None:
        """Argo CD's CRDs (from the module source), namespace, argocd-cm and project."""
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(self.crd_dir))
        for crd in ("applications.argoproj.io", "appprojects.argoproj.io"):
            self._wait_established(crd)
        docs = "\n".join(json.dumps(obj) for obj in [*_config_objects(), self._cluster_secret()])
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=docs)
        # The settings manager wants argocd-secret with a server key; made once.
        exists = subprocess.run(
            [str(Path(self.info.bin_dir) / "kubectl"), "get", "secret", "argocd-secret",
             "-n", NAMESPACE], capture_output=True, check=False,
            env={**os.environ, "KUBECONFIG": self.info.kubeconfig},
        ).returncode == 0
        if not exists:
            self.kubectl("create", "secret", "generic", "argocd-secret", "-n", NAMESPACE,
                         f"--from-literal=server.secretkey={secrets.token_urlsafe(32)}")
            self.kubectl("label", "secret", "argocd-secret", "-n", NAMESPACE,
                         "app.kubernetes.io/part-of=argocd")

    def _wait_established(self, crd: str, timeout: float = 60) -> None:
        # Not `kubectl wait`, nor a jsonpath filter: both error while a brand-new
        # CRD has no conditions yet. Read the object and look.
        deadline = time.monotonic() + timeout
        while True:
            try:
                conditions = json.loads(self.kubectl("get", "crd", crd, "-o", "json")).get(
                    "status", {}).get("conditions") or []
            except (ArgoCDError, ValueError):
                conditions = []
            if any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in conditions):
                return
            if time.monotonic() > deadline:
                raise ArgoCDError(f"CRD {crd} not Established after {timeout:.0f} s")
            time.sleep(0.5)

    def start(self, timeout: float = 120) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.configure()
        tools = Path(self.info.bin_dir)
        env = {
            **os.environ,
            "KUBECONFIG": self.info.kubeconfig,
            # helm and git for the repo server, argocd-git-ask-pass for git.
            "PATH": os.pathsep.join([str(self._bin_dir), str(tools), os.environ["PATH"]]),
            "ARGOCD_GPG_ENABLED": "false",
            "ARGOCD_TLS_DATA_PATH": str(self.state_dir / "tls"),
            "ARGOCD_SSH_DATA_PATH": str(self.state_dir / "ssh"),
            "ARGOCD_GNUPGHOME": str(self.state_dir / "gnupg"),
            "HOME": str(self.state_dir / "home"),
            "TMPDIR": str(self.state_dir / "tmp"),
        }
        for sub in ("tls", "ssh", "gnupg", "home", "tmp"):
            (self.state_dir / sub).mkdir(exist_ok=True)
        (self.state_dir / "ssh" / "ssh_known_hosts").touch()
        redis = f"127.0.0.1:{REDIS_PORT}"
        self._spawn("redis", [
            "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.state_dir),
        ], env)
        self._wait_port("redis", REDIS_PORT, timeout)
        self._spawn("argocd-repo-server", [
            str(self._bin_dir / "argocd-repo-server"), "--address", "127.0.0.1",
            "--port", str(REPO_SERVER_PORT), "--metrics-address", "127.0.0.1",
            "--metrics-port", str(REPO_SERVER_METRICS_PORT), "--disable-tls",
            "--redis", redis, "--loglevel", "info",
        ], env)
        self._spawn("argocd-application-controller", [
            str(self._bin_dir / "argocd-application-controller"),
            "--kubeconfig", self.info.kubeconfig, "--namespace", NAMESPACE,
            "--repo-server", f"127.0.0.1:{REPO_SERVER_PORT}", "--repo-server-plaintext",
            "--redis", redis, "--metrics-port", str(CONTROLLER_METRICS_PORT),
            # Per-resource health in Application.status.resources (off by default in v3).
            "--persist-resource-health",
            "--app-resync", "30", "--self-heal-timeout-seconds", "2",
            "--status-processors", "4", "--operation-processors", "2", "--loglevel", "info",
        ], env)
        self._wait_port("argocd-repo-server", REPO_SERVER_PORT, timeout)
        self._wait_port("argocd-application-controller", CONTROLLER_METRICS_PORT, timeout)

    def _wait_port(self, name: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _port_open(port):
            if self._pid(name) is None:
                raise ArgoCDError(f"{name} exited; log:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise ArgoCDError(f"{name} not listening on {port}; log:\n{self.log_tail(name)}")
            time.sleep(0.5)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        log = self.state_dir / "logs" / f"{name}.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""

    def status(self) -> dict[str, bool]:
        return {name: self._pid(name) is not None for name in COMPONENTS}

    def running(self) -> bool:
        return any(self.status().values())

    def stop(self) -> None:
        for name in reversed(COMPONENTS):
            processes.stop_pid_file(self.state_dir / f"{name}.pid")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m forja_localcluster.argocd")
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    # Only start needs the binaries: stop and status must not build them (CI's teardown
    # runs them inside the network namespace, where no module can be downloaded).
    argo = ArgoCD(info=ClusterInfo.load(ClusterConfig().info_file),
                  bin_dir=build() if args.command == "start" else None)
    if args.command == "start":
        argo.start()
    elif args.command == "stop":
        argo.stop()
    up = argo.status()
    for name, running in up.items():
        print(f"{name}: {'running' if running else 'stopped'}")
    return 0 if args.command == "stop" or all(up.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
