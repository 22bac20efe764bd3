"""The Helm chart renders what the operator needs, no more: helm lint, helm template.

Rendering only (no cluster); tests/integration/api/test_chart_install.py sends the
output to the real API server and installs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm/forja"
CONFIG_KEYS = {"trainerImage", "trainerTfImage", "serverImage", "artifactStore",
               "watchNamespaces", "metricsPort", "healthPort", "nodeLostSeconds",
               "unschedulableSeconds", "leaderElection", "benchmark"}


def find_helm() -> str:
    """helm from hack/build-tools.sh's cache (FORJA_TOOLS_BIN in CI), else PATH."""
    candidates = []
    if os.environ.get("FORJA_TOOLS_BIN"):
        candidates.append(Path(os.environ["FORJA_TOOLS_BIN"]) / "helm")
    candidates += sorted(Path.home().glob(".cache/forja/tools/*/bin/helm"))
    for c in candidates:
        if c.is_file():
            return str(c)
    found = shutil.which("helm")
    assert found, "helm not found: run `bash hack/build-tools.sh` (it unpacks helm)"
    return found


@pytest.fixture(scope="module")
def helm():
    return find_helm()


def run(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, check=check,
                          env={**os.environ, "HELM_CACHE_HOME": "/tmp/forja-helm/cache",
                               "HELM_CONFIG_HOME": "/tmp/forja-helm/config",
                               "HELM_DATA_HOME": "/tmp/forja-helm/data"})


def render(helm: str, *sets: str, namespace: str = "forja-system") -> list[dict[str, Any]]:
    args = ["template", "forja", str(CHART), "--namespace", namespace]
    for s in sets:
        args += ["--set", s]
    out = run(helm, *args)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_lint_is_clean(helm):
    out = run(helm, "lint", "--strict", str(CHART), check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def test_default_render_has_exactly_the_operator_objects(helm):
    docs = render(helm)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
                     "ConfigMap", "Deployment", "PodDisruptionBudget", "Role", "RoleBinding",
                     "Service", "ServiceAccount"]
    for d in docs:
        assert "helm.sh/hook" not in json.dumps(d.get("metadata", {}))


def test_config_file_has_exactly_the_operator_keys(helm):
    cm = by_kind(render(helm, "config.artifactStore.endpoint=http://minio:9000"), "ConfigMap")[0]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert set(config) == CONFIG_KEYS
    assert config["artifactStore"] == {"uri": "s3://forja", "endpoint": "http://minio:9000",
                                       "credentialsSecret": "forja-artifact-store"}
    assert (config["metricsPort"], config["healthPort"]) == (9090, 8080)
    assert config["watchNamespaces"] == []
    # When the operator is in this checkout, its own parser must accept the file.
    if importlib.util.find_spec("forja_operator") is not None:
        from forja_operator.config import OperatorConfig

        parsed = OperatorConfig.model_validate(config)
        assert parsed.metrics_port == 9090 and parsed.health_port == 8080
        assert parsed.node_lost_seconds == config["nodeLostSeconds"] == 60
        assert parsed.unschedulable_seconds == config["unschedulableSeconds"] == 600
        assert parsed.benchmark.enabled and parsed.benchmark.cpu == "1"


def test_benchmarks_turn_off_for_the_whole_operator(helm):
    cm = by_kind(render(helm, "config.benchmark.enabled=false"), "ConfigMap")[0]
    assert yaml.safe_load(cm["data"]["config.yaml"])["benchmark"]["enabled"] is False


def test_empty_endpoint_is_left_out(helm):
    cm = by_kind(render(helm), "ConfigMap")[0]
    assert "endpoint" not in yaml.safe_load(cm["data"]["config.yaml"])["artifactStore"]


def test_deployment_runs_the_operator_safely(helm):
    dep = by_kind(render(helm), "Deployment")[0]
    # Two replicas electing a leader, so an upgrade may roll.
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate"}
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["python", "-m", "forja_operator"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["FORJA_CONFIG"] == "/etc/forja/config.yaml"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/forja"]["readOnly"] is True
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # Pod Security "restricted".
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"]


def rules_of(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for role in by_kind(docs, "ClusterRole"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    out.setdefault((group, res), set()).update(rule["verbs"])
    return out


def test_rbac_is_least_privilege(helm):
    rules = rules_of(render(helm))
    flat = json.dumps(sorted((k, sorted(v)) for k, v in rules.items()))
    assert "*" not in flat
    assert not any(res == "secrets" for _, res in rules)
    for plural in ("trainingjobs", "modelversions", "inferenceservices"):
        assert rules[("forja.dev", f"{plural}/status")] == {"get", "patch"}
        assert {"get", "list", "watch", "patch"} <= rules[("forja.dev", plural)]
    assert "create" not in rules[("forja.dev", "trainingjobs")]
    assert "delete" not in rules[("forja.dev", "modelversions")]
    assert rules[("", "events")] == {"create", "patch"}
    assert {"create", "delete"} <= rules[("", "pods")]
    assert ("", "pods/status") not in rules
    for key in (("apps", "deployments"), ("", "services"), ("policy", "poddisruptionbudgets"),
                ("autoscaling", "horizontalpodautoscalers"),
                ("gateway.networking.k8s.io", "httproutes")):
        assert key in rules
    assert rules[("rbac.authorization.k8s.io", "roles")] == {"get", "create", "patch", "delete"}
    # The trainer Role grants get/patch on its pod: the operator must hold them to grant them.
    assert {"get", "patch"} <= rules[("", "pods")]


def test_gateway_rbac_can_be_turned_off(helm):
    rules = rules_of(render(helm, "rbac.gatewayAPI=false"))
    assert ("gateway.networking.k8s.io", "httproutes") not in rules


def test_watch_namespaces_bind_only_there(helm):
    docs = render(helm, "config.watchNamespaces={team-a,team-b}")
    bindings = [b for b in by_kind(docs, "RoleBinding")
                if not b["metadata"]["name"].endswith("-leader-election")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["roleRef"]["name"] == "forja-operator" for b in bindings)
    cluster = by_kind(docs, "ClusterRoleBinding")
    assert [b["roleRef"]["name"] for b in cluster] == ["forja-operator-cluster"]
    cm = yaml.safe_load(by_kind(docs, "ConfigMap")[0]["data"]["config.yaml"])
    assert cm["watchNamespaces"] == ["team-a", "team-b"]


def test_monitoring_objects_are_optional(helm):
    docs = render(helm, "metrics.serviceMonitor.enabled=true",
                  "metrics.prometheusRule.enabled=true", "metrics.dashboard.enabled=true")
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "ForjaOperatorDown" in alerts and "ForjaTrainingJobsFailed" in alerts
    assert "{{ $labels.kind }}" in json.dumps(rule)  # escaped for Prometheus, not Helm
    dash = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("dashboard")]
    panels = json.loads(dash[0]["data"]["forja.json"])["panels"]
    assert len(panels) >= 6 and dash[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_replicas_elect_a_leader_on_a_lease_and_keep_one_through_drains(helm):
    docs = render(helm, namespace="ops")
    config = yaml.safe_load(by_kind(docs, "ConfigMap")[0]["data"]["config.yaml"])
    assert config["leaderElection"] == {
        "enabled": True, "leaseName": "forja-operator", "namespace": "ops"
    }
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    dep = by_kind(docs, "Deployment")[0]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FORJA_POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # One replica without election: the old shape, no budget.
    single = render(helm, "replicas=1", "config.leaderElection.enabled=false")
    assert not by_kind(single, "PodDisruptionBudget") and not by_kind(single, "Role")
    assert by_kind(single, "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}
    # Two operators without election would reconcile twice: refused.
    out = run(helm, "template", "forja", str(CHART), "--set", "config.leaderElection.enabled=false",
              check=False)
    assert out.returncode != 0 and "needs config.leaderElection.enabled" in out.stderr


@pytest.mark.parametrize("bad", ["replicas=9", "config.artifactStore.uri=http://x",
                                 "config.metricsPort=0", "image.pullPolicy=Sometimes",
                                 "config.watchNamespaces={Bad_NS}", "unknownKey=1"])
def test_values_schema_refuses_bad_values(helm, bad):
    out = run(helm, "template", "forja", str(CHART), "--set", bad, check=False)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr


def test_notes_say_what_to_apply_next(helm):
    out = run(helm, "install", "forja", str(CHART), "--dry-run=client", "-n", "forja-system")
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n <ns> apply -f manifests/smoke-detector-trainingjob.yaml" in notes
    assert "create secret generic forja-artifact-store" in notes
    assert "argocd" in notes.lower()


def test_an_admission_policy_restricts_images_only_when_registries_are_set(helm):
    assert not [d for d in render(helm) if d["kind"].startswith("ValidatingAdmissionPolicy")]
    docs = render(helm, "admissionPolicy.allowedRegistries={registry.example.com/ml/}",
                  "admissionPolicy.allowCustomCommand=false",
                  "config.watchNamespaces={team-a}")
    (policy,) = by_kind(docs, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0][
        "values"] == ["team-a"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["trainingjobs", "inferenceservices"]
    assert json.loads(policy["spec"]["variables"][0]["expression"]) == ["registry.example.com/ml/"]
    checks = [v["expression"] for v in policy["spec"]["validations"]]
    assert any("object.spec.image.startsWith(r)" in x for x in checks)
    assert any("!has(object.spec.command)" in x for x in checks)
    allowed = render(helm, "admissionPolicy.allowedRegistries={registry.example.com/ml/}")
    (policy,) = by_kind(allowed, "ValidatingAdmissionPolicy")
    assert not any("spec.command" in v["expression"] for v in policy["spec"]["validations"])
