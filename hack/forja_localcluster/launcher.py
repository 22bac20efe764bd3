"""Runs inside a fresh mount namespace (``unshare -m --propagation private``) and
becomes the container's process.

Run as a script, standard library only, so it works whatever PYTHONPATH the pod sets:
    unshare -m --propagation private python launcher.py SPEC.json
SPEC: {"mounts": [{"source", "target", "read_only"}], "cgroups": [dir, ...],
       "cwd": dir, "argv": [...], "env": {...}}
Bind mounts exist only in this namespace; their mount points are created on the host
first (empty directories, or empty files for file mounts such as the termination
message at /dev/termination-log).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import sys
from pathlib import Path

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384

__all__ = ["main"]


def _mount(libc: ctypes.CDLL, source: str, target: str, flags: int) -> None:
    if libc.mount(source.encode(), target.encode(), None, flags, None) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _bind(libc: ctypes.CDLL, source: str, target: str, read_only: bool) -> None:
    src, dst = Path(source), Path(target)
    if src.is_dir():
        dst.mkdir(parents=True, exist_ok=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.touch()
    _mount(libc, source, target, MS_BIND | MS_REC)
    if read_only:
        _mount(libc, source, target, MS_BIND | MS_REMOUNT | MS_RDONLY)


def _paths_to_keep(spec: dict[str, object]) -> list[str]:
    """Host directories the process needs whatever volumes cover them: its PYTHONPATH,
    the folders of absolute paths in its command, and its interpreter's prefix.

    An image brings these inside the container; here they are the host's, so a
    volume mounted above one (an emptyDir at /tmp over a checkout in /tmp/...) would
    hide the code the container runs.
    """
    env = spec.get("env") or {}
    assert isinstance(env, dict)
    argv = spec.get("argv") or []
    assert isinstance(argv, list)
    found = [p for p in str(env.get("PYTHONPATH", "")).split(":") if p]
    for arg in argv:
        if isinstance(arg, str) and arg.startswith("/"):
            path = Path(arg)
            found.append(str(path if path.is_dir() else path.parent))
    found.append(sys.prefix)
    return sorted({p for p in found if os.path.isabs(p) and os.path.isdir(p)})


def _covered(path: str, targets: list[str]) -> bool:
    return any(path.startswith(t.rstrip("/") + "/") for t in targets)


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    try:
        targets = [m["target"] for m in spec["mounts"]]
        # Held open before any mount, so they can be bound back once covered.
        keep = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in _paths_to_keep(spec)
                if _covered(p, targets)}
        for mount in sorted(spec["mounts"], key=lambda m: len(m["target"])):
            _bind(libc, mount["source"], mount["target"], bool(mount.get("read_only")))
        for path, fd in keep.items():
            _bind(libc, f"/proc/self/fd/{fd}", path, False)
            os.close(fd)
        for cgroup in spec.get("cgroups", []):
            Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
        os.chdir(spec["cwd"])
    except OSError as exc:
        print(f"forja launcher: {exc}", file=sys.stderr)
        return 128
    argv = spec["argv"]
    try:
        os.execvpe(argv[0], argv, spec["env"])  # noqa: S606 - exec is the point
    except OSError as exc:
        print(f"forja launcher: exec {argv[0]!r}: {exc}", file=sys.stderr)
        message = spec.get("termination_message_file")
        if message:
            Path(message).write_text(f"exec {argv[0]!r}: {exc}")
        return 127
    return 0  # unreachable: execvpe does not return


if __name__ == "__main__":
    raise SystemExit(main())
