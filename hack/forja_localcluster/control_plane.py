"""Start, inspect and stop the local cluster's components, in dependency order.

``start`` is idempotent: a component whose pid file names a live process is reused,
so starting a running cluster only re-checks readiness (this is what makes the test
fixture's "reuse a running cluster" cheap).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from forja_localcluster import netaddr, nodes, processes, provisioner, registry
from forja_localcluster.argocd import ArgoCD
from forja_localcluster.config import (
    ACTIVE_MARKER,
    API_PORT,
    CHECKOUT,
    CONTROLLER_MANAGER_PORT,
    DEFAULT_BUCKET,
    ETCD_CLIENT_PORT,
    ETCD_PEER_PORT,
    HOST_IP,
    MINIO_CONSOLE_PORT,
    MINIO_PORT,
    REGISTRY_PORT,
    SCHEDULER_PORT,
    SERVICE_CIDR,
    ClusterConfig,
    ClusterInfo,
    active_cluster_dir,
)
from forja_localcluster.errors import (
    ClusterError,
    ComponentFailedError,
    ToolsMissingError,
)
from forja_localcluster.kubeapi import KubeClient
from forja_localcluster.kueue import Kueue
from forja_localcluster.minio import create_bucket, load_or_create_credentials
from forja_localcluster.pki import ensure_node_pki, ensure_pki

__all__ = [
    "ComponentStatus",
    "StartOptions",
    "find_bin_dir",
    "image_ref",
    "load_images",
    "start",
    "status",
    "stop",
]

ISSUER = "https://kubernetes.default.svc.cluster.local"
# Stop order: the API server's clients before it.
COMPONENTS = ("provisioner", "scheduler", "controller-manager", "kube-apiserver", "etcd",
              "minio", "registry")
# What a cluster started before the process-running node agent was removed may still
# run: stop ends it (start refuses such a state, _refuse_agent_state).
RETIRED = ("agent",)


@dataclass(frozen=True)
class StartOptions:
    nodes: int = 2
    gpus: int = 2
    bucket: str = DEFAULT_BUCKET
    timeout: float = 180.0
    # Images (hack/build-images.sh names) pushed to the registry and pulled by every node.
    images: tuple[str, ...] = ("operator", "server")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    healthy: bool
    detail: str


def find_bin_dir() -> Path:
    """``$FORJA_CLUSTER_BIN``, else what ``hack/build-tools.sh`` prints (building if needed)."""
    env = os.environ.get("FORJA_CLUSTER_BIN")
    if env:
        path = Path(env)
    else:
        script = CHECKOUT / "hack" / "build-tools.sh"
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise ToolsMissingError(f"{script} failed:\n{result.stderr[-2000:]}")
        path = Path(result.stdout.strip().splitlines()[-1])
    missing = [
        b for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                    "kubectl", "minio", "registry")
        if not (path / b).is_file()
    ]
    if missing:
        raise ToolsMissingError(f"{path} lacks {', '.join(missing)}; run: bash hack/build-tools.sh")
    return path


def _wait(what: str, check: Callable[[], bool], timeout: float, config: ClusterConfig,
          component: str) -> None:
    deadline = time.monotonic() + timeout
    gone = 0
    while time.monotonic() < deadline:
        # Twice in a row: one look can land in a wrapper's exec into the program.
        gone = gone + 1 if component != "-" and processes.running_pid(
            config, component) is None else 0
        if gone >= 2:
            raise ComponentFailedError(component, f"exited before {what}",
                                  str(processes.log_path(config, component)))
        try:
            if check():
                return
        except (OSError, http.client.HTTPException, ClusterError):
            pass
        time.sleep(0.25)
    raise ComponentFailedError(component, f"not {what} after {timeout:.0f} s",
                          str(processes.log_path(config, component)))


def _http_ok(host: str, port: int, path: str, context: ssl.SSLContext | None = None) -> bool:
    conn: http.client.HTTPConnection
    if context is None:
        conn = http.client.HTTPConnection(host, port, timeout=5)
    else:
        conn = http.client.HTTPSConnection(host, port, timeout=5, context=context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    finally:
        conn.close()


def _admin_context(config: ClusterConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(config.pki / "ca.crt"))
    context.load_cert_chain(str(config.pki / "admin.crt"), str(config.pki / "admin.key"))
    return context


def _insecure_context() -> ssl.SSLContext:
    # The controller-manager and scheduler serve /healthz with self-signed certificates.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _argv(config: ClusterConfig, bin_dir: Path, name: str, opts: StartOptions) -> list[str]:
    pki = config.pki
    if name == "etcd":
        return [
            str(bin_dir / "etcd"), "--name=forja", f"--data-dir={config.etcd_data}",
            f"--listen-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
            f"--advertise-client-urls=http://127.0.0.1:{ETCD_CLIENT_PORT}",
            f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-cluster=forja=http://127.0.0.1:{ETCD_PEER_PORT}",
            # A throw-away test store: durability is not worth an fsync per write here.
            "--unsafe-no-fsync", "--log-level=warn",
        ]
    if name == "kube-apiserver":
        return [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{ETCD_CLIENT_PORT}",
            # 0.0.0.0 so the advertised address (the node address on lo, which the
            # `kubernetes` Service's endpoints must carry; loopback is refused there)
            # answers as well as 127.0.0.1.
            "--bind-address=0.0.0.0", f"--secure-port={API_PORT}",
            f"--advertise-address={HOST_IP}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=Node,RBAC",
            # A kubelet may only change its own Node and the pods bound to it.
            "--enable-admission-plugins=NodeRestriction",
            # Must be allowed at all so that PodSecurity is what refuses privileged pods.
            "--allow-privileged=true",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
        ]
    if name in ("controller-manager", "scheduler"):
        kubeconfig = config.kubeconfig(name)
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", "--leader-elect=false",
        ]
        if name == "scheduler":
            return [str(bin_dir / "kube-scheduler"), *common, f"--secure-port={SCHEDULER_PORT}"]
        return [
            str(bin_dir / "kube-controller-manager"), *common,
            f"--secure-port={CONTROLLER_MANAGER_PORT}",
            "--controllers=*",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--cluster-name=forja",
        ]
    if name == "minio":
        return [
            str(bin_dir / "minio"), "server", "--quiet",
            # Every address of the cluster's namespace: real pods dial it on HOST_IP.
            f"--address=:{MINIO_PORT}",
            f"--console-address=127.0.0.1:{MINIO_CONSOLE_PORT}",
            str(config.minio_data),
        ]
    if name == "registry":
        return registry.argv(config, bin_dir)
    if name == "provisioner":
        return [sys.executable, "-m", "forja_localcluster.provisioner",
                f"--state-dir={config.state_dir}"]
    raise ValueError(f"unknown component {name!r}")


def _component_env(config: ClusterConfig, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBE", "AWS_", "MINIO"))}
    if name == "minio":
        creds = load_or_create_credentials(config.state_dir / "minio.json")
        env.update(MINIO_ROOT_USER=creds.access_key, MINIO_ROOT_PASSWORD=creds.secret_key,
                   MINIO_BROWSER="off", MINIO_UPDATE="off")
    if name == "provisioner":
        env["PYTHONPATH"] = str(CHECKOUT / "hack")
        env["PYTHONUNBUFFERED"] = "1"
    return env


def _node_names(opts: StartOptions) -> list[str]:
    return [f"forja-node-{i}" for i in range(opts.nodes)]


def _nodes_ready(client: KubeClient, names: list[str]) -> bool:
    for name in names:
        node = client.get(f"/api/v1/nodes/{name}")
        conditions = node.get("status", {}).get("conditions", [])
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return False
    return True


@contextlib.contextmanager
def _start_lock(config: ClusterConfig) -> Iterator[None]:
    """Several test runs may start the shared cluster at once; one does, the rest wait."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    with open(config.state_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def start(config: ClusterConfig, opts: StartOptions, log: Callable[[str], None]) -> ClusterInfo:
    """Bring every component up (reusing running ones) and wait until nodes are Ready."""
    with _start_lock(config):
        return _start(config, opts, log)


def _start(config: ClusterConfig, opts: StartOptions, log: Callable[[str], None]) -> ClusterInfo:
    t0 = time.monotonic()
    active = active_cluster_dir()
    if active is not None and active.resolve() != config.state_dir.resolve():
        raise ClusterError(
            f"another forja cluster (state {active}) holds this machine's ports; use it "
            f"(FORJA_CLUSTER_DIR={active}, or unset FORJA_CLUSTER_DIR) or stop it first: "
            f"FORJA_CLUSTER_DIR={active} python -m forja_localcluster stop"
        )
    bin_dir = find_bin_dir()
    _refuse_agent_state(config)
    if config.info_file.exists() and processes.running_pid(config, "kube-apiserver") is not None:
        # A running cluster: its node count and GPUs are what they are (a node process
        # that died is restarted as what it was).
        running = ClusterInfo.load(config.info_file)
        opts = dataclasses.replace(opts, nodes=len(running.nodes), gpus=running.gpus_per_node)
    for d in (config.state_dir, config.logs, config.pids, config.etcd_data, config.minio_data):
        d.mkdir(parents=True, exist_ok=True)
    config.state_dir.chmod(0o700)
    ensure_pki(config)
    netaddr.ensure_address(HOST_IP)
    ctx = _admin_context(config)
    checks: dict[str, Callable[[], bool]] = {
        "etcd": lambda: _http_ok("127.0.0.1", ETCD_CLIENT_PORT, "/health"),
        "kube-apiserver": lambda: _http_ok("127.0.0.1", API_PORT, "/readyz", ctx),
        "controller-manager": lambda: _http_ok(
            "127.0.0.1", CONTROLLER_MANAGER_PORT, "/healthz", _insecure_context()),
        "scheduler": lambda: _http_ok(
            "127.0.0.1", SCHEDULER_PORT, "/healthz", _insecure_context()),
        "minio": lambda: _http_ok("127.0.0.1", MINIO_PORT, "/minio/health/live"),
        "registry": lambda: _http_ok("127.0.0.1", REGISTRY_PORT, registry.HEALTH_PATH),
    }
    client = KubeClient.for_pki(config.pki, "admin")
    for name in ("etcd", "kube-apiserver", "controller-manager", "scheduler", "minio",
                 "registry"):
        if processes.running_pid(config, name) is None:
            log(f"starting {name}")
            processes.spawn(config, name, _argv(config, bin_dir, name, opts),
                            _component_env(config, name), cwd=config.state_dir)
        # The control plane must be ready before its clients start, the registry before
        # the nodes pull; the rest are checked together below.
        if name in ("etcd", "kube-apiserver", "registry"):
            _wait("ready", checks[name], opts.timeout, config, name)
    _start_real_nodes(config, bin_dir, opts, log)
    for name in ("controller-manager", "scheduler", "minio"):
        _wait("ready", checks[name], opts.timeout, config, name)
    _start_provisioner(config, bin_dir, client, opts, log)
    _wait("Ready", lambda: _nodes_ready(client, _node_names(opts)), opts.timeout, config,
          "kubelet-forja-node-0")
    creds = load_or_create_credentials(config.state_dir / "minio.json")
    create_bucket("127.0.0.1", MINIO_PORT, opts.bucket, creds)
    info = ClusterInfo(
        state_dir=str(config.state_dir),
        kubeconfig=str(config.kubeconfig("admin")),
        bin_dir=str(bin_dir),
        api_server=f"https://127.0.0.1:{API_PORT}",
        # Real pods have their own loopback: they reach MinIO on the namespace's address.
        s3_endpoint=f"http://{HOST_IP}:{MINIO_PORT}",
        s3_access_key=creds.access_key,
        s3_secret_key=creds.secret_key,
        bucket=opts.bucket,
        checkout=str(CHECKOUT),
        nodes=_node_names(opts),
        gpus_per_node=opts.gpus,
        registry=registry.NAME,
    )
    info.save(config.info_file)
    ACTIVE_MARKER.parent.mkdir(parents=True, exist_ok=True)
    ACTIVE_MARKER.write_text(json.dumps({"state_dir": str(config.state_dir)}))
    log(f"cluster ready in {time.monotonic() - t0:.1f} s")
    return info


def _start_provisioner(config: ClusterConfig, bin_dir: Path, admin: KubeClient,
                       opts: StartOptions, log: Callable[[str], None]) -> None:
    """PersistentVolumes for claims, under a ClusterRole that allows only that."""
    provisioner.apply_rbac(admin)
    if processes.running_pid(config, "provisioner") is None:
        log("starting provisioner")
        processes.spawn(config, "provisioner", _argv(config, bin_dir, "provisioner", opts),
                        _component_env(config, "provisioner"), cwd=config.state_dir)
    # Its StorageClass is there once it runs with its own identity's permissions.
    _wait("serving its StorageClass", lambda: bool(admin.get(
        f"/apis/storage.k8s.io/v1/storageclasses/{provisioner.STORAGE_CLASS}")),
          opts.timeout, config, "provisioner")


def _refuse_agent_state(config: ClusterConfig) -> None:
    """State made for the removed node agent holds its Nodes in etcd, and a kubelet
    finding its Node there does not take its labels (forja.dev/local-node) or
    addresses (kube-proxy exits on "NodeIPs changed"): it is not reused."""
    try:
        runtime = json.loads(config.info_file.read_text()).get("node_runtime")
    except (OSError, ValueError):
        return
    if runtime == "agent":
        raise ClusterError(
            f"{config.state_dir} is a cluster of the removed process-running node agent; "
            "delete it first: python -m forja_localcluster stop --purge")


def _node_components(count: int) -> list[str]:
    """Real-node processes in start order (stop in reverse)."""
    names = [f"containerd-forja-node-{i}" for i in range(count)]
    names += [f"{kind}-forja-node-{i}" for i in range(count) for kind in ("kubelet", "fakegpu")]
    return [*names, "kube-proxy"]


def _start_real_nodes(config: ClusterConfig, bin_dir: Path, opts: StartOptions,
                      log: Callable[[str], None]) -> None:
    specs = nodes.node_specs(config, opts.nodes)
    nodes.share_node_mounts(config)
    for node in specs:
        netaddr.ensure_address(node.ip)
        nodes.prepare_node(config, node)
        ensure_node_pki(config, node.name, node.ip)
        name = f"containerd-{node.name}"
        if processes.running_pid(config, name) is None:
            log(f"starting {name}")
            processes.spawn(config, name, nodes.containerd_argv(node), dict(os.environ),
                            cwd=node.dir, wrapper=nodes.host_mount_ns())
        _wait("serving", node.socket.exists, opts.timeout, config, name)
    nodes.ensure_pause_image(bin_dir)
    _load_images(specs, specs, [nodes.PAUSE_IMAGE, *(image_ref(n) for n in opts.images)], log)
    for node in specs:
        for name, argv, wrapper in (
            (f"kubelet-{node.name}", nodes.kubelet_argv(config, node, bin_dir),
             nodes.kubelet_wrapper(node)),
            (f"fakegpu-{node.name}", nodes.fakegpu_argv(node, bin_dir, opts.gpus),
             nodes.host_mount_ns()),
        ):
            if processes.running_pid(config, name) is None:
                log(f"starting {name}")
                processes.spawn(config, name, argv, dict(os.environ), cwd=node.dir,
                                wrapper=wrapper)
    nodes.ensure_service_route()
    if processes.running_pid(config, "kube-proxy") is None:
        log("starting kube-proxy")
        processes.spawn(config, "kube-proxy", nodes.kube_proxy_argv(config, bin_dir),
                        dict(os.environ), cwd=config.state_dir, wrapper=nodes.host_mount_ns())


def load_images(config: ClusterConfig, names: list[str], only: list[str] | None,
                log: Callable[[str], None]) -> None:
    """Push more images to the registry and pull them into the running nodes (all, or
    those named)."""
    info = running_info(config)
    every = nodes.node_specs(config, len(info.nodes))
    specs = [n for n in every if not only or n.name in only]
    _load_images(specs, every, [image_ref(n) for n in names], log)


def _load_images(specs: list[nodes.NodeSpec], every: list[nodes.NodeSpec], refs: list[str],
                 log: Callable[[str], None]) -> None:
    """Pull ``refs`` into ``specs``, sharing the layers after each image: until they are
    linked, every node holds its own copy, and the disk must hold only one image's extra
    copies at a time (the trainer's 7 GB, not the sum of all images')."""
    for ref in refs:
        if nodes.load_image(specs, ref, log):
            # Against every node's layers: one just pulled may repeat another's.
            nodes.share_layers(every, log)


def node_down(config: ClusterConfig, name: str, log: Callable[[str], None]) -> None:
    """Power a real node off, as far as the cluster can tell: its kubelet and device
    plugin stop and its containers are killed (no graceful end, no status written).
    Its containerd stays so that ``stop`` can clean up; ``start`` brings the node back."""
    spec = _real_node(config, name)
    for component in (f"kubelet-{name}", f"fakegpu-{name}"):
        if processes.stop(config, component, grace=0.0):
            log(f"stopped {component}")
    log(f"killed {nodes.kill_containers(spec)} container(s) of {name}")


def kill_container(config: ClusterConfig, name: str, container_id: str, signal: str,
                   log: Callable[[str], None]) -> None:
    """Signal one container's process through its node's containerd, as a crash or the
    kernel would: the kubelet learns of it only from the exit, as on a real node."""
    spec = _real_node(config, name)
    try:
        nodes.kill_task(spec, container_id.removeprefix("containerd://"), signal)
    except OSError as exc:
        raise ClusterError(str(exc)) from exc
    log(f"sent {signal} to container {container_id[:24]} on {name}")


def running_info(config: ClusterConfig) -> ClusterInfo:
    """The started cluster's cluster.json, or a ClusterError that says how to start one."""
    if not config.info_file.exists():
        raise ClusterError(f"no cluster in {config.state_dir}: "
                           "run python -m forja_localcluster start")
    return ClusterInfo.load(config.info_file)


def _real_node(config: ClusterConfig, name: str) -> nodes.NodeSpec:
    info = running_info(config)
    spec = next((n for n in nodes.node_specs(config, len(info.nodes)) if n.name == name), None)
    if spec is None:
        raise ClusterError(f"no node {name}; the nodes are {', '.join(info.nodes)}")
    return spec


def image_ref(name: str) -> str:
    chart = (CHECKOUT / "helm" / "forja" / "Chart.yaml").read_text()
    version = next(line.split('"')[1] for line in chart.splitlines()
                   if line.startswith("appVersion:"))
    return f"localhost/forja/{name}:{version}"


def status(config: ClusterConfig) -> list[ComponentStatus]:
    """One line per component: alive, healthy, and what was checked."""
    result = []
    info = ClusterInfo.load(config.info_file) if config.info_file.exists() else None
    extra = _node_components(len(info.nodes)) if info else []
    for name in [*reversed(COMPONENTS), *extra]:
        pid = processes.running_pid(config, name)
        detail = "not running" if pid is None else f"pid {pid}"
        healthy = pid is not None
        if pid is not None and name == "kube-apiserver":
            try:
                healthy = _http_ok("127.0.0.1", API_PORT, "/readyz", _admin_context(config))
            except (OSError, http.client.HTTPException):
                healthy = False
            detail += ", /readyz ok" if healthy else ", /readyz failing"
        if pid is not None and name == "registry":
            try:
                healthy = _http_ok("127.0.0.1", REGISTRY_PORT, registry.HEALTH_PATH)
            except (OSError, http.client.HTTPException):
                healthy = False
            detail += f", {registry.NAME} " + ("serving" if healthy else "not answering")
        if pid is not None and name.startswith("kubelet-"):
            # A running kubelet is not yet a usable node: the Node's condition says.
            node = name.removeprefix("kubelet-")
            try:
                healthy = _nodes_ready(KubeClient.for_pki(config.pki, "admin"), [node])
            except (OSError, ClusterError):
                healthy = False
            detail += f", Node {node} " + ("Ready" if healthy else "not Ready")
        result.append(ComponentStatus(name, pid, healthy, detail))
    return result


def stop(config: ClusterConfig, purge: bool, log: Callable[[str], None]) -> None:
    """Stop every component (the nodes' containers first); ``purge`` deletes all state."""
    with _start_lock(config):
        _stop(config, purge, log)


def _stop(config: ClusterConfig, purge: bool, log: Callable[[str], None]) -> None:
    _stop_addons(config, log)
    found = sorted((config.state_dir / "nodes").glob("forja-node-*"))
    real = nodes.node_specs(config, len(found))
    components = _node_components(len(real))
    # Kubelets first, then every container while containerd still answers, then it.
    for name in reversed(components):
        if name.startswith("containerd-") and name == f"containerd-{real[-1].name}":
            nodes.cleanup(config, real)
        if processes.stop(config, name, grace=15.0):
            log(f"stopped {name}")
    if real:
        nodes.unmount_under(config.state_dir / "nodes")
        nodes.remove_bridges(real)
    for name in (*RETIRED, *COMPONENTS):
        if processes.stop(config, name, grace=30.0 if name in RETIRED else 10.0):
            log(f"stopped {name}")
    if active_cluster_dir() in (None, config.state_dir):
        ACTIVE_MARKER.unlink(missing_ok=True)
    netaddr.remove_all()
    if purge and config.state_dir.exists():
        shutil.rmtree(config.state_dir)
        log(f"removed {config.state_dir}")


def _stop_addons(config: ClusterConfig, log: Callable[[str], None]) -> None:
    """Kueue and Argo CD, started beside this cluster against its API server, go first:
    left running they would outlive it (a purge would delete their state under them),
    and Kueue removes its webhooks while the API server still answers."""
    if not config.info_file.exists():
        return
    info = ClusterInfo.load(config.info_file)
    addons: tuple[tuple[str, Kueue | ArgoCD], ...] = (("kueue", Kueue(info=info)),
                                                      ("argocd", ArgoCD(info=info)))
    for name, addon in addons:
        running = addon.running()
        addon.stop()
        if running:
            log(f"stopped {name}")


def info_json(config: ClusterConfig) -> str:
    return json.dumps(json.loads(config.info_file.read_text()), indent=2)

