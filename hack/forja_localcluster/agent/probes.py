"""httpGet, tcpSocket and exec probes, and the success/failure thresholds around them."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ProbeState", "run_probe"]

JSON = dict[str, Any]


def _port(value: int | str, container: JSON) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports", []) or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe port {value!r} is not a named port of the container")


def run_probe(probe: JSON, container: JSON, pod_ip: str, pid: int, env: dict[str, str]) -> bool:
    """One probe attempt; True on success."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            host = get.get("host") or pod_ip
            port = _port(get["port"], container)
            conn: http.client.HTTPConnection
            if get.get("scheme", "HTTP").upper() == "HTTPS":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
            else:
                conn = http.client.HTTPConnection(host, port, timeout=timeout)
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders", []) or []}
            headers.setdefault("User-Agent", "kube-probe/1.37")
            try:
                conn.request("GET", get.get("path", "/") or "/", headers=headers)
                response = conn.getresponse()
                response.read(65536)
                return 200 <= response.status < 400
            finally:
                conn.close()
        if "tcpSocket" in probe:
            sock = probe["tcpSocket"]
            host = sock.get("host") or pod_ip
            with socket.create_connection((host, _port(sock["port"], container)), timeout=timeout):
                return True
        if "exec" in probe:
            # Run in the container's mount namespace, with its environment.
            result = subprocess.run(
                ["nsenter", "-t", str(pid), "-m", "--", *probe["exec"]["command"]],
                env=env, capture_output=True, timeout=timeout, check=False,
            )
            return result.returncode == 0
        if "grpc" in probe:
            return False
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired, ValueError):
        return False
    return False


@dataclass
class ProbeState:
    """Thresholds around one probe; ``result`` is what the kubelet reports."""

    spec: JSON
    initial: bool
    result: bool = field(init=False)
    successes: int = 0
    failures: int = 0
    next_due: float = 0.0

    def __post_init__(self) -> None:
        self.result = self.initial

    def start(self, now: float) -> None:
        self.next_due = now + float(self.spec.get("initialDelaySeconds", 0))
        self.successes = self.failures = 0
        self.result = self.initial

    def due(self, now: float) -> bool:
        return now >= self.next_due

    @property
    def exhausted(self) -> bool:
        """failureThreshold consecutive failures: for a startup probe, time to kill."""
        return self.failures >= int(self.spec.get("failureThreshold", 3))

    def record(self, ok: bool, now: float) -> bool:
        """Count one attempt; returns the (possibly changed) result."""
        self.next_due = now + float(self.spec.get("periodSeconds", 10))
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= int(self.spec.get("successThreshold", 1)):
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= int(self.spec.get("failureThreshold", 3)):
                self.result = False
        return self.result


def monotonic() -> float:
    return time.monotonic()
