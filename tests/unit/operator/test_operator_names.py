"""Names derived from an object's name: long names that share a prefix never collide,
every derived name fits a label value (63), and short names stay as they were."""

from __future__ import annotations

import re

import pytest

from forja_api.semver import Version
from forja_operator.builders.attempt import attempt_name
from forja_operator.builders.modelversion import modelversion_name, verify_pod_name
from forja_operator.inferenceservice.builders import child_name

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PREFIX = "smoke-detector-for-the-northern-ridge-cameras-high-res-v"  # 56 characters


@pytest.mark.parametrize("length", [61, 62, 63])
def test_attempt_names_of_long_jobs_sharing_a_prefix_differ(length: int) -> None:
    a, b = (PREFIX + "x" * 10)[: length - 1] + "a", (PREFIX + "x" * 10)[: length - 1] + "b"
    for index in (1, 2, 12):
        na, nb = attempt_name(a, index), attempt_name(b, index)
        assert na != nb
        assert len(na) <= 63 and na.endswith(f"-a{index}") and DNS_SUBDOMAIN.match(na)
    assert len({attempt_name(a, i) for i in range(1, 20)}) == 19


def test_short_names_are_unchanged() -> None:
    assert attempt_name("train", 3) == "train-a3"
    assert modelversion_name("detector", Version(1, 2, 0)) == "detector-v1.2.0"
    assert attempt_name("x" * 60, 1) == "x" * 60 + "-a1"


def test_long_version_names_fit_a_label_and_differ() -> None:
    model = "m" * 50  # ModelName's limit
    names = {modelversion_name(model, Version(1, 0, n, ("rc", "very-long-prerelease-tag")))
             for n in range(5)}
    assert len(names) == 5
    for name in names:
        assert len(name) <= 63 and DNS_SUBDOMAIN.match(name), name


def test_verify_pods_of_two_versions_of_one_artifact_differ() -> None:
    uri, sha = "s3://b/m/forja-model.json", "0" * 64
    a = verify_pod_name(PREFIX + "-v1.0.0", uri, sha)
    b = verify_pod_name(PREFIX + "-v1.0.1", uri, sha)
    assert a != b and len(a) <= 63 and len(b) <= 63


@pytest.mark.parametrize("length", [61, 62, 63])
def test_service_children_of_long_names_sharing_a_prefix_differ(length: int) -> None:
    a, b = (PREFIX + "x" * 10)[: length - 1] + "a", (PREFIX + "x" * 10)[: length - 1] + "b"
    for slug in ("", "1-2-0", "canary"):
        assert child_name(a, slug) != child_name(b, slug)
        assert len(child_name(a, slug)) <= 63
