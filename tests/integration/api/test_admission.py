"""Admission on the real API server: the samples are accepted, invalid objects refused.

The refusals come from the generated CRDs alone (OpenAPI schema + CEL), no
webhook: each message must name the field, and the answer must be a 4xx.
The table is tests/unit/api/invalid_specs.yaml, which the pydantic types must
refuse too (tests/unit/api/test_validation.py).
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[3]
TABLE = yaml.safe_load((ROOT / "tests/unit/api/invalid_specs.yaml").read_text())
MANIFESTS = sorted((ROOT / "manifests").glob("*.yaml"))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@pytest.fixture(scope="module")
def crds(cluster):
    kubectl = cluster.kubectl
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"), check=True)
    cluster.wait_established(
        "trainingjobs.forja.dev", "modelversions.forja.dev", "inferenceservices.forja.dev"
    )


@pytest.fixture(scope="module")
def table_namespace(cluster, crds):
    """One namespace for the whole table (each case names its object): 44 namespaces
    would cost more than the cases."""
    name = f"t-admission-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name, check=True)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(kubectl, namespace: str, obj: dict[str, Any], tmp_path: Path, name: str = "obj"):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(obj))
    return kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=forja-test",
                   "-n", namespace, "-f", str(path), "-v=6", check=False)


def create(kubectl, namespace: str, obj: dict[str, Any], tmp_path: Path):
    path = tmp_path / "create.json"
    path.write_text(json.dumps(obj))
    return kubectl("create", "-n", namespace, "-f", str(path), "-v=6", check=False)


_RESPONSE = re.compile(r'"Response" verb="(?:POST|PATCH|PUT)" url="[^"]*forja\.dev[^"]*" '
                       r'status="(\d{3})')


def http_status(out) -> int:
    """The API server's answer to the write, from kubectl -v=6."""
    codes = _RESPONSE.findall(out.stderr)
    assert codes, out.stderr
    return int(codes[-1])


def refusal(out) -> str:
    """kubectl's error line, without the -v=6 request log."""
    return "\n".join(line for line in out.stderr.splitlines() if not line.startswith("I1"))


def test_every_manifest_is_accepted(crds, kubectl, namespace):
    out = kubectl("apply", "--server-side", "-n", namespace, "-f", str(ROOT / "manifests"),
                  check=False)
    assert out.returncode == 0, out.stderr
    docs = [d for p in MANIFESTS for d in yaml.safe_load_all(p.read_text()) if d]
    assert len(docs) == len(MANIFESTS) >= 16
    for doc in docs:
        got = kubectl("get", f"{doc['kind'].lower()}.forja.dev", doc["metadata"]["name"],
                      "-n", namespace, "-o", "json", check=True)
        spec = json.loads(got.stdout)["spec"]
        # What the user wrote survives (nothing pruned), defaults are filled in.
        assert merge_patch(spec, doc["spec"]) == spec, doc["metadata"]["name"]


def test_defaults_are_applied_by_the_server(crds, kubectl, namespace, tmp_path):
    base = TABLE["bases"]["TrainingJob"]
    assert apply(kubectl, namespace, base, tmp_path).returncode == 0
    spec = json.loads(kubectl("get", "trainingjob.forja.dev", "case", "-n", namespace,
                              "-o", "json", check=True).stdout)["spec"]
    assert spec["restartPolicy"] == {"backoffLimit": 3, "backoffSeconds": 10,
                                     "onOOM": "HalveBatch", "minBatchSize": 1,
                                     "preemptionLimit": 10}
    assert spec["suspend"] is False and spec["resources"] == {"gpus": 0}
    assert spec["workers"] == 1


def test_printer_columns_and_short_names(crds, kubectl, namespace):
    kubectl("apply", "--server-side", "-n", namespace, "-f", str(ROOT / "manifests"), check=True)
    tj = kubectl("get", "tj", "-n", namespace, check=True).stdout.splitlines()[0].split()
    assert tj == ["NAME", "PHASE", "PROGRESS", "EPOCH", "MODEL", "VERSION", "AGE"]
    wide = kubectl("get", "tj", "-n", namespace, "-o", "wide", check=True).stdout.splitlines()
    assert wide[0].split()[-2:] == ["WORKERS", "AGE"]
    assert all(line.split()[-2] == "1" for line in wide[1:])  # the default world size
    mv = kubectl("get", "mv", "-n", namespace, check=True).stdout
    assert mv.splitlines()[0].split() == ["NAME", "MODEL", "VERSION", "ALIASES", "PHASE",
                                          "METRIC", "AGE"]
    assert "external-detector" in mv and "production" in mv
    isvc = kubectl("get", "fisvc", "-n", namespace, check=True).stdout.splitlines()[0].split()
    assert isvc == ["NAME", "PHASE", "ACTIVE", "CANARY", "SHARE", "READY", "URL", "AGE"]
    every = kubectl("get", "forja", "-n", namespace, "-o", "name", check=True).stdout.split()
    assert len(every) == len(MANIFESTS)


def test_kubectl_explain_reads_the_docstrings(crds, kubectl):
    out = kubectl("explain", "trainingjob.spec.resources", check=True).stdout
    assert "nvidia.com/gpu" in out and "gpus" in out and "memory" in out


def test_status_is_a_subresource(crds, kubectl, namespace, tmp_path):
    """Writing status through the main resource is ignored; /status takes it."""
    assert apply(kubectl, namespace, TABLE["bases"]["TrainingJob"], tmp_path).returncode == 0
    kubectl("patch", "trainingjob.forja.dev", "case", "-n", namespace, "--type=merge",
            "-p", '{"status": {"phase": "Running"}}', check=True)
    got = json.loads(kubectl("get", "trainingjob.forja.dev", "case", "-n", namespace,
                             "-o", "json", check=True).stdout)
    assert "status" not in got
    kubectl("patch", "trainingjob.forja.dev", "case", "-n", namespace, "--subresource=status",
            "--type=merge", "-p",
            '{"status": {"phase": "Running", "progress": {"epoch": 1, "totalEpochs": 4,'
            ' "percent": 25}}}', check=True)
    row = kubectl("get", "tj", "case", "-n", namespace, "--no-headers", check=True).stdout.split()
    assert row[:4] == ["case", "Running", "25", "1"]


@pytest.mark.parametrize("case", TABLE["cases"], ids=lambda c: c["name"])
def test_invalid_object_is_refused_naming_the_field(case, kubectl, table_namespace, tmp_path):
    namespace = table_namespace
    obj = merge_patch(TABLE["bases"][case["base"]], case.get("patch", {}))
    if "name" not in case.get("patch", {}).get("metadata", {}):  # a name case keeps its own
        obj["metadata"]["name"] = case["name"]
    if "update" in case:
        first = create(kubectl, namespace, obj, tmp_path)
        assert first.returncode == 0, first.stderr
        # An update as GitOps makes it: a server-side apply of the changed object.
        out = apply(kubectl, namespace, merge_patch(obj, case["update"]), tmp_path)
    else:
        out = create(kubectl, namespace, obj, tmp_path)
    assert out.returncode != 0, f"{case['name']} was accepted"
    assert case["field"] in refusal(out), refusal(out)
    # A refusal is the client's fault: 422 Invalid, or 400 for an unknown field.
    assert http_status(out) in (400, 422), refusal(out)


def test_unknown_field_refused_by_server_side_apply(crds, kubectl, namespace, tmp_path):
    """SSA refuses it too, naming the field. Its status code is 500, not 400: an
    upstream API-server bug (kubernetes/kubernetes#139253) that no CRD can change;
    kubectl create / client-side apply get the 400 shown in the test above."""
    obj = merge_patch(TABLE["bases"]["TrainingJob"], {"spec": {"epochs": 3}})
    out = apply(kubectl, namespace, obj, tmp_path)
    assert out.returncode != 0
    assert ".spec.epochs: field not declared in schema" in refusal(out)


def test_workers_refusal_names_the_trainer(kubectl, table_namespace, tmp_path):
    """The CEL rule names the trainer that cannot run distributed (Ultralytics YOLO);
    the PyTorch trainers that can (image-classifier, unet-segmentation) are accepted."""
    base = TABLE["bases"]["TrainingJob"]
    single = merge_patch(base, {"metadata": {"name": "workers-yolo"},
                                "spec": {"trainer": "yolo-detector", "workers": 3}})
    out = create(kubectl, table_namespace, single, tmp_path)
    assert out.returncode != 0 and http_status(out) == 422, refusal(out)
    assert "spec.workers must be 1 for trainer yolo-detector" in refusal(out), refusal(out)
    for name, trainer in (("workers-classifier", "image-classifier"),
                          ("workers-unet", "unet-segmentation")):
        gang = merge_patch(base, {"metadata": {"name": name},
                                  "spec": {"trainer": trainer, "workers": 4}})
        out = create(kubectl, table_namespace, gang, tmp_path)
        assert out.returncode == 0, refusal(out)
