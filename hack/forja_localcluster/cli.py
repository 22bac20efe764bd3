"""``python -m forja_localcluster start|stop|status|env|info``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from forja_localcluster import control_plane
from forja_localcluster.config import ClusterConfig, ClusterInfo
from forja_localcluster.errors import ClusterError

__all__ = ["main"]


def _log(message: str) -> None:
    print(f"[forja-cluster] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forja-cluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start the cluster, or reuse the running one")
    start.add_argument("--nodes", type=int, default=1, help="Nodes the agent registers")
    start.add_argument("--gpus", type=int, default=2, help="nvidia.com/gpu per node")
    start.add_argument("--timeout", type=float, default=180.0, help="seconds per component")
    start.add_argument("--node-runtime", choices=control_plane.NODE_RUNTIMES, default="agent",
                       help="kubelet: real kubelets on containerd running forja's images; "
                            "agent: the process-running stand-in")
    start.add_argument("--images", default="operator,server",
                       help="images (hack/build-images.sh names) loaded into real nodes")
    stop = sub.add_parser("stop", help="stop every component")
    stop.add_argument("--purge", action="store_true", help="also delete the state directory")
    load = sub.add_parser("load-images", help="import built images into real nodes' containerd")
    load.add_argument("images", nargs="+", help="hack/build-images.sh names, e.g. trainer")
    load.add_argument("--node", action="append", help="only these nodes (default: all)")
    down = sub.add_parser("node-down", help="power a real node off: stop its kubelet, kill "
                          "its containers (start brings it back)")
    down.add_argument("node", help="e.g. forja-node-1")
    sub.add_parser("status", help="report each component")
    sub.add_parser("env", help="print shell exports (eval \"$(forja-cluster env)\")")
    sub.add_parser("info", help="print cluster.json")
    secret = sub.add_parser("s3-secret", help="print a Secret manifest with the S3 credentials")
    secret.add_argument("-n", "--namespace", required=True)
    secret.add_argument("--name", default="forja-s3")
    args = parser.parse_args(argv)
    config = ClusterConfig()
    try:
        if args.command == "start":
            opts = control_plane.StartOptions(
                nodes=args.nodes, gpus=args.gpus, timeout=args.timeout,
                node_runtime=args.node_runtime,
                images=tuple(i for i in args.images.split(",") if i),
            )
            info = control_plane.start(config, opts, _log)
            print(info.kubeconfig)
        elif args.command == "load-images":
            control_plane.load_images(config, args.images, args.node, _log)
        elif args.command == "node-down":
            control_plane.node_down(config, args.node, _log)
        elif args.command == "stop":
            control_plane.stop(config, args.purge, _log)
        elif args.command == "status":
            rows = control_plane.status(config)
            for row in rows:
                mark = "ok  " if row.healthy else "DOWN"
                print(f"{mark} {row.name:20} {row.detail}")
            return 0 if all(r.healthy for r in rows) else 1
        elif args.command == "env":
            if not config.info_file.exists():
                _log("no cluster.json; run: python -m forja_localcluster start")
                return 1
            for key, value in ClusterInfo.load(config.info_file).env().items():
                print(f"export {key}={shlex.quote(value)}")
        elif args.command == "info":
            print(control_plane.info_json(config))
        elif args.command == "s3-secret":
            info = ClusterInfo.load(config.info_file)
            print(json.dumps({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": args.name, "namespace": args.namespace},
                "stringData": info.s3_secret_data(),
            }, indent=2))
    except ClusterError as exc:
        _log(f"error: {exc}")
        return 1
    return 0
