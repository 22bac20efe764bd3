"""running_pid: alive and still the program started, including mid-exec; stopping
a process that ignores SIGTERM."""

import os
import subprocess
import sys
import time
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


def test_stop_pid_file_kills_what_ignores_sigterm_after_the_grace(tmp_path):
    stubborn = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == "ready\n"
    pid_file = tmp_path / "addon.pid"
    pid_file.write_text(f"{stubborn.pid}\n")
    start = time.monotonic()
    assert processes.stop_pid_file(pid_file, grace=0.5) is True
    # It outlived the SIGTERM for the whole grace, then was killed (and reaped by
    # stop_pid_file: it is our child here).
    assert 0.5 <= time.monotonic() - start < 5
    assert not Path(f"/proc/{stubborn.pid}").exists()
    stubborn.stdout.close()
    stubborn.wait(5)  # Popen's own bookkeeping: the exit status went to that reap
    assert not pid_file.exists()
    assert processes.stop_pid_file(pid_file) is False  # nothing left to stop
