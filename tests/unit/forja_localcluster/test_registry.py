"""How the nodes are told where images come from (registry.py, nodes.py).

That they really pull from it is tests/integration/nodes/test_real_nodes.py's
``test_the_kubelets_pull_from_the_cluster_registry_that_pods_cannot_reach``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from forja_localcluster import nodes, registry
from forja_localcluster.config import REGISTRY_PORT
from forja_localcluster.errors import ImageError


def test_images_are_named_by_the_registry_and_by_docker_io() -> None:
    assert registry.remote_ref("localhost/forja/server:0.1.0") == (
        f"localhost:{REGISTRY_PORT}/forja/server:0.1.0")
    assert registry.short_ref("localhost/forja/server:0.1.0") == "docker.io/forja/server:0.1.0"
    with pytest.raises(ValueError, match=r"not an image of hack/build-images\.sh"):
        registry.remote_ref("quay.io/forja/server:0.1.0")


def test_both_names_resolve_to_the_registry_on_the_loopback_over_plain_http(
    tmp_path: Path,
) -> None:
    root = registry.hosts_dir(tmp_path / "certs.d")
    loopback = f"http://127.0.0.1:{REGISTRY_PORT}"
    for host in (registry.NAME, "docker.io"):
        doc = tomllib.loads((root / host / "hosts.toml").read_text())
        assert doc["host"] == {loopback: {"capabilities": ["pull", "resolve"]}}
    # Anything the registry lacks goes upstream, as a mirror's miss does.
    docker = tomllib.loads((root / "docker.io" / "hosts.toml").read_text())
    assert docker["server"] == "https://registry-1.docker.io"


def test_each_nodes_containerd_pulls_through_its_hosts_directory(tmp_path: Path) -> None:
    node = nodes.NodeSpec(0, tmp_path)
    cri = tomllib.loads(nodes._containerd_toml(node))["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"]["config_path"] == str(node.dir / "certs.d")
    assert cri["sandbox_image"] == registry.remote_ref(nodes.PAUSE_IMAGE)
    # The kubelet's own pulls keep no compressed copy of what they unpacked.
    assert cri["containerd"]["discard_unpacked_layers"] is True


def test_an_image_never_built_is_named_with_the_command_that_builds_it() -> None:
    # An ImageError is a ClusterError: the CLI prints it, not a traceback.
    with pytest.raises(ImageError, match=r"never-built:0 is not built: run bash hack/build-"):
        nodes.load_image([], "localhost/forja/never-built:0", print)
