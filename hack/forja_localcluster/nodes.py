"""Real nodes: each a kubelet on its own containerd (runc, CNI bridge), as on a cluster.

``forja_localcluster start`` runs ``--nodes`` of these. Per node, under
``<state>/nodes/<name>/``: a containerd with its own root, state and socket (two
kubelets on one containerd remove each other's pods),
a CNI bridge with the node's pod CIDR, a kubelet authenticating as
``system:node:<name>`` (Node authorizer, NodeRestriction) with a serving certificate
naming its IP, and our fake GPU device plugin (``hack/tools/k8s/fakegpu``). One
kube-proxy serves the cluster's network namespace, which every node shares.

The settings, and the error each one fixes, are in shared/design/NODE-NOTES.md:
containerd and the kubelet enter the network namespace only (``nsenter --net``), not
the private mount namespace hack/netns.sh adds (runc cannot join CNI namespaces from
there); ``restrict_oom_score_adj`` because this machine refuses negative oom scores;
cgroup v1 with the cgroupfs driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from forja_localcluster import registry
from forja_localcluster.config import (
    INSTANCE,
    KUBELET_PORT,
    MACHINE_NAME,
    POD_CIDR_PREFIX,
    SERVICE_CIDR,
    ClusterConfig,
)
from forja_localcluster.errors import ImageError

__all__ = [
    "PAUSE_IMAGE",
    "NodeSpec",
    "cleanup",
    "containerd_argv",
    "ensure_pause_image",
    "ensure_service_route",
    "fakegpu_argv",
    "host_mount_ns",
    "kill_task",
    "kube_proxy_argv",
    "kubelet_argv",
    "kubelet_wrapper",
    "load_image",
    "node_specs",
    "prepare_node",
    "remove_bridges",
    "share_layers",
    "share_node_mounts",
    "unmount_under",
]

# Built here (ensure_pause_image) and pulled by the nodes from the registry.
PAUSE_IMAGE = "localhost/forja/pause:3.10"
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"  # fixed in the kubelet's code
CNI_BIN = Path("/usr/lib/cni")
# Where CNI (containerd's CRI) bind-mounts the pods' network namespaces.
NETNS_DIRS = ("/var/run/netns/", "/run/netns/")
SNAPSHOTS = "containerd/root/io.containerd.snapshotter.v1.overlayfs/snapshots"
_OFFSET = 100 * INSTANCE


@dataclass(frozen=True)
class NodeSpec:
    index: int
    state_root: Path

    @property
    def name(self) -> str:
        return f"forja-node-{self.index}"

    @property
    def ip(self) -> str:
        """The node's address, on the namespace's lo (HOST_IP, .0.1, is the API server's)."""
        return f"{POD_CIDR_PREFIX}.0.{10 + self.index}"

    @property
    def pod_cidr(self) -> str:
        return f"{POD_CIDR_PREFIX}.{self.index + 1}.0/24"

    @property
    def bridge(self) -> str:
        return f"{MACHINE_NAME}br{self.index}"

    @property
    def dir(self) -> Path:
        return self.state_root / "nodes" / self.name

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.dir / "kubelet"

    @property
    def cgroup_root(self) -> str:
        return f"/{MACHINE_NAME}-{self.name}"


def node_specs(config: ClusterConfig, count: int) -> list[NodeSpec]:
    return [NodeSpec(i, config.state_dir) for i in range(count)]


def host_mount_ns(argv: Sequence[str] = ()) -> list[str]:
    """Run ``argv`` in this network namespace but the machine's mount namespace (with no
    ``argv``: the wrapper alone, for processes.spawn)."""
    # /proc/<our pid>/ns/net is the cluster's namespace; hack/netns.sh names a handle on
    # the machine's mounts (its private mount namespace hides what runc needs).
    return ["nsenter", f"--net=/proc/{os.getpid()}/ns/net", f"--mount={_host_mnt_ns()}", "--",
            *argv]


def _host_mnt_ns() -> str:
    return os.environ.get("FORJA_HOST_MNT_NS", "/proc/1/ns/mnt")


def _mount_points(mountinfo: str) -> list[str]:
    """The mount points a /proc/<pid>/mountinfo lists."""
    return [line.split()[4] for line in Path(mountinfo).read_text().splitlines()]


def _host_mountinfo() -> str:
    """The mountinfo of the machine's mount namespace (the holder process's)."""
    return f"/proc/{_host_mnt_ns().split('/')[2]}/mountinfo"


def _containerd_toml(node: NodeSpec) -> str:
    return f"""version = 2
root = "{node.dir / 'containerd' / 'root'}"
state = "{node.dir / 'containerd' / 'state'}"
[grpc]
  address = "{node.socket}"
[ttrpc]
  address = "{node.socket}.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{registry.remote_ref(PAUSE_IMAGE)}"
  # This machine refuses negative oom_score_adj, which the kubelet asks for sandboxes:
  # without this every sandbox fails in runc ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{node.dir / 'certs.d'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{node.dir / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    # The kubelet's own pulls keep no second, compressed copy of unpacked layers.
    discard_unpacked_layers = true
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.internal.v1.opt"]
  path = "{node.dir / 'containerd' / 'opt'}"
"""


def _cni_conflist(node: NodeSpec) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": node.name,
        "plugins": [
            {"type": "bridge", "bridge": node.bridge, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": node.pod_cidr}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(node.dir / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(node: NodeSpec, config: ClusterConfig) -> str:
    pki = config.pki
    doc = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # cgroup v1 here; v1.37 refuses it unless told, and containerd 1.6 has no
        # RuntimeConfig call, so the kubelet takes the driver from here.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "containerRuntimeEndpoint": f"unix://{node.socket}",
        "address": node.ip,
        "port": KUBELET_PORT,
        "healthzBindAddress": node.ip,
        "healthzPort": 10248 + _OFFSET,
        "readOnlyPort": 0,
        "failSwapOn": False,
        "enforceNodeAllocatable": [],
        "resolvConf": "",
        "clusterDomain": "cluster.local",
        "podCIDR": node.pod_cidr,
        # Not the shared /var/log/pods: each kubelet removes the log directories of pods
        # it does not know, the other node's included.
        "podLogsDir": str(node.dir / "pod-logs"),
        "tlsCertFile": str(pki / f"kubelet-{node.name}-serving.crt"),
        "tlsPrivateKeyFile": str(pki / f"kubelet-{node.name}-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        # The disk is shared with builds and caches: evict and collect images only
        # when it is truly full, not at the defaults' 10-15 % free.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "512Mi",
                         "imagefs.available": "512Mi"},
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
        "serializeImagePulls": False,
        "maxPods": 110,
        "staticPodPath": "",
        "registerWithTaints": [],
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
    }
    return json.dumps(doc, indent=2)


def prepare_node(config: ClusterConfig, node: NodeSpec) -> None:
    """Directories, configuration files and the node's cgroup root (idempotent)."""
    for sub in ("containerd/root", "containerd/state", "containerd/opt", "cni", "cni-ipam",
                "kubelet/device-plugins"):
        (node.dir / sub).mkdir(parents=True, exist_ok=True)
    (node.dir / "containerd.toml").write_text(_containerd_toml(node))
    registry.hosts_dir(node.dir / "certs.d")
    (node.dir / "cni" / "10-bridge.conflist").write_text(json.dumps(_cni_conflist(node)))
    (node.dir / "kubelet.yaml").write_text(_kubelet_config(node, config))
    # cgroup v1: the kubelet puts its pods under <cgroupRoot>/kubepods in every
    # hierarchy, and wants the root to exist; one root per node keeps them apart.
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if hierarchy.is_dir() and not hierarchy.is_symlink() and hierarchy.name != "unified":
            with contextlib.suppress(OSError):
                (hierarchy / node.cgroup_root.lstrip("/")).mkdir(exist_ok=True)
    # Pods on one bridge reach the other node's pods and the namespace's addresses.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")


def containerd_argv(node: NodeSpec) -> list[str]:
    return ["/usr/bin/containerd", "--config", str(node.dir / "containerd.toml")]


def kubelet_wrapper(node: NodeSpec) -> list[str]:
    """The kubelet in a mount namespace of its own, in which the one path it does not take
    from --root-dir, its device-plugin socket (/var/lib/kubelet/device-plugins), is the
    node's own directory: two kubelets would otherwise take each other's socket. The
    nodes' directory is a shared mount (share_node_mounts), so the volumes the kubelet
    mounts there still reach containerd in the machine's namespace."""
    plugins = node.kubelet_root / "device-plugins"
    script = (f"mkdir -p {DEVICE_PLUGIN_DIR} && mount --bind {plugins} {DEVICE_PLUGIN_DIR} "
              '&& exec "$@"')
    return [*host_mount_ns(), "unshare", "--mount", "--propagation", "unchanged", "--",
            "sh", "-c", script, "kubelet"]


def share_node_mounts(config: ClusterConfig) -> None:
    """Make ``<state>/nodes`` a shared mount in the machine's namespace (once)."""
    root = config.state_dir / "nodes"
    root.mkdir(parents=True, exist_ok=True)
    if str(root) not in _mount_points(_host_mountinfo()):
        subprocess.run(host_mount_ns(["mount", "--bind", str(root), str(root)]), check=True,
                       capture_output=True)
    subprocess.run(host_mount_ns(["mount", "--make-shared", str(root)]), check=True,
                   capture_output=True)


def kubelet_argv(config: ClusterConfig, node: NodeSpec, bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "kubelet"),
        f"--config={node.dir / 'kubelet.yaml'}",
        f"--kubeconfig={config.kubeconfig(f'node-{node.name}')}",
        f"--root-dir={node.kubelet_root}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.ip}",
        f"--node-labels=forja.dev/local-node={node.index}",
        "--v=1",
    ]


def fakegpu_argv(node: NodeSpec, bin_dir: Path, gpus: int) -> list[str]:
    return [str(bin_dir / "fakegpu"), f"--dir={node.kubelet_root / 'device-plugins'}",
            f"--count={gpus}", f"--node={node.name}"]


def kube_proxy_argv(config: ClusterConfig, bin_dir: Path) -> list[str]:
    path = config.state_dir / "kube-proxy.yaml"
    path.write_text(json.dumps({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(config.kubeconfig("kube-proxy"))},
        "mode": "iptables",
        "clusterCIDR": f"{POD_CIDR_PREFIX}.0.0/16",
        "hostnameOverride": "forja-node-0",
        "bindAddress": "0.0.0.0",  # noqa: S104 - inside the cluster's own namespace
        "metricsBindAddress": f"127.0.0.1:{10249 + _OFFSET}",
        "healthzBindAddress": f"127.0.0.1:{10256 + _OFFSET}",
        # No br_netfilter here: a reply between two pods of one bridge would skip the
        # un-DNAT of a Service, so every Service connection is masqueraded instead.
        "iptables": {"masqueradeAll": True},
        "conntrack": {"maxPerCore": 0},
    }, indent=2))
    return [str(bin_dir / "kube-proxy"), f"--config={path}"]


def _ctr(node: NodeSpec, *args: str, check: bool = True,
         timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(host_mount_ns(["ctr", "--address", str(node.socket), "-n", "k8s.io",
                                         *args]),
                          capture_output=True, text=True, check=check, timeout=timeout)


def _image_id(ref: str) -> str:
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", ref],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def load_image(nodes: Sequence[NodeSpec], ref: str, log: Callable[[str], None]) -> int:
    """Push an image from the machine's containers storage to the cluster's registry and
    pull it into every node's containerd, as a cluster's nodes get it; it is also named
    as the chart's defaults name it (``forja/server:0.1.0``, docker.io's name).
    Returns how many nodes pulled it (a node that already has it does not)."""
    image_id = _image_id(ref)
    if not image_id:
        raise ImageError(f"{ref} is not built: run bash hack/build-images.sh")
    remote, alias = registry.remote_ref(ref), registry.short_ref(ref)
    pulls = 0
    for node in nodes:
        stamp = node.dir / "images" / (ref.replace("/", "_") + ".id")
        # The kubelet deletes unused images under disk pressure (the pause image
        # too): a stamp counts only while the node still has the image.
        if stamp.exists() and stamp.read_text() == image_id and _has_image(node, remote):
            continue
        if not pulls:
            registry.push(ref, log)
        if stamp.exists():
            # A rebuilt image: the old one goes first (garbage-collected now, its
            # snapshots with it unless a container still runs from them), or each
            # rebuild of the trainer would leave another 7 GB on the node.
            _ctr(node, "images", "rm", "--sync", remote, alias, check=False, timeout=300)
        log(f"pulling {remote} into {node.name}")
        target = _pull(node, remote)
        _ctr(node, "images", "tag", "--force", remote, alias, check=False)
        # Unpacked into the node's snapshotter, the layer blobs are a second copy
        # that no container reads (containerd's discard_unpacked_layers, set for the
        # kubelet's own pulls, does not apply to ctr's).
        _ctr(node, "content", "rm", *_layer_digests(node, target), check=False, timeout=300)
        stamp.parent.mkdir(exist_ok=True)
        stamp.write_text(image_id)
        pulls += 1
    return pulls


def _has_image(node: NodeSpec, ref: str) -> bool:
    listed = _ctr(node, "images", "ls", "-q", check=False, timeout=60)
    return ref in listed.stdout.split()


def _pull(node: NodeSpec, ref: str) -> str:
    """``ctr images pull`` through the node's registry hosts (what its CRI uses) and
    unpacked for its snapshotter; returns the pulled image's digest."""
    pulled = _ctr(node, "images", "pull", "--hosts-dir", str(node.dir / "certs.d"), ref,
                  check=False)
    if pulled.returncode != 0:
        raise ImageError(f"ctr images pull {ref} into {node.name}: "
                         f"{pulled.stderr.strip()[-2000:] or pulled.stdout.strip()[-2000:]}")
    listed = _ctr(node, "images", "ls", f"name=={ref}", check=False, timeout=60)
    found = re.search(r"(sha256:[0-9a-f]{64})", listed.stdout)
    if found is None:
        raise ImageError(f"{node.name} lists no {ref} after pulling it: {listed.stdout}")
    return found.group(1)


def _layer_digests(node: NodeSpec, digest: str) -> list[str]:
    """The layer blobs of the image ``digest`` (an index or a manifest) in the node's
    content store."""
    shown = _ctr(node, "content", "get", digest, check=False, timeout=60)
    try:
        doc = json.loads(shown.stdout)
    except ValueError:
        return []
    layers = [str(layer["digest"]) for layer in doc.get("layers") or []]
    for entry in doc.get("manifests") or []:
        layers += _layer_digests(node, str(entry["digest"]))
    return layers


def share_layers(nodes: Sequence[NodeSpec], log: Callable[[str], None]) -> None:
    """One copy on disk of the image layers the nodes hold alike: identical files of
    their committed snapshots become hard links (util-linux ``hardlink``).

    Each node needs its own containerd, so each unpacks every image it gets: the
    trainer is 7 GB per node. Committed snapshots are never written (a container
    writes to its own upper directory, and overlayfs copies a lower file up before
    changing it), so sharing their inodes is safe; active snapshots (containers'
    upper directories) are left out, and nothing is linked when they cannot be told
    apart. Files must match in content, mode, owner, time and extended attributes:
    a file still being unpacked has a newer time than any finished copy."""
    dirs: list[str] = []
    for node in nodes:
        root = node.dir / SNAPSHOTS
        if not root.is_dir():
            continue
        active = _active_snapshot_ids(node)
        if active is None:
            log(f"{node.name}: its active snapshots are unknown; layers not shared")
            return
        dirs += [str(d) for d in sorted(root.iterdir()) if d.name not in active]
    if len(dirs) < 2:
        return
    linked = subprocess.run(["hardlink", "--respect-xattrs", "--minimum-size", "4K", *dirs],
                            capture_output=True, text=True, check=False, timeout=1800)
    if linked.returncode != 0:
        log(f"hardlink failed, layers not shared: {linked.stderr.strip()[-500:]}")
        return
    # hardlink's own summary says what it saved ("Saved:  7.3 GiB"): no second walk.
    saved = re.search(r"^Saved:\s*(.+)$", linked.stdout, re.MULTILINE)
    if saved:
        log(f"layer files shared across {len(nodes)} nodes: {saved.group(1).strip()} freed")


def _active_snapshot_ids(node: NodeSpec) -> set[str] | None:
    """The snapshot directories (by number) that containers write to: the upper and
    work directories, or bind-mounted roots, of the node's active snapshots. None when
    containerd does not answer."""
    listed = _ctr(node, "snapshots", "ls", check=False, timeout=60)
    if listed.returncode != 0:
        return None
    ids: set[str] = set()
    for line in listed.stdout.splitlines()[1:]:
        fields = line.split()
        if not fields or fields[-1] != "Active":
            continue
        mounts = _ctr(node, "snapshots", "mounts", "/mnt", fields[0], check=False, timeout=60)
        if mounts.returncode != 0:
            return None
        # lowerdir= names committed snapshots (the image's layers): not written to.
        writable = re.sub(r"lowerdir=[^,\s]*", "", mounts.stdout)
        ids |= set(re.findall(re.escape(SNAPSHOTS) + r"/(\d+)/", writable))
    return ids


def kill_containers(node: NodeSpec) -> int:
    """SIGKILL every container of ``node``'s containerd (as a power loss would); how many.

    The pods' network namespaces go with them: without a kubelet no CNI DEL runs, and
    each sandbox's /run/netns/cni-* (with its veth) would outlive the cluster."""
    if not node.socket.exists():
        return 0
    netns = _sandbox_netns(node)
    tasks = _ctr(node, "tasks", "ls", "-q", check=False, timeout=30).stdout.split()
    for task in tasks:
        _ctr(node, "tasks", "kill", "-s", "SIGKILL", task, check=False, timeout=30)
    for task in tasks:
        _ctr(node, "tasks", "delete", "-f", task, check=False, timeout=30)
    for name in netns:
        subprocess.run(host_mount_ns(["ip", "netns", "delete", name]), capture_output=True,
                       check=False)
    return len(tasks)


def kill_task(node: NodeSpec, container_id: str, signal: str) -> None:
    """``ctr tasks kill``: one container's process, by the ID the kubelet reports."""
    killed = _ctr(node, "tasks", "kill", "-s", signal, container_id, check=False, timeout=30)
    if killed.returncode != 0:
        raise OSError(f"{node.name}: ctr tasks kill {container_id}: "
                           f"{killed.stderr.strip() or killed.stdout.strip()}")


def _sandbox_netns(node: NodeSpec) -> list[str]:
    """Names of the network namespaces (under /run/netns) the node's containers join."""
    names: set[str] = set()
    for cid in _ctr(node, "containers", "ls", "-q", check=False, timeout=30).stdout.split():
        shown = _ctr(node, "containers", "info", cid, check=False, timeout=30)
        try:
            spec = json.loads(shown.stdout).get("Spec") or {}
        except ValueError:
            continue
        for ns in (spec.get("linux") or {}).get("namespaces") or []:
            path = str(ns.get("path") or "")
            if ns.get("type") == "network" and path.startswith(NETNS_DIRS):
                names.add(path.rsplit("/", 1)[-1])
    return sorted(names)


def cleanup(config: ClusterConfig, nodes: Sequence[NodeSpec]) -> None:
    """After the kubelets stopped: end every container, then unmount what they left."""
    for node in nodes:
        kill_containers(node)
    unmount_under(config.state_dir / "nodes")


def unmount_under(root: Path) -> None:
    """Lazily unmount everything mounted at or below ``root``, in the machine's mount
    namespace and in ours (a namespace entered after a mount holds a copy of it)."""
    prefix = str(root.resolve()) + "/"
    for mountinfo, wrap in ((_host_mountinfo(), host_mount_ns), ("/proc/self/mountinfo", list)):
        points = sorted({p for p in _mount_points(mountinfo)
                         if p.startswith(prefix) or p == str(root)}, key=len, reverse=True)
        for point in points:
            subprocess.run(wrap(["umount", "-l", point]), capture_output=True, check=False)


def ensure_pause_image(bin_dir: Path) -> None:
    """The sandbox image, from the pause binary build-tools.sh compiled: no registry here."""
    if _image_id(PAUSE_IMAGE):
        return
    ctr = subprocess.run(["buildah", "from", "scratch"], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        subprocess.run(["buildah", "copy", ctr, str(bin_dir / "pause"), "/pause"],
                       check=True, capture_output=True)
        subprocess.run(["buildah", "config", "--entrypoint", '["/pause"]', "--user",
                        "65535:65535", ctr], check=True, capture_output=True)
        subprocess.run(["buildah", "commit", "--quiet", ctr, PAUSE_IMAGE], check=True,
                       capture_output=True)
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True, check=False)


def ensure_service_route() -> None:
    """A route for the Service range in the cluster's namespace, which has no default
    route: a connection from the namespace itself (tests, the demo) to a ClusterIP
    must pass the routing decision before kube-proxy's DNAT in OUTPUT reroutes it to
    a pod ("Network is unreachable" otherwise). Pods route through their bridge."""
    subprocess.run(["ip", "route", "replace", SERVICE_CIDR, "dev", "lo"], check=True,
                   capture_output=True)


def remove_bridges(nodes: Sequence[NodeSpec]) -> None:
    for node in nodes:
        subprocess.run(["ip", "link", "del", node.bridge], capture_output=True, check=False)
