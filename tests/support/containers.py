"""Running forja's built images under a real OCI runtime (podman over runc).

Every container runs as its image's own numeric user with the restrictions a
restricted-profile pod has: a read-only root with only /tmp writable (the emptyDir
the chart and the operator mount), every capability dropped, no privilege
escalation, the runtime's default seccomp profile. ``--network host`` joins the
caller's network namespace: the tests run inside the local cluster's
(hack/netns.sh), so a container reaches the API server and MinIO as a pod does.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE_NAMES = ("operator", "server", "trainer", "trainer-tf")

__all__ = ["IMAGE_NAMES", "Container", "image_ref", "image_user", "podman", "run_args"]


def app_version() -> str:
    return str(yaml.safe_load((ROOT / "helm/forja/Chart.yaml").read_text())["appVersion"])


def image_ref(name: str) -> str:
    """The tag hack/build-images.sh gives ``name``."""
    return f"localhost/forja/{name}:{app_version()}"


def podman(*args: str, timeout: float = 120, check: bool = True,
           input: str | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("podman")
    assert exe, "podman is missing: `apt-get install podman` (hack/build-images.sh does)"
    result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout,
                            check=False, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
                             f"{result.stderr[-3000:]}")
    return result


def image_user(ref: str) -> str:
    found = podman("image", "inspect", ref, check=False)
    assert found.returncode == 0, f"{ref} is not built: run `bash hack/build-images.sh`"
    return str(json.loads(found.stdout)[0]["Config"].get("User") or "")


def run_args(*, env: Mapping[str, str] | None = None,
             mounts: Sequence[tuple[Path, str, str]] = (), name: str | None = None,
             entrypoint: str | None = None) -> list[str]:
    """``podman run`` flags for a restricted, read-only container (see the module doc)."""
    # podman's default ulimits exceed this machine's hard limits, which runc may not
    # raise ("error setting rlimit type 7"): ask for what the caller has, and a process
    # cap of the order a kubelet's pod gets.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    args = ["run", "--runtime", "runc", "--network", "host",
            "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777",
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]
    if name:
        args += ["--name", name]
    if entrypoint is not None:
        args += ["--entrypoint", entrypoint]
    for key, value in (env or {}).items():
        args += ["--env", f"{key}={value}"]
    for host, target, mode in mounts:
        args += ["--volume", f"{host}:{target}:{mode}"]
    return args


@dataclass
class Container:
    """A detached container, removed on exit from the ``with`` block."""

    name: str

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return state.stdout.strip() == "true"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        podman("rm", "--force", "--time", "5", self.name, check=False, timeout=60)
