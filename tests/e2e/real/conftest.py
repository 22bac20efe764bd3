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


@pytest.fixture(scope="package")
def cluster(real_nodes: ClusterInfo) -> Cluster:
    # Both nodes Ready (tests/integration/nodes powers one off) and every image on each:
    # a pod may land on either node.
    info = ensure_real_nodes(*IMAGES)
    return Cluster(
        kubeconfig=Path(info.kubeconfig), bin_dir=Path(info.bin_dir),
        s3_endpoint=info.s3_endpoint, s3_access_key=info.s3_access_key,
        s3_secret_key=info.s3_secret_key, bucket=info.bucket, api_server=info.api_server,
        state_dir=Path(info.state_dir), nodes=tuple(info.nodes), info=info,
    )


def _image_id(name: str) -> str:
    shown = podman("image", "inspect", "--format", "{{.Id}}", image_ref(name))
    return shown.stdout.strip()[:16]


@pytest.fixture(scope="package")
def forja(cluster: Cluster) -> Iterator[Forja]:
    # The operator pod rolls out whenever its image was rebuilt (its tag does not
    # change): hack/demo.sh does the same.
    yield from install_forja(
        cluster, f"podAnnotations.forja\\.dev/image-id={_image_id('operator')}")

