"""The cluster CLI without a cluster: every command that needs one says how to start
it, instead of a traceback."""

import pytest

from forja_localcluster import cli


@pytest.mark.parametrize("argv", [
    ["kill-container", "forja-node-0", "containerd://abc"],
    ["node-down", "forja-node-1"],
    ["load-images", "trainer"],
    ["env"],
    ["s3-secret", "-n", "default"],
])
def test_a_command_without_a_cluster_says_how_to_start_one(argv, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.setenv("FORJA_CLUSTER_DIR", str(tmp_path / "none"))
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "no cluster in" in err and "forja_localcluster start" in err
    assert "Traceback" not in err
