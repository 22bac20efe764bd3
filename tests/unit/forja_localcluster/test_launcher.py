import sys

from forja_localcluster.launcher import _covered, _paths_to_keep


def test_the_code_a_container_runs_stays_reachable_under_a_volume(tmp_path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "operator").mkdir(parents=True)
    (checkout / "tests").mkdir()
    script = checkout / "tests" / "server.py"
    script.write_text("")
    spec = {"env": {"PYTHONPATH": f"{checkout / 'operator'}:relative"},
            "argv": ["python", str(script), "--port", "80"]}
    keep = _paths_to_keep(spec)
    assert str(checkout / "operator") in keep
    assert str(checkout / "tests") in keep
    assert sys.prefix in keep
    assert "relative" not in keep
    # An emptyDir at the checkout's parent covers it; one beside it does not.
    assert _covered(str(checkout / "operator"), [str(tmp_path)])
    assert not _covered(str(checkout / "operator"), [str(checkout / "operator"), "/data"])
