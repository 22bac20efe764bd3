from __future__ import annotations

import pytest

from forja_api.v1alpha1.inferenceservice import InferenceServiceSpec, VersionSelector
from forja_operator.inferenceservice.errors import (
    InvalidServiceSpecError,
    NoMatchingVersionError,
)
from forja_operator.inferenceservice.resolve import (
    record_from_body,
    resolve_selector,
    resolve_service,
    revision_slug,
    selector_models,
)

from .isvc_helpers import SHA, record

POOL = [
    record("1.0.0", aliases=("staging",)),
    record("1.2.0", aliases=("production",)),
    record("1.3.0-rc.1"),
    record("2.0.0", ready=False, aliases=("canary",)),
    record("1.1.0", model="other"),
]


def pick(**selector: str) -> str:
    return resolve_selector("smoke", VersionSelector(**selector), POOL, "selector").version


def test_exact_version() -> None:
    assert pick(version="1.0.0") == "1.0.0"


def test_range_picks_the_highest_ready_match_and_skips_prereleases() -> None:
    assert pick(range="^1.0") == "1.2.0"
    assert pick(range=">=1.0.0 <1.2.0") == "1.0.0"
    assert pick(range=">=1.3.0-rc.0 <1.4.0") == "1.3.0-rc.1"


def test_alias_and_latest() -> None:
    assert pick(alias="production") == "1.2.0"
    assert pick(alias="latest") == "1.2.0"  # 2.0.0 is not Ready, rc is a prerelease


def test_a_version_that_is_not_ready_never_resolves() -> None:
    with pytest.raises(NoMatchingVersionError, match="alias 'canary'"):
        pick(alias="canary")
    with pytest.raises(NoMatchingVersionError):
        pick(version="2.0.0")


def test_a_bad_range_names_the_field_even_past_admission() -> None:
    # The CRD and the type refuse it first; the resolver still names the field.
    bad = VersionSelector.model_construct(version=None, range=">>1", alias=None)
    with pytest.raises(InvalidServiceSpecError, match=r"spec\.selector\.range"):
        resolve_selector("smoke", bad, POOL, "selector")


def test_exactly_one_selector_field() -> None:
    both = VersionSelector.model_construct(version="1.0.0", range=None, alias="x")
    with pytest.raises(InvalidServiceSpecError, match="exactly one"):
        resolve_selector("smoke", both, POOL, "selector")


def test_pipeline_resolves_each_stage() -> None:
    pool = [
        record("1.0.0", model="detector"),
        record("1.1.0", model="detector"),
        record("0.3.0", model="verifier", aliases=("production",)),
    ]
    spec = InferenceServiceSpec.model_validate(
        {
            "stages": [
                {"name": "detector", "model": "detector", "selector": {"range": "1.x"}},
                {
                    "name": "verifier",
                    "model": "verifier",
                    "selector": {"alias": "production"},
                    "parameters": {"sequenceLength": 4},
                },
            ]
        }
    )
    rev = resolve_service(spec, pool)
    assert rev.version == "detector@1.1.0,verifier@0.3.0"
    assert rev.slug.startswith("r") and len(rev.slug) == 11
    assert rev.stages[1].parameters == {"sequenceLength": 4}
    assert selector_models(spec) == ["detector", "verifier"]


def test_single_model_defaults_to_latest() -> None:
    spec = InferenceServiceSpec.model_validate({"model": "smoke"})
    rev = resolve_service(spec, POOL)
    assert rev.version == "1.2.0" and rev.slug == "v1-2-0"


def test_model_or_stages_required() -> None:
    with pytest.raises(InvalidServiceSpecError, match=r"spec\.model"):
        resolve_service(InferenceServiceSpec.model_construct(model=None, stages=[]), POOL)


def test_slugs_are_dns_labels_and_distinct() -> None:
    assert revision_slug("1.2.0-rc.1+build.7") == "v1-2-0-rc-1-build-7"
    assert revision_slug("10.20.30-alpha.beta.gamma") != revision_slug("10.20.30-alpha.beta.delta")


def test_record_from_body() -> None:
    body = {
        "metadata": {"name": "m"},
        "spec": {
            "model": "smoke",
            "version": "1.0.0",
            "format": "onnx",
            "aliases": ["production"],
            "artifact": {"uri": "s3://b/k", "sha256": SHA},
        },
        "status": {"phase": "Ready"},
    }
    rec = record_from_body(body)
    assert rec is not None and rec.ready and rec.aliases == ("production",)
    assert record_from_body({"metadata": {"name": "x"}, "spec": {}}) is None
