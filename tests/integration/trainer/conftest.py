"""These pods run on the real-node cluster (tests/fixtures/real_cluster.py): from the
forja/trainer image, in a runc container under a real kubelet, in a namespace that
enforces the restricted profile."""

from __future__ import annotations

import pytest

from fixtures.cluster import Cluster
from fixtures.real_cluster import ensure_real_nodes
from forja_localcluster.config import ClusterInfo
from support.restricted import ENFORCE_RESTRICTED


@pytest.fixture(scope="package")
def cluster(real_nodes: ClusterInfo) -> Cluster:
    return Cluster.from_info(ensure_real_nodes("trainer"))


@pytest.fixture
def namespace(namespace: str, cluster: Cluster) -> str:
    cluster.kubectl("label", "namespace", namespace, ENFORCE_RESTRICTED)
    return namespace
