"""The chart's ValidatingAdmissionPolicy, enforced by the real API server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fixtures.cluster import wait_for

from .test_chart_install import CHART, helm

pytestmark = pytest.mark.cluster


def _trainingjob(name: str, image: str, command: list[str] | None = None) -> str:
    spec = {
        "model": "m",
        "trainer": "custom" if command else "image-classifier",
        "image": image,
        "dataset": {"uri": "s3://data/set", "format": "image-folder"},
        "suspend": True,  # nothing is meant to run
    }
    if command:
        spec["command"] = command
    return json.dumps({"apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob",
                       "metadata": {"name": name}, "spec": spec})


def test_only_allowed_registries_and_no_custom_command(cluster, kubectl, namespace, tmp_path):
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"), check=True)
    release = f"vap-{namespace}"[:40]
    rendered = helm(cluster, "template", release, str(CHART), "--namespace", namespace,
                    "--set", "admissionPolicy.allowedRegistries={registry.example.com/ml/}",
                    "--set", "admissionPolicy.allowCustomCommand=false",
                    # Bound to this test's namespace only: the cluster is shared.
                    "--set", f"config.watchNamespaces={{{namespace}}}").stdout
    docs = [d for d in yaml.safe_load_all(rendered)
            if d and d["kind"].startswith("ValidatingAdmissionPolicy")]
    assert len(docs) == 2
    path = Path(tmp_path) / "policy.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    kubectl("apply", "-f", str(path), check=True)
    try:
        def refused_elsewhere() -> str:
            out = kubectl("apply", "-n", namespace, "--dry-run=server", "-f", "-",
                          input=_trainingjob("probe", "docker.io/evil/miner:1"), check=False)
            return out.stderr if out.returncode != 0 else ""

        # The policy takes effect once the API server has loaded it.
        err = wait_for(refused_elsewhere, 30, message="the policy to be enforced")
        assert "is not from an allowed registry (registry.example.com/ml/)" in err
        ok = kubectl("apply", "-n", namespace, "-f", "-",
                     input=_trainingjob("fine", "registry.example.com/ml/trainer:1"), check=False)
        assert ok.returncode == 0, ok.stderr
        # Look-alike hosts do not pass a prefix that ends with "/".
        out = kubectl("apply", "-n", namespace, "-f", "-", check=False,
                      input=_trainingjob("alike", "registry.example.com.evil/ml/trainer:1"))
        assert out.returncode != 0
        out = kubectl("apply", "-n", namespace, "-f", "-", check=False,
                      input=_trainingjob("cmd", "registry.example.com/ml/trainer:1",
                                         ["python", "-c", "print(1)"]))
        assert out.returncode != 0 and "spec.command is not allowed" in out.stderr
    finally:
        kubectl("delete", "-f", str(path), "--wait=false", check=False)
