"""One acting operator at a time: leader election on a Lease (the kubernetes package's).

Two operators writing at once (an upgrade's overlap, a second replica, a second
install) race on version numbers and children. With leader election on, the process
first wins the Lease ``<leaseName>`` in its own namespace and only then starts kopf;
while it waits it answers /healthz so a standby is not restarted for waiting. If it
ever fails to renew, it exits at once (a half-leader must not keep acting); the
Deployment restarts it as a standby.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from forja_operator.config import LeaderElection

__all__ = ["POD_NAMESPACE_ENV", "POD_NAME_ENV", "wait_for_leadership"]

log = logging.getLogger(__name__)
POD_NAMESPACE_ENV = "FORJA_POD_NAMESPACE"
POD_NAME_ENV = "FORJA_POD_NAME"


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: Any) -> None:  # probes every few seconds: no log lines
        return


def _load_client_config() -> None:
    from kubernetes import config  # noqa: PLC0415 - only when electing

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def _lost_lease() -> None:
    log.error("lost the leader lease: exiting so that only the new leader acts")
    logging.shutdown()
    os._exit(1)


def wait_for_leadership(election: LeaderElection, bind: str, health_port: int) -> None:
    """Block until this process holds the Lease; renewal continues in a daemon thread."""
    from kubernetes.leaderelection import electionconfig, leaderelection  # noqa: PLC0415
    from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock  # noqa: PLC0415

    _load_client_config()
    namespace = election.namespace or os.environ.get(POD_NAMESPACE_ENV) or "default"
    identity = os.environ.get(POD_NAME_ENV) or f"{socket.gethostname()}-{os.getpid()}"
    leading = threading.Event()

    def lead() -> None:
        leading.set()
        threading.Event().wait()  # leadership lasts as long as the renew loop succeeds

    config = electionconfig.Config(
        LeaseLock(election.lease_name, namespace, identity),  # type: ignore[no-untyped-call]
        lease_duration=election.lease_duration_seconds,
        renew_deadline=election.renew_deadline_seconds,
        retry_period=election.retry_period_seconds,
        onstarted_leading=lead,
        onstopped_leading=_lost_lease,
    )
    elector = leaderelection.LeaderElection(config)  # type: ignore[no-untyped-call]
    threading.Thread(target=elector.run, name="leader-election", daemon=True).start()
    health = ThreadingHTTPServer((bind, health_port), _Healthy) if health_port else None
    if health is not None:
        threading.Thread(target=health.serve_forever, name="standby-health", daemon=True).start()
    log.info("%s waiting for the lease %s/%s", identity, namespace, election.lease_name)
    leading.wait()
    log.info("%s holds the lease %s/%s: starting", identity, namespace, election.lease_name)
    if health is not None:
        health.shutdown()
        health.server_close()  # kopf's liveness endpoint takes the port over
