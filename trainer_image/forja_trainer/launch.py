"""One trainer process per GPU in one pod, as torchrun's ``--nproc-per-node`` starts them.

A pod with ``resources.gpus: G > 1`` gets torchrun's node-level env from the operator
(``GROUP_RANK``: the pod's rank; ``LOCAL_WORLD_SIZE``: G; ``WORLD_SIZE``: workers x G;
``MASTER_ADDR``/``MASTER_PORT`` as for one process per pod). ``python -m forja_trainer``
then starts G copies of itself, process ``i`` with ``LOCAL_RANK=i`` and
``RANK=GROUP_RANK*G+i``; each joins torch.distributed's env:// rendezvous on its own
GPU (``cuda:LOCAL_RANK``, NCCL; gloo on the CPU) exactly as a one-process pod does.

Why not torchrun itself: the pod contract is one process's. The operator reads one
Result from the termination message and the trainer's own exit code (75 retryable,
3 invalid dataset...); torchrun reports any child's failure as exit 1 and G processes
would race on one termination file. Here each process writes its own Result and the
launcher hands on exactly one, with that process's exit code: the first to fail, or
local rank 0's when all succeed (global rank 0's carries the artifact).

When one process fails the others are stopped (SIGTERM: they checkpoint if they can,
then SIGKILL after :data:`STOP_GRACE_SECONDS`, since a rank blocked in a collective
never sees the signal) so the pod ends and the operator restarts the whole attempt.
A SIGTERM to the pod is passed to every process; then the launcher waits for all of
them (the pod's grace period bounds it) and hands on local rank 0's Result, which
names the checkpoint global rank 0 wrote on the signal.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from forja_api.contract import (
    GROUP_RANK_ENV,
    LOCAL_RANK_ENV,
    LOCAL_WORLD_SIZE_ENV,
    RANK_ENV,
    TERMINATION_PATH_ENV,
    termination_path,
)
from forja_trainer.errors import InvalidConfig

__all__ = ["LAUNCHED_ENV", "LocalWorld", "child_env", "launch", "local_world"]

log = logging.getLogger(__name__)

LAUNCHED_ENV = "FORJA_LAUNCHED"
"""Set on the processes the launcher starts: they train, they do not launch again."""
STOP_GRACE_SECONDS = 30.0
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class LocalWorld:
    """The processes of this pod: ``nproc`` of them, the pod being ``group_rank``."""

    nproc: int
    group_rank: int = 0


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or ""
    if not raw:
        return default
    if not raw.isdigit():
        raise InvalidConfig(f"{name}={raw!r} is not a non-negative integer", field=name)
    return int(raw)


def local_world(env: Mapping[str, str] | None = None) -> LocalWorld | None:
    """The pod's processes to start, or None when this process is the trainer itself."""
    env = os.environ if env is None else env
    if env.get(LAUNCHED_ENV):
        return None
    nproc = _int(env, LOCAL_WORLD_SIZE_ENV, 1)
    if nproc <= 1:
        return None
    return LocalWorld(nproc=nproc, group_rank=_int(env, GROUP_RANK_ENV, 0))


def child_env(
    env: Mapping[str, str], world: LocalWorld, local_rank: int, result_path: Path
) -> dict[str, str]:
    """Process ``local_rank``'s env: torchrun's per-process names, its own Result file and
    (when the pod sets one) its own work directory."""
    out = dict(env)
    out.update(
        {
            LAUNCHED_ENV: "1",
            LOCAL_RANK_ENV: str(local_rank),
            RANK_ENV: str(world.group_rank * world.nproc + local_rank),
            TERMINATION_PATH_ENV: str(result_path),
        }
    )
    workdir = env.get("FORJA_WORKDIR")
    if workdir:
        out["FORJA_WORKDIR"] = str(Path(workdir) / f"local-{local_rank}")
    return out


def _exit_code(returncode: int) -> int:
    """A process killed by signal N exits 128+N, as a shell (and the kubelet) says."""
    return 128 - returncode if returncode < 0 else returncode


def _stop(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch(world: LocalWorld, *, grace: float = STOP_GRACE_SECONDS) -> int:
    """Run the pod's ``world.nproc`` trainer processes; one Result and exit code out."""
    final = termination_path()
    results = Path(tempfile.mkdtemp(prefix="forja-results-"))
    paths = [results / f"{i}.json" for i in range(world.nproc)]
    log.info(
        "starting %d trainer processes (ranks %d..%d)",
        world.nproc,
        world.group_rank * world.nproc,
        world.group_rank * world.nproc + world.nproc - 1,
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "forja_trainer"],
            env=child_env(os.environ, world, i, paths[i]),
        )
        for i in range(world.nproc)
    ]

    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        spokesman = 0
        while True:
            codes = [p.poll() for p in procs]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if stopping:
                # Told to stop (suspend, preemption): every process checkpoints or ends
                # on its own; local rank 0's Result names the checkpoint it wrote.
                if all(code is not None for code in codes):
                    break
            elif failed:
                spokesman = failed[0]
                log.error(
                    "process %d (local rank) exited %d; stopping the others",
                    spokesman,
                    _exit_code(codes[spokesman] or 0),
                )
                _stop(procs, grace)
                break
            if all(code == 0 for code in codes):
                break
            time.sleep(POLL_SECONDS)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    code = _exit_code(procs[spokesman].returncode)
    if paths[spokesman].is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        final.write_bytes(paths[spokesman].read_bytes())
    return code
