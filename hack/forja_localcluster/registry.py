"""The cluster's image registry: CNCF distribution, pinned in ``hack/tools/registry``.

Images reach the nodes as on a cluster: ``hack/build-images.sh`` builds them into the
machine's containers storage, ``push`` puts them in this registry once, and each node's
containerd pulls them (the kubelet does too, for an image a node lacks). The registry
listens on the cluster namespace's loopback only: the nodes' containerd and this
machine's podman share that namespace, pods have a loopback of their own, so no pod
can push over an image the nodes run, and the registry needs no credentials.

Pods name images in two ways, and each node's ``hosts_dir`` serves both from here:
``localhost:<port>/forja/server:0.1.0`` (what the demo gives the chart), and the
chart's default ``forja/server:0.1.0``, which means ``docker.io/forja/server`` — this
registry mirrors docker.io, as an air-gapped cluster's does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from forja_localcluster.config import REGISTRY_PORT, ClusterConfig
from forja_localcluster.errors import ImageError

__all__ = ["HEALTH_PATH", "NAME", "argv", "hosts_dir", "push", "remote_ref", "short_ref"]

# What pods and the chart call the registry. containerd's hosts.toml maps it to the
# loopback address (hosts_dir), so IPv6's ::1 is never tried.
NAME = f"localhost:{REGISTRY_PORT}"
_ADDR = f"127.0.0.1:{REGISTRY_PORT}"
# Answers 200 once the registry serves (the distribution API's version check).
HEALTH_PATH = "/v2/"
_LOCAL_PREFIX = "localhost/"  # how hack/build-images.sh names what it builds


def _config(config: ClusterConfig) -> Path:
    path = config.state_dir / "registry.yml"
    path.write_text(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {config.state_dir / 'registry'}
  # A rebuilt image under the same tag replaces the old manifest; nothing else deletes.
  delete:
    enabled: false
http:
  addr: {_ADDR}
""")
    return path


def argv(config: ClusterConfig, bin_dir: Path) -> list[str]:
    (config.state_dir / "registry").mkdir(exist_ok=True)
    return [str(bin_dir / "registry"), "serve", str(_config(config))]


def _path(local_ref: str) -> str:
    """``localhost/forja/server:0.1.0`` -> ``forja/server:0.1.0``."""
    if not local_ref.startswith(_LOCAL_PREFIX):
        raise ValueError(f"{local_ref} is not an image of hack/build-images.sh (localhost/...)")
    return local_ref.removeprefix(_LOCAL_PREFIX)


def remote_ref(local_ref: str) -> str:
    """The name the nodes pull ``local_ref`` by: ``localhost:<port>/forja/server:0.1.0``."""
    return f"{NAME}/{_path(local_ref)}"


def short_ref(local_ref: str) -> str:
    """The chart's default name for it, as containerd spells it: ``docker.io/forja/...``."""
    return f"docker.io/{_path(local_ref)}"


def push(local_ref: str, log: Callable[[str], None]) -> None:
    """``podman push`` into the registry. Layers it already holds are not sent again
    (podman asks first), so pushing an unchanged image costs a fraction of a second.
    zstd, not gzip: the trainer's 7 GB compress in about a minute on two cores."""
    log(f"pushing {local_ref} to {NAME}")
    pushed = subprocess.run(
        ["podman", "push", "--quiet", "--tls-verify=false", "--compression-format", "zstd",
         local_ref, f"docker://{_ADDR}/{_path(local_ref)}"],
        capture_output=True, text=True, check=False, timeout=1800)
    if pushed.returncode != 0:
        raise ImageError(f"podman push {local_ref} to {NAME}: {pushed.stderr.strip()[-2000:]}")


def hosts_dir(root: Path) -> Path:
    """containerd's registry hosts directory (``config_path``) under ``root``: plain HTTP
    to this registry, under its own name and as docker.io's mirror."""
    server = f"http://{_ADDR}"
    for host, upstream in ((NAME, server), ("docker.io", "https://registry-1.docker.io")):
        # The directory is named for the host, port included ("localhost:15000").
        path = root / host / "hosts.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'server = "{upstream}"\n\n[host."{server}"]\n'
                        '  capabilities = ["pull", "resolve"]\n')
    return root
