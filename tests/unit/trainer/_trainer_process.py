"""``python -m forja_trainer`` as a pod runs it: the rendered spec in its env, its own
work dir and termination message under ``tmp``, stderr in ``<name>.log``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
# Set by a pod (or a torchrun around the tests); only what a test passes counts.
_POD_ONLY = (
    "FORJA_POD_NAME", "WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
    "LOCAL_WORLD_SIZE", "FORJA_LAUNCHED",
)


def start_trainer(spec: str, tmp: Path, name: str, **env_extra: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    for key in _POD_ONLY:
        env.pop(key, None)
    env.update(
        FORJA_SPEC=spec,
        FORJA_TORCH_THREADS="1",
        FORJA_TERMINATION_MESSAGE_PATH=str(tmp / f"{name}.result"),
        FORJA_WORKDIR=str(tmp / f"{name}-work"),
        PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("operator", "trainer_image")),
        **env_extra,
    )
    with (tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "forja_trainer"], env=env, stdout=subprocess.DEVNULL, stderr=log
        )


def free_port() -> int:
    """A TCP port free on loopback now: MASTER_PORT of a test's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
