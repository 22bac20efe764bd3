"""End-to-end fixtures: forja installed with its Helm chart, once per session.

Installed the way hack/demo.sh does it: the CRDs server-side, then
``helm upgrade --install --skip-crds`` with the artifact store's endpoint and bucket
from the cluster's env; each test gets a fresh namespace holding the
``forja-artifact-store`` Secret (the only way credentials reach pods).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from fixtures.cluster import Cluster, wait_for

__all__ = ["Forja", "forja", "forja_ns", "install_forja"]

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
RELEASE = "forja"
SYSTEM_NS = "forja-system"


@dataclass(frozen=True)
class Forja:
    """The installed release plus small helpers over kubectl."""

    cluster: Cluster

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, check=check, input=input, timeout=timeout)

    def get(self, kind: str, name: str, ns: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def items(self, kind: str, ns: str, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-n", ns, "-o", "json"] + (["-l", selector] if selector else [])
        return list(json.loads(self.kubectl(*args).stdout)["items"])

    def apply_manifest(self, filename: str, ns: str, **overrides: Any) -> dict[str, Any]:
        """Apply one file from manifests/ (optionally with spec keys replaced)."""
        doc = yaml.safe_load((MANIFESTS / filename).read_text())
        doc.setdefault("spec", {}).update(overrides)
        self.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc))
        return dict(doc)

    def apply(self, doc: dict[str, Any], ns: str) -> None:
        self.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(doc))

    def wait_job(self, name: str, ns: str, timeout: float = 600) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            job = self.get("trainingjob", name, ns)
            phase = job.get("status", {}).get("phase")
            if phase == "Failed":
                pytest.fail(f"TrainingJob {name} Failed: {json.dumps(job['status'])[:3000]}"
                            f"\n{self.pod_logs(ns)}")
            return job if phase == "Succeeded" else None
        return wait_for(done, timeout=timeout, interval=2, message=f"TrainingJob {name}")

    def wait_version_ready(self, name: str, ns: str, timeout: float = 300) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            mv = self.get("modelversion", name, ns)
            return mv if condition(mv, "Ready") == "True" else None
        return wait_for(ready, timeout=timeout, interval=1, message=f"ModelVersion {name} Ready")

    def wait_isvc(self, name: str, ns: str, version: str, timeout: float = 400) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            isvc = self.get("inferenceservice", name, ns)
            st = isvc.get("status", {})
            ok = st.get("activeVersion") == version and condition(isvc, "Ready") == "True"
            return isvc if ok else None
        return wait_for(ready, timeout=timeout, interval=2,
                        message=f"InferenceService {name} Ready on {version}")

    def wait_isvc_ready(self, name: str, ns: str, timeout: float = 400) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            isvc = self.get("inferenceservice", name, ns)
            return isvc if condition(isvc, "Ready") == "True" else None
        return wait_for(ready, timeout=timeout, interval=2, message=f"InferenceService {name}")

    def service_url(self, name: str, ns: str) -> str:
        """The Service's address, once it answers: Ready can precede the Service's
        endpoints reaching the node's proxy (docs/rollouts.md), so wait for that."""
        svc = self.get("service", name, ns)
        url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

        def answers() -> bool:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=5) as resp:
                return bool(resp.status == 200)
        wait_for(answers, timeout=60, interval=0.5, message=f"{url} to answer")
        return url

    def pod_logs(self, ns: str, tail: int = 40) -> str:
        out = []
        for pod in self.items("pods", ns):
            name = pod["metadata"]["name"]
            log = self.kubectl("logs", "-n", ns, name, "--all-containers", f"--tail={tail}",
                               check=False)
            out.append(f"--- {name}\n{log.stdout}{log.stderr}")
        return "\n".join(out)


def condition(obj: dict[str, Any], ctype: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == ctype:
            return str(cond.get("status"))
    return None


def install_forja(cluster: Cluster, *sets: str) -> Iterator[Forja]:
    """Install (or upgrade) the release, yield it, uninstall it: the body of the
    ``forja`` fixtures here and in real/. ``sets`` are more ``--set`` arguments."""
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "PATH": f"{cluster.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    start = time.monotonic()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                    str(ROOT / "helm" / "forja" / "crds"))
    argv = [str(cluster.bin_dir / "helm"), "upgrade", "--install", RELEASE,
            str(ROOT / "helm" / "forja"), "--namespace", SYSTEM_NS, "--create-namespace",
            "--skip-crds",
            "--set", f"config.artifactStore.endpoint={cluster.s3_endpoint}",
            "--set", f"config.artifactStore.uri=s3://{cluster.bucket}",
            *(arg for value in sets for arg in ("--set-string", value)),
            "--wait", "--timeout", "5m"]
    for _ in range(30):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=400,
                              check=False)
        # Another test session upgrading the same release at once: wait for it.
        if done.returncode == 0 or "another operation" not in done.stderr:
            break
        time.sleep(2)
    assert done.returncode == 0, f"helm upgrade --install failed:\n{done.stderr}"
    print(f"\nhelm install forja: {time.monotonic() - start:.1f} s")
    yield Forja(cluster)
    # Uninstalled after the e2e package: a cluster-wide operator left behind would
    # act on the namespaces of any test that runs its own operator afterwards.
    subprocess.run([str(cluster.bin_dir / "helm"), "uninstall", RELEASE, "--namespace",
                    SYSTEM_NS, "--wait", "--timeout", "2m"], env=env, capture_output=True,
                   timeout=180, check=False)


@pytest.fixture(scope="package")
def forja(cluster: Cluster) -> Iterator[Forja]:
    yield from install_forja(cluster)


@pytest.fixture
def forja_ns(forja: Forja, namespace: str) -> str:
    """A fresh namespace with the artifact store's Secret, restricted pod security."""
    forja.kubectl("label", "namespace", namespace,
                  "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    forja.kubectl("create", "secret", "generic", "forja-artifact-store", "-n", namespace,
                  f"--from-literal=accessKey={forja.cluster.s3_access_key}",
                  f"--from-literal=secretKey={forja.cluster.s3_secret_key}")
    return namespace
