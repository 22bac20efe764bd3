"""``python -m forja_localcluster start|stop|status|env|info|...`` (``--help`` lists all)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable

from forja_localcluster import control_plane
from forja_localcluster.config import ClusterConfig
from forja_localcluster.errors import ClusterError

__all__ = ["main"]


def _log(message: str) -> None:
    print(f"[forja-cluster] {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forja-cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the cluster, or reuse the running one")
    start.add_argument("--nodes", type=int, default=2,
                       help="real nodes (kubelet, containerd, runc, CNI)")
    start.add_argument("--gpus", type=int, default=2, help="nvidia.com/gpu per node")
    start.add_argument("--timeout", type=float, default=180.0, help="seconds per component")
    start.add_argument("--images", default="operator,server",
                       help="images (hack/build-images.sh names) pushed and pulled into every node")
    stop = sub.add_parser("stop", help="stop every component")
    stop.add_argument("--purge", action="store_true", help="also delete the state directory")
    load = sub.add_parser("load-images",
                          help="push built images to the registry; the nodes pull them")
    load.add_argument("images", nargs="+", help="hack/build-images.sh names, e.g. trainer")
    load.add_argument("--node", action="append", help="only these nodes (default: all)")
    down = sub.add_parser("node-down", help="power a real node off: stop its kubelet, kill "
                          "its containers (start brings it back)")
    down.add_argument("node", help="e.g. forja-node-1")
    kill = sub.add_parser("kill-container", help="signal a container's process on a real "
                          "node (a crash drill; the ID is the pod status' containerID)")
    kill.add_argument("node", help="e.g. forja-node-1")
    kill.add_argument("container_id", help="containerd://<id> or <id>")
    kill.add_argument("--signal", default="SIGKILL")
    sub.add_parser("status", help="report each component")
    sub.add_parser("env", help="print shell exports (eval \"$(forja-cluster env)\")")
    sub.add_parser("info", help="print cluster.json")
    secret = sub.add_parser("s3-secret", help="print a Secret manifest with the S3 credentials")
    secret.add_argument("-n", "--namespace", required=True)
    secret.add_argument("--name", default="forja-s3")
    return parser


def _start(config: ClusterConfig, args: argparse.Namespace) -> int:
    opts = control_plane.StartOptions(
        nodes=args.nodes, gpus=args.gpus, timeout=args.timeout,
        images=tuple(i for i in args.images.split(",") if i),
    )
    print(control_plane.start(config, opts, _log).kubeconfig)
    return 0


def _status(config: ClusterConfig, args: argparse.Namespace) -> int:
    rows = control_plane.status(config)
    for row in rows:
        mark = "ok  " if row.healthy else "DOWN"
        print(f"{mark} {row.name:24} {row.detail}")
    return 0 if all(r.healthy for r in rows) else 1


def _env(config: ClusterConfig, args: argparse.Namespace) -> int:
    for key, value in control_plane.running_info(config).env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _s3_secret(config: ClusterConfig, args: argparse.Namespace) -> int:
    info = control_plane.running_info(config)
    print(json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": args.name, "namespace": args.namespace},
        "stringData": info.s3_secret_data(),
    }, indent=2))
    return 0


def _done(action: Callable[[], object]) -> int:
    action()
    return 0


COMMANDS: dict[str, Callable[[ClusterConfig, argparse.Namespace], int]] = {
    "start": _start,
    "stop": lambda c, a: _done(lambda: control_plane.stop(c, a.purge, _log)),
    "load-images": lambda c, a: _done(
        lambda: control_plane.load_images(c, a.images, a.node, _log)),
    "node-down": lambda c, a: _done(lambda: control_plane.node_down(c, a.node, _log)),
    "kill-container": lambda c, a: _done(
        lambda: control_plane.kill_container(c, a.node, a.container_id, a.signal, _log)),
    "status": _status,
    "env": _env,
    "info": lambda c, a: _done(lambda: print(control_plane.info_json(c))),
    "s3-secret": _s3_secret,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](ClusterConfig(), args)
    except ClusterError as exc:
        _log(f"error: {exc}")
        return 1
