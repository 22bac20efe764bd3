"""``python -m forja_operator``: run kopf with every handler module of forja_operator.handlers."""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil

import kopf

from forja_api.contract import POD_IP_ENV
from forja_operator import handlers, metrics
from forja_operator.config import load_config
from forja_operator.leader import wait_for_leadership

__all__ = ["import_handlers", "main"]


def import_handlers() -> list[str]:
    """Import each module in forja_operator/handlers/ so its decorators register."""
    names = []
    for info in pkgutil.iter_modules(handlers.__path__):
        if info.name != "common":
            importlib.import_module(f"{handlers.__name__}.{info.name}")
            names.append(info.name)
    return names


def main() -> None:
    config = load_config()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    kopf.configure(verbose=False)
    # One line per watch event is noise (and CPU) at thousands of pods.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    import_handlers()
    # The pod's own address when the chart passes it: a Service proxy (or a
    # sidecar) may hold the same port on another address of the node.
    bind = os.environ.get(POD_IP_ENV) or "0.0.0.0"  # noqa: S104 - a pod listens on its IP
    metrics.serve(config.metrics_port, bind)
    if config.leader_election.enabled:
        wait_for_leadership(config.leader_election, bind, config.health_port)
    kopf.run(
        standalone=True,
        clusterwide=not config.watch_namespaces,
        namespaces=config.watch_namespaces,
        liveness_endpoint=f"http://{bind}:{config.health_port}/healthz"
        if config.health_port
        else None,
        memo=kopf.Memo(config=config),
    )


if __name__ == "__main__":
    main()
