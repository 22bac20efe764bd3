"""Parsing FORJA_SPEC into typed config: every error names the field."""

from __future__ import annotations

import json

import pytest

from forja_api.contract import RenderedSpec
from forja_trainer.config import (
    BaseHyperparameters,
    build_job_config,
    parse_hyperparameters,
    parse_rendered_spec,
)
from forja_trainer.errors import InvalidConfig
from forja_trainer.trainers.smoke_verifier import SmokeVerifierHyperparameters


def _rendered(hp: dict[str, object], **over: object) -> RenderedSpec:
    return RenderedSpec(
        name="j",
        namespace="n",
        spec={
            "model": "m",
            "trainer": "smoke-verifier",
            "dataset": {"uri": "generated://smoke-sequences", "format": "generated"},
            "hyperparameters": hp,
        },
        checkpoint_uri="file:///tmp/c",
        artifact_uri="file:///tmp/a",
        **over,  # type: ignore[arg-type]
    )


def test_defaults_and_types() -> None:
    cfg = build_job_config(_rendered({"epochs": 3}), SmokeVerifierHyperparameters)
    assert cfg.hyperparameters.epochs == 3
    assert cfg.hyperparameters.crop_size == 64
    assert cfg.trainer.value == "smoke-verifier"


def test_bad_value_names_the_field() -> None:
    with pytest.raises(InvalidConfig, match=r"spec\.hyperparameters\.batch_size: .*greater than"):
        build_job_config(_rendered({"batch_size": 0}), SmokeVerifierHyperparameters)


def test_unknown_hyperparameter_is_refused() -> None:
    with pytest.raises(InvalidConfig, match=r"spec\.hyperparameters\.learning_rate: Extra inputs"):
        build_job_config(_rendered({"learning_rate": 0.1}), SmokeVerifierHyperparameters)


def test_override_wins_and_is_blamed_when_wrong() -> None:
    cfg = build_job_config(
        _rendered({"batch_size": 32}, overrides={"batch_size": 8}), SmokeVerifierHyperparameters
    )
    assert cfg.hyperparameters.batch_size == 8
    with pytest.raises(InvalidConfig, match=r"^overrides\.batch_size"):
        parse_hyperparameters(BaseHyperparameters, {"batch_size": 4}, {"batch_size": -1})


def test_spec_field_errors_name_the_spec_path() -> None:
    rendered = _rendered({})
    rendered.spec["resources"] = {"gpus": -1}
    with pytest.raises(InvalidConfig, match=r"spec\.resources\.gpus"):
        build_job_config(rendered, SmokeVerifierHyperparameters)


def test_min_batch_size_above_batch_size() -> None:
    with pytest.raises(InvalidConfig, match="min_batch_size"):
        parse_hyperparameters(BaseHyperparameters, {"batch_size": 2, "min_batch_size": 4})


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (None, "FORJA_SPEC is empty"),
        ("{not json", "FORJA_SPEC is not JSON"),
        (json.dumps({"name": "x"}), r"FORJA_SPEC\.namespace: Field required"),
    ],
)
def test_envelope_errors(text: str | None, pattern: str) -> None:
    with pytest.raises(InvalidConfig, match=pattern):
        parse_rendered_spec(text)
