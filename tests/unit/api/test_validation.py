"""The pydantic types refuse what the CRDs refuse, naming the field; samples parse.

The same table (invalid_specs.yaml) goes to the real API server in
tests/integration/api/test_admission.py, so the two validators cannot drift.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from forja_api.v1alpha1 import InferenceService, ModelVersion, TrainingJob
from forja_api.v1alpha1.common import immutable_changes
from forja_api.v1alpha1.trainingjob import queue_name

ROOT = Path(__file__).resolve().parents[3]
TABLE = yaml.safe_load((Path(__file__).parent / "invalid_specs.yaml").read_text())
KINDS: dict[str, type[BaseModel]] = {
    "TrainingJob": TrainingJob,
    "ModelVersion": ModelVersion,
    "InferenceService": InferenceService,
}


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


def explain(exc: ValidationError) -> str:
    return "\n".join(
        ".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in exc.errors()
    )


CASES = TABLE["cases"]


def test_table_is_large_enough_and_names_are_unique():
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 15
    assert {c["base"] for c in CASES} == set(KINDS)


@pytest.mark.parametrize("base", sorted(TABLE["bases"]))
def test_bases_are_valid(base):
    KINDS[base].model_validate(TABLE["bases"][base])


@pytest.mark.parametrize("case", [c for c in CASES if "update" not in c], ids=lambda c: c["name"])
def test_pydantic_refuses_invalid_object(case):
    obj = merge_patch(TABLE["bases"][case["base"]], case["patch"])
    with pytest.raises(ValidationError) as info:
        KINDS[case["base"]].model_validate(obj)
    assert case["field"] in explain(info.value), explain(info.value)


@pytest.mark.parametrize("case", [c for c in CASES if "update" in c], ids=lambda c: c["name"])
def test_pydantic_refuses_invalid_update(case):
    kind = KINDS[case["base"]]
    old = merge_patch(TABLE["bases"][case["base"]], case.get("patch", {}))
    new = merge_patch(old, case["update"])
    old_obj, new_obj = kind.model_validate(old), kind.model_validate(new)
    changed = immutable_changes(old_obj.spec, new_obj.spec)  # type: ignore[attr-defined]
    assert case["field"] in changed


def test_mutable_fields_may_change():
    old = ModelVersion.model_validate(TABLE["bases"]["ModelVersion"])
    new = ModelVersion.model_validate(
        merge_patch(TABLE["bases"]["ModelVersion"], {"spec": {"aliases": ["production"],
                                                           "metrics": {"acc": 0.9}}})
    )
    assert immutable_changes(old.spec, new.spec) == []


def manifest_docs():
    for path in sorted((ROOT / "manifests").glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc:
                yield pytest.param(doc, id=f"{path.name}#{i}")


@pytest.mark.parametrize("doc", list(manifest_docs()))
def test_manifests_parse(doc):
    obj = KINDS[doc["kind"]].model_validate(doc)
    assert obj.metadata["name"]  # type: ignore[attr-defined]


def test_every_workload_has_a_sample():
    docs = [d.values[0] for d in manifest_docs()]
    trainers = {d["spec"]["trainer"] for d in docs if d["kind"] == "TrainingJob"}
    assert trainers >= {
        "yolo-detector",
        "smoke-verifier",
        "unet-segmentation",
        "autoencoder-anomaly",
        "image-classifier",
        "restoration-finetune",
        "distill-qat-tflite",
    }
    served = {d["spec"].get("model") for d in docs if d["kind"] == "InferenceService"}
    trained = {d["spec"]["model"] for d in docs if d["kind"] == "TrainingJob"}
    assert trained <= served, f"trained but never served: {trained - served}"
    assert any(d["kind"] == "InferenceService" and d["spec"].get("stages") for d in docs)
    assert any(d["kind"] == "ModelVersion" for d in docs)
    # The e2e tests apply these files: data must be generated, never downloaded.
    for d in docs:
        if d["kind"] == "TrainingJob":
            assert d["spec"]["dataset"]["uri"].startswith("generated://"), d["metadata"]["name"]


def test_semver_and_range_messages_read_as_english():
    with pytest.raises(ValidationError, match=r"semantic version MAJOR\.MINOR\.PATCH"):
        ModelVersion.model_validate(
            merge_patch(TABLE["bases"]["ModelVersion"], {"spec": {"version": "1.0"}})
        )
    with pytest.raises(ValidationError, match="semver range such as"):
        InferenceService.model_validate(
            merge_patch(TABLE["bases"]["InferenceService"],
                        {"spec": {"selector": {"alias": None, "range": ">>1"}}})
        )


@pytest.mark.parametrize("text", ["^1.2", "~1.2.3", "1.x", ">=1.2.0 <2.0.0", "1.x || 2.3.4",
                                  "1.2.0 - 1.4.0", "*", ">= 1.2", "=1.0.0-rc.1"])
def test_valid_ranges_accepted(text):
    InferenceService.model_validate(
        merge_patch(TABLE["bases"]["InferenceService"],
                    {"spec": {"selector": {"alias": None, "range": text}}})
    )


def test_quantities_accept_numbers_and_strings():
    tj = TrainingJob.model_validate(
        merge_patch(TABLE["bases"]["TrainingJob"],
                    {"spec": {"resources": {"cpu": 2, "memory": "512Mi", "gpus": 1}}})
    )
    assert (tj.spec.resources.cpu, tj.spec.resources.memory) == ("2", "512Mi")


def test_kueue_label_wins_over_spec_queue():
    base = merge_patch(TABLE["bases"]["TrainingJob"], {"spec": {"scheduling": {"queueName": "q"}}})
    assert queue_name(TrainingJob.model_validate(base)) == "q"
    labelled = merge_patch(base, {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "gpu"}}})
    assert queue_name(TrainingJob.model_validate(labelled)) == "gpu"


def test_versioning_defaults_to_minor_bump():
    tj = TrainingJob.model_validate(TABLE["bases"]["TrainingJob"])
    assert tj.spec.versioning.effective_bump == "minor"


def training_docs():
    return [p for p in manifest_docs() if p.values[0]["kind"] == "TrainingJob"]


@pytest.mark.parametrize("doc", training_docs())
def test_manifest_hyperparameters_fit_their_trainer(doc):
    """The e2e tests run these files for real: a typo in a key would fail the job
    (trainers refuse unknown hyperparameters), so check them against each trainer's own
    model here. Trainers not in this checkout yet are checked once they land."""
    spec = doc["spec"]
    if spec["trainer"] == "distill-qat-tflite":
        from forja_trainer_tf.config import parse_config

        parse_config(spec["hyperparameters"])
        return
    from forja_api.v1alpha1.trainingjob import DatasetFormat, TrainerName
    from forja_trainer.trainers import available_trainers, get_trainer

    name = TrainerName(spec["trainer"])
    if name not in available_trainers():
        return
    try:
        cls = get_trainer(name)
    except AttributeError:  # module present, trainer not wired into the registry yet
        return
    cls.hyperparameters_model.model_validate(spec["hyperparameters"])
    assert DatasetFormat(spec["dataset"]["format"]) in cls.dataset_formats


def test_workers_default_and_refusal_names_the_trainer():
    base = TABLE["bases"]["TrainingJob"]
    assert TrainingJob.model_validate(base).spec.workers == 1
    gang = merge_patch(base, {"spec": {"workers": 4}})
    assert TrainingJob.model_validate(gang).spec.workers == 4
    with pytest.raises(ValidationError, match=r"spec\.workers must be 1 for trainer yolo-detector"):
        TrainingJob.model_validate(
            merge_patch(base, {"spec": {"trainer": "yolo-detector", "workers": 2}})
        )


@pytest.mark.parametrize(
    "trainer",
    ["smoke-verifier", "image-classifier", "unet-segmentation", "autoencoder-anomaly",
     "restoration-finetune", "distill-qat-tflite"],
)
def test_every_distributed_trainer_accepts_workers(trainer):
    base = TABLE["bases"]["TrainingJob"]
    patch = {"spec": {"trainer": trainer, "workers": 2}}
    job = TrainingJob.model_validate(merge_patch(base, patch))
    assert job.spec.workers == 2


def test_yolo_and_custom_still_refuse_workers():
    base = TABLE["bases"]["TrainingJob"]
    with pytest.raises(ValidationError, match=r"spec\.workers must be 1 for trainer yolo-det"):
        TrainingJob.model_validate(
            merge_patch(base, {"spec": {"trainer": "yolo-detector", "workers": 2}})
        )
