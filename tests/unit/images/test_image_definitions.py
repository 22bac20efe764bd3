"""The four Dockerfiles, the build script, the chart and the operator agree on images.

Static checks of what tests/integration/images proves by running the images: a user
who builds with docker and installs the chart gets tags the chart and the operator
name, bases they can pull, and numeric non-root users.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from forja_operator.config import OperatorConfig

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILES = {
    "operator": ROOT / "operator/Dockerfile",
    "server": ROOT / "server_image/Dockerfile",
    "trainer": ROOT / "trainer_image/Dockerfile",
    "trainer-tf": ROOT / "trainer_image/Dockerfile.tf",
}
sys.path.insert(0, str(ROOT / "hack/images"))
from requirements import requirements  # noqa: E402


def app_version() -> str:
    chart = yaml.safe_load((ROOT / "helm/forja/Chart.yaml").read_text())
    return str(chart["appVersion"])


def test_operator_defaults_and_chart_values_name_the_built_tags() -> None:
    version = app_version()
    values = yaml.safe_load((ROOT / "helm/forja/values.yaml").read_text())
    defaults = OperatorConfig()
    expected = {
        "trainerImage": f"forja/trainer:{version}",
        "trainerTfImage": f"forja/trainer-tf:{version}",
        "serverImage": f"forja/server:{version}",
    }
    assert {k: values["config"][k] for k in expected} == expected
    assert defaults.trainer_image == expected["trainerImage"]
    assert defaults.trainer_tf_image == expected["trainerTfImage"]
    assert defaults.server_image == expected["serverImage"]
    assert values["image"]["repository"] == "forja/operator"
    # The build script tags <prefix>/<name>:<appVersion>, read from the same Chart.yaml.
    script = (ROOT / "hack/build-images.sh").read_text()
    assert "appVersion" in script and 'tag="$registry/$name:$version"' in script


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_base_user_and_layer_order(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    # Users with a registry get the public base; this machine passes its own.
    assert "ARG BASE_IMAGE=python:3.11-slim" in text
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f == "${BASE_IMAGE}" for f in froms), froms
    # A numeric, non-root user (restricted pod security checks runAsNonRoot by number).
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert len(users) == 1
    uid, _, gid = users[0].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit()
    # The dependency layer depends on the pins alone; forja's source comes after it.
    lines = text.splitlines()
    pins = next(i for i, line in enumerate(lines) if "COPY --from=pins" in line)
    deps = next(i for i, line in enumerate(lines) if "COPY --from=deps" in line)
    own = re.compile(r"COPY (operator|server_image|trainer_image)/")
    source = [i for i, line in enumerate(lines) if own.match(line)]
    assert source and pins < deps < min(source)
    # getpass.getuser() must not need a passwd entry for the pod's arbitrary UID.
    assert "LOGNAME=" in text
    # Nothing of this machine's (its CA bundle) is copied into an image.
    assert "ca-certificates.crt" not in text


def image_deps(extra: str) -> set[str]:
    pins = requirements(str(ROOT / "pyproject.toml"), [extra])
    return {re.split(r"[=<>\[ ]", d, maxsplit=1)[0].lower() for d in pins}


def test_serving_image_carries_no_framework() -> None:
    deps = image_deps("server")
    assert {"onnxruntime", "ai-edge-litert"} <= deps
    assert not deps & {"torch", "torchvision", "ultralytics", "tensorflow", "tf_keras"}


def test_operator_image_carries_no_framework() -> None:
    deps = image_deps("operator")
    assert {"kopf", "kubernetes"} <= deps
    assert not deps & {"torch", "tensorflow", "onnxruntime", "boto3"}


def test_requirements_expand_self_references_and_refuse_unknown_extras() -> None:
    trainer = requirements(str(ROOT / "pyproject.toml"), ["trainer"])
    assert any(d.startswith("boto3") for d in trainer)  # from forja[storage]
    assert not any(d.startswith("forja[") for d in trainer)
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        requirements(str(ROOT / "pyproject.toml"), ["nope"])


@pytest.mark.parametrize("name", list(DOCKERFILES))
def test_every_own_package_an_image_imports_is_copied_into_it(name: str) -> None:
    # A package shared by two images (forja_progress) must be in both COPY lists: the
    # unit tests import from the checkout and would not notice a missing COPY.
    text = DOCKERFILES[name].read_text()
    copied = set(re.findall(r"^COPY (?:operator|server_image|trainer_image)/(forja_\w+) ", text,
                            re.M))
    imported: set[str] = set()
    for package in copied:
        home = next(p for p in ROOT.glob(f"*/{package}") if p.is_dir())
        for source in home.rglob("*.py"):
            imported |= set(re.findall(r"^\s*(?:from|import) (forja_\w+)", source.read_text(),
                                       re.M))
    assert imported <= copied, f"{name}: imports {sorted(imported - copied)} it never copies"
