"""State an older checkout made for the removed process-running node agent."""

import json

import pytest

from forja_localcluster import control_plane
from forja_localcluster.config import ClusterConfig, ClusterInfo
from forja_localcluster.errors import ClusterError

OLD_INFO = {
    "state_dir": "/s", "kubeconfig": "kc", "bin_dir": "/b", "api_server": "https://x",
    "s3_endpoint": "http://x", "s3_access_key": "a", "s3_secret_key": "s", "bucket": "b",
    "checkout": "/c", "venv_bin": "/v/bin", "nodes": ["forja-node-0"], "gpus_per_node": 2,
    "node_runtime": "agent",
}


def _config(tmp_path, info: dict[str, object]) -> ClusterConfig:
    config = ClusterConfig(tmp_path)
    config.info_file.write_text(json.dumps(info))
    return config


def test_start_refuses_an_agent_clusters_state_and_names_the_purge(tmp_path):
    with pytest.raises(ClusterError, match="stop --purge"):
        control_plane._refuse_agent_state(_config(tmp_path, OLD_INFO))


def test_a_real_node_clusters_state_is_reused(tmp_path):
    control_plane._refuse_agent_state(_config(tmp_path, {**OLD_INFO, "node_runtime": "kubelet"}))


def test_an_older_cluster_json_still_loads(tmp_path):
    """`env`, `stop` and the fixtures read it; the fields the agent needed are gone."""
    info = ClusterInfo.load(_config(tmp_path, OLD_INFO).info_file)
    assert info.nodes == ["forja-node-0"] and info.s3_endpoint == "http://x"
