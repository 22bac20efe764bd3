"""What the handlers share while the operator runs: config, client, caches, queues.

Created once in the startup handler and kept in kopf's memo (``memo.forja``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from forja_operator.cache import Store
from forja_operator.config import OperatorConfig
from forja_operator.controller.api import ObjectApi
from forja_operator.controller.clock import timestamp
from forja_operator.controller.events import Event, event_manifest
from forja_operator.workqueue import WorkQueue

__all__ = ["Runtime", "post_event"]


@dataclass
class Runtime:
    config: OperatorConfig
    kube: ObjectApi
    jobs: Store = field(default_factory=Store)
    job_pods: Store = field(default_factory=Store)
    """Attempt pods grouped by TrainingJob name."""
    versions: Store = field(default_factory=Store)
    """ModelVersions grouped by model."""
    verify_pods: Store = field(default_factory=Store)
    """Verify pods grouped by ModelVersion name."""
    rbac_ready: set[str] = field(default_factory=set)
    """Namespaces already cleared of the earlier releases' namespace-wide trainer Role."""
    queues: dict[str, WorkQueue] = field(default_factory=dict)


def post_event(rt: Runtime, body: dict[str, Any], event: Event) -> None:
    """Record a core/v1 Event about ``body`` in the background; a lost event fails nothing.

    Posted by our own client rather than kopf.event(): kopf's event queue lives in
    context variables that our work-queue tasks do not inherit.
    """
    manifest = event_manifest(body, event, timestamp(datetime.now(UTC)))
    task = asyncio.get_running_loop().create_task(_post(rt, manifest))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task[None]] = set()
log = logging.getLogger(__name__)


async def _post(rt: Runtime, event: dict[str, Any]) -> None:
    try:
        await rt.kube.create(event)
    except Exception as exc:
        log.warning("event %s not posted: %s", event["reason"], exc)
