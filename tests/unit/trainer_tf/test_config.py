"""The distill-qat-tflite configuration: team defaults and errors naming the field."""

from __future__ import annotations

import pytest

from forja_api.contract import InvalidConfig
from forja_trainer_tf.config import DistillQATConfig, parse_config


def test_defaults_are_the_mobile_teams_recipe() -> None:
    cfg = DistillQATConfig()
    assert (cfg.teacher.architecture, cfg.teacher.image_size) == ("efficientnet_b3", 300)
    assert (cfg.student.architecture, cfg.student.image_size) == ("efficientnet_lite1", 240)
    assert (cfg.distillation.alpha, cfg.distillation.temperature) == (0.7, 2.0)
    t = cfg.thresholds
    assert (t.start, t.stop, t.step, t.objective, t.min_improvement) == (
        0.05, 0.95, 0.01, "macro_f1", 0.005)
    assert (cfg.export.input_type, cfg.export.output_type) == ("uint8", "int8")
    assert cfg.export.representative_samples == 200
    assert cfg.seed == 1337


def test_overrides_win_over_hyperparameters() -> None:
    cfg = parse_config({"batch_size": 32}, {"batch_size": 8})
    assert cfg.batch_size == 8


@pytest.mark.parametrize(
    ("hyper", "field"),
    [
        ({"distillation": {"alpha": 1.5}}, "hyperparameters.distillation.alpha"),
        ({"distillation": {"temperature": 0}}, "hyperparameters.distillation.temperature"),
        ({"student": {"architecture": "resnet50"}}, "hyperparameters.student.architecture"),
        ({"teacher": {"image_size": 8}}, "hyperparameters.teacher.image_size"),
        ({"export": {"output_type": "float32"}}, "hyperparameters.export.output_type"),
        ({"qat": {"epochs": 0}}, "hyperparameters.qat.epochs"),
        ({"batch_size": 0}, "hyperparameters.batch_size"),
        ({"learning_rate": 0.1}, "hyperparameters.learning_rate"),
        ({"thresholds": {"start": 0.9, "stop": 0.1}}, "hyperparameters.thresholds"),
    ],
)
def test_invalid_values_name_the_field(hyper: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        parse_config(hyper)
    assert field in str(err.value)


def test_efficientnet_needs_32px() -> None:
    msg = r"student.image_size: efficientnet_lite1 needs at least 32px"
    with pytest.raises(InvalidConfig, match=msg):
        parse_config({"student": {"image_size": 24}})
    assert parse_config({"student": {"architecture": "tiny-cnn", "image_size": 24}})
