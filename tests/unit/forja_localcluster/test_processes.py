"""running_pid: alive and still the program started, including mid-exec."""

import os
from pathlib import Path

from forja_localcluster import processes
from forja_localcluster.config import ClusterConfig


def _config(tmp_path, monkeypatch, pid: int, exe: str) -> ClusterConfig:
    monkeypatch.setenv("FORJA_CLUSTER_DIR", str(tmp_path))
    config = ClusterConfig()
    config.pids.mkdir(parents=True)
    (config.pids / "thing.pid").write_text(f"{pid}\n{exe}\n")
    return config


def test_the_program_started_is_running(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, os.getpid(), "python")
    assert processes.running_pid(config, "thing") == os.getpid()


def test_another_program_under_the_pid_is_not_ours(tmp_path, monkeypatch):
    config = _config(tmp_path, monkeypatch, os.getpid(), "containerd")
    assert processes.running_pid(config, "thing") is None


def test_a_process_in_the_middle_of_exec_is_alive(tmp_path, monkeypatch):
    """/proc/<pid>/cmdline reads empty while the wrapper (nsenter) execs the program."""
    config = _config(tmp_path, monkeypatch, os.getpid(), "containerd")
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes",
                        lambda self: b"" if self.name == "cmdline" else real(self))
    assert processes.running_pid(config, "thing") == os.getpid()
