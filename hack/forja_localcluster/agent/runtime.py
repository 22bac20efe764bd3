"""One container as a local process: mount namespace, cgroups, logs, signals, exit.

The process is ``unshare -m --propagation private python launcher.py spec.json``;
the launcher makes the bind mounts, joins the container's memory (and cpu) cgroup and
execs the command, so the pid we hold is the container's main process and every
process it forks stays in its cgroup (which is how we find and kill them all).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from forja_localcluster.agent.podspec import Mount
from forja_localcluster.config import MACHINE_NAME

__all__ = [
    "CGROUP_ROOT",
    "ContainerProcess",
    "ExitInfo",
    "cleanup_cgroups",
    "ensure_cgroup_mounts",
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
LAUNCHER = Path(__file__).resolve().parents[1] / "launcher.py"
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int
    reason: str
    oom_killed: bool


CONTROLLERS = ("memory", "cpu")


def ensure_cgroup_mounts() -> None:
    """Make the v1 memory and cpu hierarchies visible at /sys/fs/cgroup/<controller>.

    ``ip netns exec`` (hack/netns.sh) mounts a fresh sysfs without the cgroup
    mounts; mounting a v1 controller again attaches the machine's same hierarchy,
    so limits and OOM accounting are the real ones. Only this mount namespace (the
    agent's, inherited by its containers) sees these mounts.
    """
    for controller in CONTROLLERS:
        target = CGROUP_ROOT / controller
        if (target / "cgroup.procs").exists():
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:
            # sysfs's empty /sys/fs/cgroup takes no directories: put a tmpfs there.
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "cgroup_root",
                            str(CGROUP_ROOT)], check=True, capture_output=True)
            target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "cgroup", "-o", controller, "cgroup", str(target)],
                       check=True, capture_output=True)


def _cgroup_dirs(key: str) -> dict[str, Path]:
    return {c: CGROUP_ROOT / c / MACHINE_NAME / key for c in CONTROLLERS}


def _cgroup_pids(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def cleanup_cgroups(key_prefix: str = "") -> None:
    """Kill what is left in our cgroups under ``forja/<key_prefix>`` and remove them."""
    for controller in CONTROLLERS:
        root = CGROUP_ROOT / controller / MACHINE_NAME
        if not root.is_dir():
            continue
        for path in sorted(root.glob(f"{key_prefix}*"), reverse=True):
            if not path.is_dir():
                continue
            for child in sorted(path.rglob("*"), key=lambda p: -len(p.parts)):
                if child.is_dir():
                    _kill_and_remove(child)
            _kill_and_remove(path)


def _kill_and_remove(path: Path) -> None:
    for pid in _cgroup_pids(path):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.05)


class ContainerProcess:
    """A started container; ``poll`` tells whether it exited and how."""

    def __init__(
        self,
        *,
        key: str,
        argv: list[str],
        env: dict[str, str],
        mounts: list[Mount],
        cwd: Path,
        log_file: Path,
        termination_file: Path,
        memory_limit: int | None,
        cpu_limit: Decimal | None,
    ) -> None:
        self.key = key
        self.cgroups = _cgroup_dirs(key)
        for path in self.cgroups.values():
            if path.exists():
                _kill_and_remove(path)
            path.mkdir(parents=True)
        memory = self.cgroups["memory"]
        if memory_limit is not None:
            (memory / "memory.limit_in_bytes").write_text(str(memory_limit))
        if cpu_limit is not None:
            quota = max(1000, int(cpu_limit * CFS_PERIOD_US))
            (self.cgroups["cpu"] / "cpu.cfs_quota_us").write_text(str(quota))
        spec = {
            "mounts": [
                {"source": m.source, "target": m.target, "read_only": m.read_only}
                for m in mounts
            ],
            "cgroups": [str(p) for p in self.cgroups.values()],
            "cwd": str(cwd),
            "argv": argv,
            "env": env,
            "termination_message_file": str(termination_file),
        }
        spec_file = log_file.with_suffix(".spec.json")
        spec_file.write_text(json.dumps(spec))
        spec_file.chmod(0o600)
        self.started_at = time.time()
        self._log = open(log_file, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", sys.executable, str(LAUNCHER),
             str(spec_file)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        self.pid = self.proc.pid
        self._exit: ExitInfo | None = None

    def poll(self) -> ExitInfo | None:
        """None while running; the exit once the main process has ended."""
        if self._exit is not None:
            return self._exit
        code = self.proc.poll()
        if code is None:
            return None
        # Children of the main process die with it, as they do in a container.
        for path in self.cgroups.values():
            for pid in _cgroup_pids(path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        oom = self._oom_killed()
        exit_code = 128 - code if code < 0 else code
        if oom:
            exit_code = 137
        reason = "OOMKilled" if oom else ("Completed" if exit_code == 0 else "Error")
        self._exit = ExitInfo(exit_code, reason, oom)
        self._log.close()
        for path in self.cgroups.values():
            _kill_and_remove(path)
        return self._exit

    def _oom_killed(self) -> bool:
        try:
            text = (self.cgroups["memory"] / "memory.oom_control").read_text()
        except OSError:
            return False
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and int(value) > 0:
                return True
        return False

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the container's main process (as the runtime does)."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill_all(self) -> None:
        """SIGKILL every process of the container."""
        self.signal(signal.SIGKILL)
        for path in self.cgroups.values():
            for pid in _cgroup_pids(path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def wait(self, timeout: float) -> ExitInfo | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.poll()
            if info is not None:
                return info
            time.sleep(0.05)
        return self.poll()
