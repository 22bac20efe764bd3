"""Detached component processes with pid files and logs in the state directory.

Each component runs in its own session so it survives the command that started it
(and a terminal's SIGHUP); its pid file records the pid and the executable so a
reused pid is never mistaken for the component.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from forja_localcluster.config import ClusterConfig

__all__ = ["alive_pid", "running_pid", "spawn", "stop"]


def _pid_file(config: ClusterConfig, name: str) -> Path:
    return config.pids / f"{name}.pid"


def log_path(config: ClusterConfig, name: str) -> Path:
    return config.logs / f"{name}.log"


def running_pid(config: ClusterConfig, name: str) -> int | None:
    """The component's pid if it is alive and still the program we started."""
    try:
        pid_text, _, exe = _pid_file(config, name).read_text().partition("\n")
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # An empty cmdline is a process in the middle of execve (the wrapper becoming the
    # program): alive. Read as "another program", it failed a CI start at random with
    # "containerd-forja-node-0: exited before serving" while containerd ran.
    if not _lives(pid) or (cmdline and exe.strip().encode() not in cmdline):
        return None
    return pid


def alive_pid(pid_file: Path) -> int | None:
    """The pid a pid file names (first line), if that process lives."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _lives(pid) else None


def _lives(pid: int) -> bool:
    """Running and no zombie (a child of ours that exited stays one until reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def spawn(
    config: ClusterConfig,
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    *,
    wrapper: Sequence[str] = (),
) -> int:
    """Start ``argv`` detached, logging to ``logs/<name>.log``; returns its pid.

    ``wrapper`` (e.g. ``nsenter ... --``) execs into ``argv``: the pid file names
    ``argv[0]``, which is what the process is once it runs.
    """
    config.logs.mkdir(parents=True, exist_ok=True)
    config.pids.mkdir(parents=True, exist_ok=True)
    with open(log_path(config, name), "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [*wrapper, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _pid_file(config, name).write_text(f"{proc.pid}\n{argv[0]}\n")
    # /proc/<pid>/cmdline can show the forking parent for a moment after Popen returns
    # (seen under gVisor); wait for the exec so running_pid() is right from here on.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and proc.poll() is None:
        if running_pid(config, name) == proc.pid:
            break
        time.sleep(0.02)
    return proc.pid


def stop(config: ClusterConfig, name: str, grace: float = 10.0) -> bool:
    """SIGTERM the component, SIGKILL after ``grace`` seconds; True if it was running."""
    pid = running_pid(config, name)
    if pid is not None:
        terminate(pid, lambda: running_pid(config, name), grace)
    _pid_file(config, name).unlink(missing_ok=True)
    return pid is not None


def stop_pid_file(pid_file: Path, grace: float = 10.0) -> bool:
    """``stop`` for a process whose pid file lives outside the cluster's pid dir (the
    add-ons': Kueue, Argo CD); True if it was running."""
    pid = alive_pid(pid_file)
    if pid is not None:
        terminate(pid, lambda: alive_pid(pid_file), grace)
    pid_file.unlink(missing_ok=True)
    return pid is not None


def terminate(pid: int, alive: Callable[[], int | None], grace: float) -> None:
    """SIGTERM ``pid``; SIGKILL it if ``alive()`` still finds it after ``grace`` seconds."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if alive() is None:
            return
        _reap(pid)
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    _reap(pid)


def _reap(pid: int) -> None:
    # Only our own children can be reaped; a detached component started by another
    # command is reaped by init.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
