"""crds/ is what the types generate, structural, documented, and the chart ships the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from forja_api import crdgen
from forja_api.v1alpha1 import KINDS, ModelVersion, TrainingJob

ROOT = Path(__file__).resolve().parents[3]
CRDS = {kind.__name__: crdgen.render_crd(kind) for kind in KINDS}


def walk(node: dict[str, Any], path: str = ""):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


def schema(kind: str) -> dict[str, Any]:
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("out", ["crds", "helm/forja/crds"])
def test_generated_files_match_the_types(out):
    """Fails when someone edits the types without `python -m forja_api.crdgen` (or the YAML)."""
    assert crdgen.main(["--check", "--out", str(ROOT / out)]) == 0


def test_chart_crds_identical_to_crds():
    ours = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (ROOT / "helm/forja/crds").glob("*.yaml")}
    assert ours == chart and len(ours) == 3


def test_check_reports_drift(tmp_path):
    crdgen.main(["--out", str(tmp_path)])
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 0
    victim = tmp_path / "forja.dev_trainingjobs.yaml"
    victim.write_text(victim.read_text().replace("maximum: 64", "maximum: 65"))
    assert crdgen.main(["--check", "--out", str(tmp_path)]) == 1


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_schema_is_structural(kind):
    text = yaml.safe_dump(CRDS[kind])
    assert "$ref" not in text and "null" not in text and "title:" not in text
    for path, node in walk(schema(kind)):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert "uniqueItems" not in node, path
        assert node.get("additionalProperties") is not True, path
        for branch in node.get("anyOf", []):
            assert set(branch) <= {"type"}, path  # only int-or-string's typed branches
        if node.get("type") == "object" and "properties" not in node:
            assert "additionalProperties" in node or node.get(
                "x-kubernetes-preserve-unknown-fields"
            ) or path.endswith("metadata"), path


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_field_is_documented(kind):
    """kubectl explain reads these descriptions."""
    for path, node in walk(schema(kind)):
        if path.startswith((".spec", ".status")) and not path.endswith(("[]", ".*")):
            assert node.get("description"), f"{kind}{path} has no description"


def test_explain_resources_reads_well():
    res = schema("TrainingJob")["properties"]["spec"]["properties"]["resources"]
    assert "nvidia.com/gpu" in res["description"]
    assert res["properties"]["gpus"]["minimum"] == 0
    assert res["default"] == {}


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_printer_columns_point_at_real_fields(kind):
    root = schema(kind)
    for col in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]:
        if col["jsonPath"].startswith(".metadata"):
            continue
        node = root
        for part in col["jsonPath"].lstrip(".").split("."):
            node = node["properties"][part]
        want = {"integer": "integer", "string": None, "boolean": "boolean", "number": "number"}
        if want.get(col["type"]):
            assert node["type"] == want[col["type"]], col


def test_printer_columns_tell_the_story():
    def names(kind):
        return [c["name"] for c in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]]

    assert {"Phase", "Progress", "Epoch", "Model", "Version", "Age"} <= set(names("TrainingJob"))
    assert {"Model", "Version", "Aliases", "Phase", "Metric", "Age"} <= set(names("ModelVersion"))
    assert {"Phase", "Active", "Canary", "Share", "Ready", "URL", "Age"} <= set(
        names("InferenceService")
    )


def test_names_do_not_collide_with_kserve():
    all_short = [s for crd in CRDS.values() for s in crd["spec"]["names"]["shortNames"]]
    assert "isvc" not in all_short and len(all_short) == len(set(all_short))
    for crd in CRDS.values():
        assert crd["spec"]["names"]["categories"] == ["forja", "ml"]
        assert crd["spec"]["versions"][0]["subresources"]["status"] == {}


def rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize("kind", [TrainingJob, ModelVersion])
def test_immutable_fields_have_transition_rules(kind):
    spec_model = kind.model_fields["spec"].annotation
    props = schema(kind.__name__)["properties"]["spec"]["properties"]
    assert spec_model.immutable_fields
    for name in spec_model.immutable_fields:
        wire = spec_model.model_fields[name].alias or name
        assert "self == oldSelf" in rules(props[wire]), wire


def test_spec_defaults_but_no_status_defaults():
    tj = schema("TrainingJob")["properties"]
    restart = tj["spec"]["properties"]["restartPolicy"]["properties"]
    assert restart["onOOM"]["default"] == "HalveBatch"
    assert tj["spec"]["properties"]["suspend"]["default"] is False
    for path, node in walk(tj["status"]):
        assert "default" not in node, path


def test_free_form_maps_preserve_unknown_fields():
    tj = schema("TrainingJob")["properties"]["spec"]["properties"]
    assert tj["hyperparameters"]["x-kubernetes-preserve-unknown-fields"] is True
    mv = schema("ModelVersion")["properties"]["spec"]["properties"]
    assert mv["source"]["properties"]["config"]["x-kubernetes-preserve-unknown-fields"] is True
    assert mv["metrics"]["additionalProperties"] == {"type": "number"}
    isvc = schema("InferenceService")["properties"]["spec"]["properties"]
    stage = isvc["stages"]["items"]["properties"]
    assert stage["parameters"]["x-kubernetes-preserve-unknown-fields"] is True


def test_cel_rules_cover_what_a_schema_cannot_say():
    isvc = schema("InferenceService")["properties"]["spec"]
    assert any("has(self.stages)" in r for r in rules(isvc))
    canary = isvc["properties"]["rollout"]["properties"]["canarySteps"]
    assert any("isSorted" in r for r in rules(canary))
    assert any("has(self.alias)" in r for r in rules(isvc["properties"]["selector"]))
    versioning = schema("TrainingJob")["properties"]["spec"]["properties"]["versioning"]
    assert any("has(self.bump)" in r for r in rules(versioning))
    mv = schema("ModelVersion")["properties"]["spec"]["properties"]
    assert any("matches" in r for r in rules(mv["version"]))


def test_generator_refuses_non_structural_types():
    with pytest.raises(crdgen.CrdGenError):
        union = [{"type": "string"}, {"type": "integer"}, {"type": "null"}]
        crdgen.structural({"anyOf": union}, {})
    with pytest.raises(crdgen.CrdGenError):
        crdgen.structural({"type": "array", "uniqueItems": True, "items": {"type": "string"}}, {})


def test_kueue_contract_documented():
    spec = schema("TrainingJob")["properties"]["spec"]["properties"]
    assert "suspend" in spec and spec["suspend"]["type"] == "boolean"
    queue = spec["scheduling"]["properties"]["queueName"]["description"]
    assert "kueue.x-k8s.io/queue-name" in queue
