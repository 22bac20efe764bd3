"""Where the local cluster lives and the addresses it uses.

Addresses were chosen so nothing collides with what usually runs on a developer
machine: etcd and MinIO use ports above 10000. Node and Service addresses cannot be
in 127.0.0.0/8 because the API server refuses loopback addresses in Endpoints and
EndpointSlices (``ValidateEndpointIP``); instead the API server's advertised address
and each node's address go on the cluster namespace's ``lo`` as /32s, which makes
them local and reachable but not loopback in the API's eyes. Pods get theirs from
their node's CNI bridge (nodes.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

__all__ = [
    "ACTIVE_MARKER",
    "API_PORT",
    "CHECKOUT",
    "DEFAULT_BUCKET",
    "HOST_IP",
    "INSTANCE",
    "MACHINE_NAME",
    "POD_CIDR_PREFIX",
    "SERVICE_CIDR",
    "ClusterConfig",
    "ClusterInfo",
    "active_cluster_dir",
]

# Instance 0 is the machine's cluster. Another instance (FORJA_CLUSTER_INSTANCE=1..9,
# e.g. for a benchmark or CI beside a running cluster) shifts every port by 100*N and
# every address range by N, so the two never meet.
INSTANCE = int(os.environ.get("FORJA_CLUSTER_INSTANCE", "0"))
if not 0 <= INSTANCE <= 9:
    raise ValueError(f"FORJA_CLUSTER_INSTANCE must be 0-9, not {INSTANCE}")
_OFFSET = 100 * INSTANCE
API_PORT = 6443 + _OFFSET
ETCD_CLIENT_PORT = 12379 + _OFFSET
ETCD_PEER_PORT = 12380 + _OFFSET
MINIO_PORT = 19000 + _OFFSET
MINIO_CONSOLE_PORT = 19001 + _OFFSET
# The image registry, on the cluster namespace's loopback (registry.py says why).
REGISTRY_PORT = 15000 + _OFFSET
CONTROLLER_MANAGER_PORT = 10257 + _OFFSET
SCHEDULER_PORT = 10259 + _OFFSET
KUBELET_PORT = 10250 + _OFFSET
SERVICE_CIDR = f"10.{96 + INSTANCE}.0.0/16"
KUBERNETES_SERVICE_IP = f"10.{96 + INSTANCE}.0.1"
# The namespace's addresses (HOST_IP, the nodes') and the nodes' pod CIDRs (nodes.py).
POD_CIDR_PREFIX = f"10.{244 + INSTANCE}"
# Names of what we create on the machine itself (cgroups, the /etc/hosts block).
MACHINE_NAME = "forja" if INSTANCE == 0 else f"forja{INSTANCE}"
HOST_IP = f"{POD_CIDR_PREFIX}.0.1"
DEFAULT_BUCKET = "forja"
CLUSTER_DOMAIN = "cluster.local"
# The checkout this package was imported from: its scripts and chart are the ones used.
CHECKOUT = Path(__file__).resolve().parents[2]


# The ports are the machine's, so there is one cluster per machine; this file names
# the state directory of the one that is running, so every checkout and test run
# finds and reuses it whatever its own default would be.
def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "forja"


ACTIVE_MARKER = _cache_root() / (
    "active-cluster.json" if INSTANCE == 0 else f"active-cluster-{INSTANCE}.json"
)


def active_cluster_dir() -> Path | None:
    """The state directory of the running cluster, if the marker names a live one."""
    try:
        state_dir = Path(json.loads(ACTIVE_MARKER.read_text())["state_dir"])
        pid_text = (state_dir / "pids" / "kube-apiserver.pid").read_text().split()[0]
        os.kill(int(pid_text), 0)
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return state_dir


def _default_dir() -> Path:
    env = os.environ.get("FORJA_CLUSTER_DIR")
    if env:
        return Path(env).expanduser().resolve()
    active = active_cluster_dir()
    if active is not None:
        return active
    return _cache_root() / ("cluster" if INSTANCE == 0 else f"cluster-{INSTANCE}")


@dataclass(frozen=True)
class ClusterConfig:
    """Paths inside the state directory; everything the cluster writes lives there."""

    state_dir: Path = field(default_factory=_default_dir)

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pids(self) -> Path:
        return self.state_dir / "pids"

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def minio_data(self) -> Path:
        return self.state_dir / "minio"

    @property
    def pvc_dir(self) -> Path:
        return self.state_dir / "pvc"

    @property
    def info_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def kubeconfig(self, user: str = "admin") -> Path:
        return self.state_dir / f"{user}.kubeconfig"


@dataclass(frozen=True)
class ClusterInfo:
    """What a client needs to use a running cluster; written to ``cluster.json``."""

    state_dir: str
    kubeconfig: str
    bin_dir: str
    api_server: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str
    checkout: str
    nodes: list[str]
    gpus_per_node: int
    # Where the nodes pull images from: "<registry>/forja/server:0.1.0" (registry.py).
    registry: str = ""

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ClusterInfo:
        data = json.loads(path.read_text())
        # A cluster.json written by an older checkout may hold fields since removed.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def env(self) -> dict[str, str]:
        """The environment variables a shell or test uses to reach this cluster."""
        return {
            "KUBECONFIG": self.kubeconfig,
            "FORJA_S3_ENDPOINT": self.s3_endpoint,
            "FORJA_S3_BUCKET": self.bucket,
            "FORJA_CLUSTER_BIN": self.bin_dir,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "FORJA_REGISTRY": self.registry,
        }

    def s3_secret_data(self) -> dict[str, str]:
        """The data of a Secret holding the S3 credentials, as pods consume them."""
        return {
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "FORJA_S3_ENDPOINT": self.s3_endpoint,
        }
