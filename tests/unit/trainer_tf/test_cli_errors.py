"""The trainer process ends bad input with the contract's exit code and a Result."""

from __future__ import annotations

import pytest

from forja_api.contract import ExitCode
from forja_trainer_tf.generate import generate_multilabel_dataset

from .conftest import TINY_HYPERPARAMETERS, TrainerEnv


def test_invalid_hyperparameter_exits_2_naming_the_field(trainer_env: TrainerEnv) -> None:
    code, _ = trainer_env.run(trainer_env.env({"distillation": {"alpha": 2}}), timeout=120)
    assert code == ExitCode.INVALID_CONFIG
    result = trainer_env.result()
    assert result["ok"] is False and result["reason"] == "InvalidConfig"
    assert "hyperparameters.distillation.alpha" in result["message"]


@pytest.mark.slow
def test_class_count_mismatch_exits_3(trainer_env: TrainerEnv) -> None:
    root = trainer_env.tmp / "ds"
    generate_multilabel_dataset(root, train=8, val=4, test=4, image_size=16, classes=3)
    (root / "config.yaml").write_text("num_classes: 4\n")
    code, lines = trainer_env.run(
        trainer_env.env(TINY_HYPERPARAMETERS, dataset_uri=root.as_uri()), timeout=300)
    assert code == ExitCode.INVALID_DATASET, "\n".join(lines[-20:])
    result = trainer_env.result()
    assert result["reason"] == "InvalidDataset"
    assert "expected 4 classes, found 3" in result["message"]


@pytest.mark.slow
def test_gpus_requested_but_absent_exits_4(trainer_env: TrainerEnv) -> None:
    env = trainer_env.env(TINY_HYPERPARAMETERS, resources={"gpus": 1})
    code, lines = trainer_env.run(env, timeout=300)
    assert code == ExitCode.GPU_UNAVAILABLE, "\n".join(lines[-20:])
    assert "resources.gpus" in trainer_env.result()["message"]


@pytest.mark.slow
def test_pretrained_digest_mismatch_exits_5(trainer_env: TrainerEnv) -> None:
    weights = trainer_env.tmp / "teacher.h5"
    weights.write_bytes(b"not the weights you expected")
    env = trainer_env.env(
        {**TINY_HYPERPARAMETERS, "generated": {"train": 8, "val": 4, "test": 4, "image_size": 32}},
        pretrained={"uri": weights.as_uri(), "sha256": "0" * 64},
    )
    code, lines = trainer_env.run(env, timeout=300)
    assert code == ExitCode.INCOMPATIBLE_PRETRAINED, "\n".join(lines[-20:])
    result = trainer_env.result()
    assert result["reason"] == "IncompatiblePretrained"
    assert "pretrained.sha256" in result["message"]


def test_a_resume_point_outside_the_jobs_checkpoints_exits_2(trainer_env: TrainerEnv) -> None:
    other = trainer_env.tmp / "other-job" / "checkpoints"
    other.mkdir(parents=True)
    (other / "state.json").write_text("{}")
    env = trainer_env.env(TINY_HYPERPARAMETERS)
    env["FORJA_RESUME_FROM"] = other.as_uri()
    code, lines = trainer_env.run(env, timeout=300)
    assert code == ExitCode.INVALID_CONFIG, "\n".join(lines[-20:])
    result = trainer_env.result()
    assert "outside this job's checkpoint prefix" in result["message"]
    assert not (trainer_env.tmp / "ckpt" / "state.json").exists()  # nothing copied in
