"""The chart on the real API server: its output is accepted, and an install runs the operator.

On the real-node cluster (tests/fixtures/real_cluster.py) the operator pods run from
forja/operator and the attempt from forja/trainer, each a runc container under a real
kubelet; the Deployment turns Ready when kopf's /healthz answers.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fixtures.cluster import wait_for
from fixtures.real_cluster import on_real_nodes
from unit.api.test_chart import find_helm

pytestmark = pytest.mark.cluster
cluster = on_real_nodes("operator", "trainer")

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm/forja"


def helm(cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "HELM_CACHE_HOME": "/tmp/forja-helm/cache", "HELM_CONFIG_HOME": "/tmp/forja-helm/config",
           "HELM_DATA_HOME": "/tmp/forja-helm/data"}
    return subprocess.run([find_helm(), *args], capture_output=True, text=True, check=check,
                          env=env)


@pytest.mark.parametrize("watched", [False, True], ids=["cluster-wide", "namespaced"])
def test_rendered_chart_is_accepted_by_the_api_server(cluster, kubectl, namespace, tmp_path,
                                                      watched):
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"), check=True)
    # The operator pod must pass Pod Security "restricted": the API server warns
    # about any workload that would violate it.
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/warn=restricted", "--overwrite", check=True)
    args = ["template", "forja", str(CHART), "--namespace", namespace]
    extra = [f"{namespace}-a", f"{namespace}-b"] if watched else []
    if watched:  # RoleBindings go into the watched namespaces
        args += ["--set", "config.watchNamespaces={" + ",".join(extra) + "}",
                 "--set", "rbac.gatewayAPI=false"]
        for ns in extra:
            kubectl("create", "namespace", ns, check=True)
    rendered = tmp_path / "chart.yaml"
    rendered.write_text(helm(cluster, *args).stdout)
    try:
        out = kubectl("apply", "--server-side", "--dry-run=server", "-f", str(rendered),
                      check=False)
    finally:
        for ns in extra:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert out.returncode == 0, out.stderr
    assert "deployment.apps/forja serverside-applied (server dry run)" in out.stdout
    assert "PodSecurity" not in out.stderr, out.stderr


def test_helm_install_brings_the_operator_to_ready(cluster, kubectl, namespace):
    release = f"forja-{namespace}"[:50]
    args = ["install", release, str(CHART), "--namespace", namespace,
            "--set", f"config.watchNamespaces={{{namespace}}}", "--wait", "--timeout", "180s"]
    if _crds_present(kubectl):  # another test (or a previous run) installed them
        args.append("--skip-crds")
    try:
        out = helm(cluster, *args, check=False)
        if out.returncode != 0:
            pods = kubectl("get", "pods", "-n", namespace, "-o", "json", check=False).stdout
            pytest.fail(f"helm install failed: {out.stderr}\npods: {pods[-3000:]}")
        dep = json.loads(kubectl("get", "deployment", "-n", namespace, "-l",
                                 "app.kubernetes.io/component=operator", "-o", "json",
                                 check=True).stdout)["items"][0]
        # Both replicas are ready (the standby answers /healthz while it waits) and
        # one of them holds the leader Lease.
        assert dep["status"].get("readyReplicas") == 2
        lease = json.loads(kubectl("get", "lease", "forja-operator", "-n", namespace, "-o",
                                   "json", check=True).stdout)
        assert lease["spec"]["holderIdentity"].startswith(release)
        assert "NOTES:" in out.stdout
        # The operator works under the chart's RBAC: a TrainingJob gets its attempt pod
        # and the attempt's own ServiceAccount/Role/RoleBinding (a Role can only grant what
        # its creator holds), with no 403 on the way.
        kubectl("apply", "--server-side", "-n", namespace, "-f",
                str(ROOT / "manifests/handwriting-classifier-trainingjob.yaml"), check=True)

        def attempt_pods() -> str:
            return kubectl("get", "pods", "-n", namespace, "-l",
                           "forja.dev/trainingjob=handwriting-classifier", "-o", "name",
                           check=False).stdout.strip()

        wait_for(attempt_pods, timeout=120, message="the attempt pod of handwriting-classifier")
        for kind in ("serviceaccount", "role", "rolebinding"):
            kubectl("get", kind, "handwriting-classifier-a1-trainer", "-n", namespace,
                    check=True)
        logs = kubectl("logs", "-n", namespace, f"deployment/{release}", check=False).stdout
        assert "forbidden" not in logs.lower(), logs[-3000:]
    finally:
        helm(cluster, "uninstall", release, "--namespace", namespace, "--wait", check=False)


def _crds_present(kubectl) -> bool:
    out = kubectl("get", "crd", "trainingjobs.forja.dev", check=False)
    return out.returncode == 0
