"""A userspace Service proxy: there is no kube-proxy, so the agent listens on each
Service's ClusterIP:port (the address added to ``lo``) and forwards each TCP
connection to one of the Service's ready endpoints from its EndpointSlices,
round-robin. That makes Service URLs and replica-ratio canaries real on this
machine. NodePorts, UDP, session affinity and traffic policies are not implemented.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forja_localcluster import netaddr
from forja_localcluster.errors import ApiError
from forja_localcluster.hostsfile import hosts_block, update_hosts
from forja_localcluster.kubeapi import KubeClient

__all__ = ["ServiceProxy", "backends_by_port"]

JSON = dict[str, Any]
log = logging.getLogger("forja.agent.proxy")
SYNC_SECONDS = 1.0
Key = tuple[str, int]  # (cluster IP, port)


def backends_by_port(service: JSON, slices: list[JSON]) -> dict[int, list[tuple[str, int]]]:
    """Service port -> ready (address, target port) pairs from its EndpointSlices."""
    result: dict[int, list[tuple[str, int]]] = {}
    for port in service["spec"].get("ports", []) or []:
        if port.get("protocol", "TCP") != "TCP":
            continue
        name = port.get("name") or ""
        backends: list[tuple[str, int]] = []
        for endpoint_slice in slices:
            numbers = [p.get("port") for p in endpoint_slice.get("ports") or []
                       if (p.get("name") or "") == name and p.get("port")]
            if not numbers:
                continue
            for endpoint in endpoint_slice.get("endpoints") or []:
                if endpoint.get("conditions", {}).get("ready", True) is False:
                    continue
                backends.extend((address, int(numbers[0])) for address in endpoint["addresses"])
        result[int(port["port"])] = sorted(backends)
    return result


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@dataclass
class Listener:
    key: Key
    backends: list[tuple[str, int]] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def serve(self, server: socket.socket) -> None:
        server.settimeout(0.5)
        with server:
            while not self.stopped.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, conn: socket.socket) -> None:
        backends = list(self.backends)
        if not backends:
            conn.close()  # no ready endpoint: refuse, as kube-proxy's REJECT does
            return
        start = next(self.counter)
        for i in range(len(backends)):
            target = backends[(start + i) % len(backends)]
            try:
                upstream = socket.create_connection(target, timeout=5)
                break
            except OSError:
                continue
        else:
            conn.close()
            return
        upstream.settimeout(None)
        with conn, upstream:
            back = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
            back.start()
            _pipe(conn, upstream)
            back.join()


class ServiceProxy:
    def __init__(self, client: KubeClient, hosts_file: Path | None) -> None:
        self.client = client
        self.hosts_file = hosts_file
        self.listeners: dict[Key, Listener] = {}

    def sync(self) -> None:
        services = self.client.get("/api/v1/services")["items"]
        slices = self.client.get("/apis/discovery.k8s.io/v1/endpointslices")["items"]
        by_service: dict[tuple[str, str], list[JSON]] = {}
        for s in slices:
            name = s["metadata"].get("labels", {}).get("kubernetes.io/service-name")
            if name:
                by_service.setdefault((s["metadata"]["namespace"], name), []).append(s)
        wanted: dict[Key, list[tuple[str, int]]] = {}
        for svc in services:
            ip = svc["spec"].get("clusterIP")
            if not ip or ip == "None":
                continue
            key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
            for port, backends in backends_by_port(svc, by_service.get(key, [])).items():
                wanted[(ip, port)] = backends
        for key, backends in wanted.items():
            listener = self.listeners.get(key)
            if listener is None:
                netaddr.ensure_address(key[0])
                listener = Listener(key)
                try:
                    server = socket.create_server(key)
                except OSError as exc:
                    log.warning("cannot listen on %s:%s: %s", *key, exc)
                    continue
                threading.Thread(target=listener.serve, args=(server,), daemon=True,
                                 name=f"svc-{key[0]}:{key[1]}").start()
                self.listeners[key] = listener
            listener.backends = backends
        if self.hosts_file is not None:
            update_hosts(hosts_block(services), self.hosts_file)
        for key in set(self.listeners) - set(wanted):
            self.listeners.pop(key).stopped.set()
            if not any(k[0] == key[0] for k in self.listeners):
                netaddr.remove_address(key[0])

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sync()
            except (OSError, ApiError, KeyError) as exc:
                log.warning("service proxy: %s", exc)
            stop.wait(SYNC_SECONDS)
        for listener in self.listeners.values():
            listener.stopped.set()
        if self.hosts_file is not None:
            update_hosts(None, self.hosts_file)
