"""Fixtures: CRDs, the operator process, a namespace with the artifact store Secret.

Module-scoped, not session-scoped, where they take ``cluster``: a module may put itself
on the real-node cluster (fixtures.real_cluster.on_real_nodes) and they follow it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .operator_harness import STORE_SECRET, Operator, crd_documents


@pytest.fixture(scope="module")
def crds_installed(cluster: Any) -> None:
    docs = yaml.safe_dump_all(crd_documents())
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=docs)
    cluster.wait_established(*(doc["metadata"]["name"] for doc in crd_documents()))


@pytest.fixture(scope="module")
def operator_config(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("operator") / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "artifactStore": {
                    "uri": f"s3://{cluster.bucket}/operator-tests",
                    "endpoint": cluster.s3_endpoint,
                    "credentialsSecret": STORE_SECRET,
                },
                "metricsPort": 0,
                "healthPort": 0,
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def operator(cluster: Any, crds_installed: None, operator_config: Path) -> Iterator[Operator]:
    op = Operator(operator_config, cluster.kubeconfig)
    op.start()
    yield op
    op.stop()


@pytest.fixture
def store_ns(namespace: str, cluster: Any) -> str:
    """A namespace holding the artifact store Secret (keys accessKey/secretKey).

    Also under the chart's default name: a forja installed in the shared cluster
    (helm, watching every namespace) may act on these jobs too, and must find it.
    """
    for name in (STORE_SECRET, "forja-artifact-store"):
        cluster.kubectl(
            "create",
            "secret",
            "generic",
            name,
            "-n",
            namespace,
            f"--from-literal=accessKey={cluster.s3_access_key}",
            f"--from-literal=secretKey={cluster.s3_secret_key}",
        )
    return namespace
