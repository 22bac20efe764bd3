"""The part of the kubelet API that ``kubectl logs`` reaches through the API server:
``GET /containerLogs/<namespace>/<pod>/<container>`` with ``previous``, ``tailLines``,
``limitBytes`` and ``follow``. Served over TLS on each node address; only clients
with a certificate from the cluster CA (the API server's kubelet client) get in.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from forja_localcluster.config import KUBELET_PORT, ClusterConfig

if TYPE_CHECKING:
    from forja_localcluster.agent.agent import LogRegistry

__all__ = ["serve_logs"]


def _handler(logs: LogRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 4 or parts[0] != "containerLogs":
                self.send_error(404, "only /containerLogs/<ns>/<pod>/<container> is served")
                return
            query = urllib.parse.parse_qs(url.query)
            files = logs.files(parts[1], parts[2], parts[3])
            previous = query.get("previous", ["false"])[0] == "true"
            if not files or (previous and len(files) < 2):
                self.send_error(404, f"no logs for {'/'.join(parts[1:])}")
                return
            path = files[-2] if previous else files[-1]
            data = path.read_bytes()
            if "tailLines" in query:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(query["tailLines"][0]):])
            if "limitBytes" in query:
                data = data[: int(query["limitBytes"][0])]
            follow = query.get("follow", ["false"])[0] == "true"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if not follow:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if not follow:
                return
            offset = path.stat().st_size
            idle = 0.0
            while idle < 3600 and logs.files(parts[1], parts[2], parts[3])[-1] == path:
                size = path.stat().st_size
                if size > offset:
                    with open(path, "rb") as f:
                        f.seek(offset)
                        self.wfile.write(f.read(size - offset))
                        self.wfile.flush()
                    offset, idle = size, 0.0
                time.sleep(0.5)
                idle += 0.5

    return Handler


def serve_logs(config: ClusterConfig, addresses: list[str], logs: LogRegistry) -> None:
    """Start one TLS server thread per node address."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(config.pki / "ca.crt"))
    context.load_cert_chain(str(config.pki / "kubelet.crt"), str(config.pki / "kubelet.key"))
    context.verify_mode = ssl.CERT_REQUIRED
    for address in addresses:
        server = ThreadingHTTPServer((address, KUBELET_PORT), _handler(logs))
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True, name=f"logs-{address}").start()
