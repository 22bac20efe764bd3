"""The workloads' end-to-end tests on the real-node cluster (tests/fixtures/
real_cluster.py): the chart's operator pod from forja/operator, attempts from
forja/trainer and forja/trainer-tf, verify and server pods from forja/server, each a
runc container under a real kubelet, in namespaces that enforce the restricted
profile. The suite's other cluster (the process agent's) is not used here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.cluster import Cluster
from fixtures.real_cluster import ensure_real_nodes
from forja_localcluster.config import ClusterInfo
from support.containers import image_ref, podman

from ..conftest import Forja, install_forja

IMAGES = ("operator", "server", "trainer", "trainer-tf")
# pytest-timeout counts a test's fixtures too. When this package runs first (`pytest
# tests/e2e`), its first test's setup starts the cluster and pulls ~10 GB of images
# into both nodes: 11 min of the 15 here, before a drill of 4 min (seen). Its own steps
# have their own limits (`start`, `load-images`: 30 min).
SETUP_HEAVY_TIMEOUT = 1800


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.timeout(SETUP_HEAVY_TIMEOUT))


@pytest.fixture(scope="package")
def cluster(real_nodes: ClusterInfo) -> Cluster:
    # Both nodes Ready (tests/integration/nodes powers one off) and every image on each:
    # a pod may land on either node.
    return Cluster.from_info(ensure_real_nodes(*IMAGES))


def _image_id(name: str) -> str:
    shown = podman("image", "inspect", "--format", "{{.Id}}", image_ref(name))
    return shown.stdout.strip()[:16]


@pytest.fixture(scope="package")
def forja(cluster: Cluster) -> Iterator[Forja]:
    # The operator pod rolls out whenever its image was rebuilt (its tag does not
    # change): hack/demo.sh does the same.
    yield from install_forja(
        cluster, f"podAnnotations.forja\\.dev/image-id={_image_id('operator')}")

