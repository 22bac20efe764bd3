"""Service names without cluster DNS: a managed block in the cluster's own hosts file.

The cluster runs in a named network namespace, and hack/netns.sh (like ``ip netns
exec``) shows ``/etc/netns/<ns>/hosts`` as ``/etc/hosts`` to every process it starts.
So the names go there — never into the machine's ``/etc/hosts``, where the cluster's
addresses mean nothing — and the agent also bind-mounts the file
at ``/etc/hosts`` in every container, as a kubelet manages a pod's ``/etc/hosts``.
Several agents (cluster instances) may share the file: each owns one marked block and
rewrites it under a lock.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from forja_localcluster.config import CLUSTER_DOMAIN, MACHINE_NAME
from forja_localcluster.netaddr import current_netns

__all__ = ["HOSTS_BEGIN", "cluster_hosts_file", "ensure_hosts_file", "hosts_block", "update_hosts"]

HOSTS_BEGIN = f"# BEGIN {MACHINE_NAME}-localcluster Services (managed by the node agent)"
HOSTS_END = f"# END {MACHINE_NAME}-localcluster Services"
BASE = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def cluster_hosts_file() -> Path | None:
    """``/etc/netns/<ns>/hosts`` for the named namespace we run in; None outside one."""
    ns = current_netns()
    return Path("/etc/netns") / ns / "hosts" if ns else None


def ensure_hosts_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(BASE)


def hosts_block(services: Iterable[dict[str, Any]], domain: str = CLUSTER_DOMAIN) -> str:
    """Lines giving each Service's names (``svc.ns.svc.<domain>``, ``svc.ns.svc``,
    ``svc.ns``) its ClusterIP."""
    lines = []
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"],
                                               s["metadata"]["name"])):
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None":
            continue
        name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
        lines.append(f"{ip}\t{name}.{ns}.svc.{domain} {name}.{ns}.svc {name}.{ns}")
    return "\n".join([HOSTS_BEGIN, *lines, HOSTS_END])


def update_hosts(block: str | None, path: Path) -> None:
    """Replace our block in ``path`` (``None`` removes it); every other line stays."""
    ensure_hosts_file(path)
    # The lock is the file itself: `ip netns exec` bind-mounts every file beside it.
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        text = f.read()
        before, _, rest = text.partition(HOSTS_BEGIN)
        _, _, after = rest.partition(HOSTS_END)
        kept = (before.rstrip("\n") + "\n" + after.lstrip("\n")).strip("\n") or BASE.strip("\n")
        new = kept + "\n" + (block + "\n" if block else "")
        if new != text:
            # In place, not by rename: processes see the file through bind mounts.
            f.seek(0)
            f.write(new)
            f.truncate()
