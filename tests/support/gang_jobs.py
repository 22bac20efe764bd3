"""Multi-worker TrainingJobs the gang tests share: the operator's
(tests/integration/operator), under Kueue, and one worker per node
(tests/integration/nodes). One definition, so each trains the same job."""

from __future__ import annotations

from typing import Any

from forja_api.contract import Result

__all__ = ["TF_TINY", "classifier_gang_job", "result_of", "tf_gang_job"]

# The data and settings of the trainer's own 2-process test (tests/unit/trainer).
CLASSIFIER_DATASET = {"uri": "generated://shapes?classes=4&per_class=48&size=24",
                      "format": "generated"}

# The TF pipeline's tiny config (two shared cores, two trainers): the 2-worker tests
# and tests/integration/trainer_tf's single pod.
TF_TINY: dict[str, Any] = {
    "teacher": {"architecture": "tiny-cnn", "image_size": 32, "warmup_epochs": 0,
                "finetune_epochs": 2, "finetune_lr": 5e-3},
    "student": {"architecture": "tiny-cnn", "image_size": 24, "epochs": 2, "lr": 5e-3},
    "qat": {"epochs": 1, "lr": 1e-4},
    "batch_size": 16,
    "export": {"representative_samples": 32},
    "generated": {"train": 64, "val": 32, "test": 32, "image_size": 32, "classes": 3},
}


def _job(name: str, spec: dict[str, Any], labels: dict[str, str] | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "forja.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": metadata, "spec": spec}


def classifier_gang_job(name: str, epochs: int, *, workers: int = 2,
                        labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    """The image classifier on generated shapes; ``spec`` overrides or adds fields."""
    body: dict[str, Any] = {
        "model": name,
        "trainer": "image-classifier",
        "workers": workers,
        "dataset": CLASSIFIER_DATASET,
        "hyperparameters": {"epochs": epochs, "image_size": 24, "width": 8,
                            "batch_size": 16, "augmentation": "light", "lr": 0.005},
        "resources": {"cpu": "1"},
        **spec,
    }
    return _job(name, body, labels)


def tf_gang_job(name: str, *, labels: dict[str, str] | None = None,
                **spec: Any) -> dict[str, Any]:
    """distill-qat-tflite across 2 workers (MultiWorkerMirroredStrategy), tiny config."""
    body: dict[str, Any] = {
        "model": name,
        "trainer": "distill-qat-tflite",
        "workers": 2,
        "dataset": {"uri": "generated://multilabel", "format": "generated"},
        "hyperparameters": TF_TINY,
        "restartPolicy": {"backoffLimit": 1, "backoffSeconds": 0},
        **spec,
    }
    return _job(name, body, labels)


def result_of(pod: dict[str, Any]) -> Result | None:
    """What the pod's trainer reported in its termination message, once it ended."""
    for st in pod["status"].get("containerStatuses", []):
        term = st.get("state", {}).get("terminated")
        if term:
            return Result.from_termination_message(term.get("message"))
    return None
