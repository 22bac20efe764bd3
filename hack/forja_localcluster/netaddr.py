"""The namespace's own addresses (the API server's, the nodes') as /32s on its loopback.

Adding an address to ``lo`` makes it local (any process can bind and reach it)
without it being a loopback address, which the API server would refuse in
Endpoints and EndpointSlices. Needs CAP_NET_ADMIN (root here).

These addresses are private-range ones, so they are only ever added inside the
network namespace hack/netns.sh creates for the cluster, never on the machine's
own ``lo``: :func:`ensure_address` refuses to run anywhere else.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess

from forja_localcluster.config import POD_CIDR_PREFIX, SERVICE_CIDR
from forja_localcluster.errors import ClusterError

__all__ = [
    "NotInClusterNetnsError",
    "addresses_on_lo",
    "current_netns",
    "ensure_address",
    "remove_address",
    "remove_all",
]


class NotInClusterNetnsError(ClusterError):
    """Raised when cluster addresses would be added to the machine's own network."""

_OURS = (
    ipaddress.ip_network(f"{POD_CIDR_PREFIX}.0.0/16"),
    ipaddress.ip_network(SERVICE_CIDR),
)


def addresses_on_lo() -> set[str]:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True
    ).stdout
    found = set()
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            found.add(parts[parts.index("inet") + 1].split("/")[0])
    return found


def current_netns() -> str:
    """The name of the named network namespace we run in ('' for the machine's own)."""
    out = subprocess.run(["ip", "netns", "identify", str(os.getpid())],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def ensure_address(ip: str) -> None:
    if not current_netns():
        raise NotInClusterNetnsError(
            "the local cluster's addresses live in its own network namespace; run the "
            "command through it: bash hack/netns.sh <command> (hack/test.sh and "
            "hack/demo.sh do this themselves)"
        )
    result = subprocess.run(
        ["ip", "addr", "add", f"{ip}/32", "dev", "lo"], capture_output=True, text=True,
        check=False,
    )
    known = ("File exists", "already assigned")
    if result.returncode != 0 and not any(k in result.stderr for k in known):
        raise OSError(f"ip addr add {ip}/32 dev lo: {result.stderr.strip()}")


def remove_address(ip: str) -> None:
    subprocess.run(["ip", "addr", "del", f"{ip}/32", "dev", "lo"], capture_output=True,
                   check=False)


def remove_all() -> None:
    """Remove every pod, node and Service address we may have added."""
    for ip in addresses_on_lo():
        if any(ipaddress.ip_address(ip) in net for net in _OURS):
            remove_address(ip)
