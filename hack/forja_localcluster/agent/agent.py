"""The node agent process: one :class:`NodeAgent` per Node, a heartbeat, the log server
and (when enabled) the Service proxy.

``python -m forja_localcluster.agent --state-dir DIR [--nodes N] [--gpus G]``
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from forja_localcluster import netaddr
from forja_localcluster.agent import node as node_api
from forja_localcluster.agent.logserver import serve_logs
from forja_localcluster.agent.pod_worker import NodeContext, PodWorker
from forja_localcluster.agent.proxy import ServiceProxy
from forja_localcluster.agent.runtime import cleanup_cgroups, ensure_cgroup_mounts
from forja_localcluster.agent.volumes import claim_host_path
from forja_localcluster.config import (
    API_PORT,
    PACKAGE_DIRS,
    POD_CIDR_PREFIX,
    ClusterConfig,
)
from forja_localcluster.errors import ApiError, ClusterError
from forja_localcluster.hostsfile import cluster_hosts_file, ensure_hosts_file, update_hosts
from forja_localcluster.kubeapi import KubeClient

__all__ = ["NodeAgent", "main"]

JSON = dict[str, Any]
log = logging.getLogger("forja.agent")
HEARTBEAT_SECONDS = 10.0
STATUS_EVERY = 6  # heartbeats between Ready-condition refreshes


class LogRegistry:
    """Which file holds the current (and previous) log of each container."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str, str], list[Path]] = {}

    def register(self, namespace: str, pod: str, container: str, path: Path) -> None:
        with self._lock:
            files = self._files.setdefault((namespace, pod, container), [])
            files.append(path)
            del files[:-2]

    def files(self, namespace: str, pod: str, container: str) -> list[Path]:
        with self._lock:
            return list(self._files.get((namespace, pod, container), []))


class NodeAgent:
    """Runs the pods bound to one Node."""

    def __init__(self, client: KubeClient, index: int, config: ClusterConfig,
                 base_env: dict[str, str], logs: LogRegistry, *,
                 hosts_file: Path | None) -> None:
        self.client = client
        self.name = f"forja-node-{index}"
        self.host_ip = f"{POD_CIDR_PREFIX}.{index}.1"
        self.prefix = f"{POD_CIDR_PREFIX}.{index}"
        self.config = config
        self.workers: dict[str, PodWorker] = {}
        # Pods whose worker is done (deleted for good): late watch events for them
        # must not start a new worker.
        self.finished: set[str] = set()
        self.ips: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ctx = NodeContext(
            client=client, node_name=self.name, host_ip=self.host_ip,
            pods_dir=config.pods_dir, base_env=base_env,
            allocate_ip=self.allocate_ip, release_ip=self.release_ip,
            claim_path=lambda ns, claim: claim_host_path(client, config, ns, claim),
            register_logs=logs.register, forget=self.forget, hosts_file=hosts_file,
        )

    # --- addresses -------------------------------------------------------------------
    def allocate_ip(self, uid: str) -> str:
        with self.lock:
            if uid in self.ips:
                return self.ips[uid]
            used = set(self.ips.values())
            for host in range(2, 255):
                ip = f"{self.prefix}.{host}"
                if ip not in used:
                    self.ips[uid] = ip
                    break
            else:
                raise ClusterError(f"node {self.name}: no free pod address")
        netaddr.ensure_address(ip)
        return ip

    def release_ip(self, uid: str) -> None:
        with self.lock:
            ip = self.ips.pop(uid, None)
        if ip:
            netaddr.remove_address(ip)

    def forget(self, uid: str) -> None:
        with self.lock:
            if self.workers.pop(uid, None) is not None and not self.stopping.is_set():
                self.finished.add(uid)
        self.release_ip(uid)

    # --- pods ------------------------------------------------------------------------
    def handle(self, kind: str, pod: JSON) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker is not None:
                    worker.deleted()
                return
            if worker is None:
                if self.stopping.is_set() or uid in self.finished:
                    return
                worker = PodWorker(self.ctx, pod)
                self.workers[uid] = worker
                worker.start()
                return
        worker.update(pod)

    def watch_pods(self) -> None:
        path = "/api/v1/pods"
        selector = f"spec.nodeName={self.name}"
        while not self.stopping.is_set():
            try:
                listing = self.client.get(path, fieldSelector=selector)
                seen = set()
                for pod in listing.get("items", []):
                    seen.add(pod["metadata"]["uid"])
                    self.handle("ADDED", pod)
                with self.lock:
                    vanished = [w for uid, w in self.workers.items() if uid not in seen]
                for worker in vanished:
                    worker.deleted()
                version = listing["metadata"]["resourceVersion"]
                for event in self.client.watch(path, fieldSelector=selector,
                                               resourceVersion=version,
                                               allowWatchBookmarks="true"):
                    if self.stopping.is_set():
                        return
                    kind, obj = event["type"], event["object"]
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        self.handle(kind, obj)
                    elif kind == "ERROR":
                        break
            except (OSError, ApiError, ValueError) as exc:
                if not self.stopping.is_set():
                    log.warning("pod watch on %s: %s; re-listing", self.name, exc)
                    time.sleep(1.0)

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.shutdown()
        for worker in workers:
            worker.join(timeout=15)


def base_env(venv_bin: Path, checkout: Path) -> dict[str, str]:
    """What every container's environment starts from (its spec's env comes on top)."""
    return {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        # What a Python image's ENV usually sets; images are not run here, so we do.
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": ":".join(str(checkout / d) for d in PACKAGE_DIRS),
        # The API server itself, not the `kubernetes` ClusterIP: always reachable.
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(API_PORT),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(API_PORT),
        "KUBERNETES_PORT": f"tcp://127.0.0.1:{API_PORT}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forja_localcluster.agent")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--venv-bin", type=Path, required=True)
    parser.add_argument("--checkout", type=Path, required=True)
    parser.add_argument("--no-proxy", action="store_true", help="do not serve Service IPs")
    parser.add_argument("--no-hosts", action="store_true",
                        help="do not publish Service names in the cluster's hosts file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ClusterConfig(args.state_dir)
    client = KubeClient.for_pki(config.pki, "agent")
    ensure_cgroup_mounts()
    cleanup_cgroups()
    env = base_env(args.venv_bin, args.checkout)
    hosts_file = None if args.no_hosts else cluster_hosts_file()
    if hosts_file is not None:
        ensure_hosts_file(hosts_file)
    logs = LogRegistry()
    nodes = [NodeAgent(client, i, config, env, logs, hosts_file=hosts_file)
             for i in range(args.nodes)]
    for n in nodes:
        netaddr.ensure_address(n.host_ip)
        node_api.register(client, n.name, n.host_ip, args.gpus, config.state_dir)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=n.watch_pods, daemon=True, name=f"watch-{n.name}")
               for n in nodes]
    try:
        serve_logs(config, [n.host_ip for n in nodes], logs)
    except OSError as exc:
        log.warning("log server not started: %s", exc)
    if not args.no_proxy:
        proxy = ServiceProxy(client, None if args.no_proxy else hosts_file)
        threads.append(threading.Thread(target=proxy.run, args=(stop,), daemon=True,
                                        name="proxy"))
    for t in threads:
        t.start()
    beats = 0
    while not stop.is_set():
        for n in nodes:
            try:
                node_api.heartbeat(client, n.name, update_status=beats % STATUS_EVERY == 0)
            except (OSError, ClusterError) as exc:
                log.warning("heartbeat of %s: %s", n.name, exc)
        beats += 1
        stop.wait(HEARTBEAT_SECONDS)
    log.info("stopping: ending pods")
    stop.set()
    for n in nodes:
        n.shutdown()
    cleanup_cgroups()
    if hosts_file is not None and not args.no_proxy:
        update_hosts(None, hosts_file)
    return 0
