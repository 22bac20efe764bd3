"""Prints how long the local cluster takes: ``python -m forja_localcluster.bench [--cold]``.

Figures: start when already running (reuse), a restart of stopped components over
kept state (warm), optionally a start from nothing (``--cold``: stops the cluster and
deletes its state first), and the latency from creating a pod to its completion on a
real node (a container of the server image, which ``start`` imports into every node).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
import uuid

from forja_localcluster.config import CHECKOUT, ClusterConfig, ClusterInfo
from forja_localcluster.control_plane import image_ref
from forja_localcluster.errors import NotFoundError
from forja_localcluster.kubeapi import KubeClient

__all__ = ["main"]


def _cli(*args: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT / "hack")}
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "forja_localcluster", *args], check=True, env=env,
                   capture_output=True)
    return time.monotonic() - t0


def _pod_latency(client: KubeClient) -> tuple[float, float]:
    """Seconds from create to Running and to Succeeded for a one-line Python pod."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    path = "/api/v1/namespaces/default/pods"
    t0 = time.monotonic()
    client.create(path, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "c", "image": image_ref("server").removeprefix("localhost/"),
            "command": ["python", "-c", "import time; time.sleep(1)"]}]},
    })
    running = done = 0.0
    while time.monotonic() - t0 < 120:
        phase = client.get(f"{path}/{name}").get("status", {}).get("phase")
        if phase == "Running" and not running:
            running = time.monotonic() - t0
        if phase in ("Succeeded", "Failed"):
            done = time.monotonic() - t0
            break
        time.sleep(0.05)
    with contextlib.suppress(NotFoundError):
        client.delete(f"{path}/{name}")
    return running, done


def main() -> int:
    parser = argparse.ArgumentParser(prog="forja_localcluster.bench")
    parser.add_argument("--cold", action="store_true",
                        help="also measure a start from nothing (DELETES the cluster state)")
    args = parser.parse_args()
    config = ClusterConfig()
    if args.cold:
        _cli("stop", "--purge")
        print(f"cold start (no state, certificates made): {_cli('start'):6.1f} s")
    else:
        _cli("start")
    print(f"reuse (start while running):              {_cli('start'):6.1f} s")
    stop = _cli("stop")
    print(f"stop:                                     {stop:6.1f} s")
    print(f"warm start (state kept):                  {_cli('start'):6.1f} s")
    info = ClusterInfo.load(config.info_file)
    client = KubeClient.for_pki(config.pki, "admin")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # a fresh cluster makes `default` SA in a moment
        try:
            client.get("/api/v1/namespaces/default/serviceaccounts/default")
            break
        except NotFoundError:
            time.sleep(0.2)
    print(f"node {info.nodes[0]} Ready; pods:")
    for _ in range(3):
        running, done = _pod_latency(client)
        print(f"pod create -> Running {running:5.2f} s, -> Succeeded (1 s sleep) {done:5.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
