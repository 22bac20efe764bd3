"""``python -m forja_server``: parse the config, load the models, serve until SIGTERM.

Start-up: the HTTP server comes up at once (liveness answers) while the stages
are fetched, verified, loaded and warmed up in a thread; readiness turns true
after that. A load failure (a digest mismatch included) exits non-zero with the
reason on stderr, so the pod restarts and the reason shows in its status.

Shutdown on SIGTERM: readiness turns false first, the server keeps serving for
``drain`` seconds so endpoints can drop the pod, then stops accepting and gives
in-flight requests ``graceful_shutdown_seconds`` to finish.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from forja_server.app import create_app
from forja_server.config import ConfigError, bind_host, cache_dir, parse_args, parse_config
from forja_server.errors import ServerError
from forja_server.repository import ModelRepository

__all__ = ["DrainingServer", "RedactSecrets", "main"]

log = logging.getLogger("forja_server")
EXIT_LOAD_FAILED = 3
EXIT_INVALID_CONFIG = 2


class RedactSecrets(logging.Filter):
    """Masks credential values (and anything shaped like one) in every log record."""

    _PATTERN = re.compile(
        r"(?i)(aws_secret_access_key|aws_access_key_id|secret|password|token|authorization)"
        r"(['\"]?\s*[:=]\s*['\"]?)([^\s'\",}&]+)"
    )

    def __init__(self) -> None:
        super().__init__()
        self._values = [v for k, v in os.environ.items()
                        if v and len(v) >= 6 and re.search(r"(?i)secret|key_id|token|passw", k)]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = self._PATTERN.sub(r"\1\2***", msg)
        for value in self._values:
            clean = clean.replace(value, "***")
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM first flips readiness and waits ``drain`` seconds."""

    def __init__(self, config: uvicorn.Config, repo: ModelRepository, drain: float) -> None:
        super().__init__(config)
        self.repo = repo
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.repo.draining or self.drain <= 0:
            self.repo.draining = True
            super().handle_exit(sig, frame)
            return
        self.repo.draining = True
        log.info("signal %s: readiness false, draining for %.1f s", sig, self.drain)
        loop = asyncio.get_event_loop()
        loop.call_later(self.drain, super().handle_exit, sig, frame)


def freeze_heap() -> None:
    """Move everything alive after loading (modules, the runtime, the app) out of the
    cyclic GC's reach. Otherwise each full collection walks that whole heap while the
    event loop and the batcher wait: under load these pauses were 20-48 ms each and
    set the p99 (bench/server/side_by_side.py, docs/server.md "Side by side")."""
    gc.collect()
    gc.freeze()


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging(args.log_level)
    try:
        config = parse_config(args, os.environ)
    except ConfigError as exc:
        print(f"forja_server: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    repo = ModelRepository(config, cache_dir(os.environ))
    server: DrainingServer | None = None
    failure: list[str] = []

    async def load() -> None:
        try:
            await asyncio.to_thread(repo.load_all)
        except Exception as exc:  # any failure, a runtime's own error types included
            # A server that cannot load must exit with the reason, never sit unready.
            reason = exc.message if isinstance(exc, ServerError) else \
                f"{type(exc).__name__}: {exc}"
            failure.append(reason)
            log.error("loading failed: %s", reason)
            repo.load_error = reason
            if server is not None:
                server.should_exit = True
        else:
            freeze_heap()
            log.info("ready: serving %s", ", ".join(repo.names()))

    host = bind_host(config, os.environ)
    grpc_host = f"[{host}]" if ":" in host else host
    app = create_app(repo, load=load,
                     grpc_address=f"{grpc_host}:{config.grpc_port}" if config.grpc_port else None)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=config.port,
        log_level=args.log_level.lower(),
        access_log=False,  # per-request lines cost ~10% throughput; metrics count requests
        timeout_graceful_shutdown=int(config.graceful_shutdown_seconds) or None,
        limit_concurrency=int(os.environ.get("FORJA_MAX_CONCURRENCY", "1024")),
        timeout_keep_alive=30,
        log_config=None,
    )
    drain = float(os.environ.get("FORJA_DRAIN_SECONDS", "3"))
    server = DrainingServer(uv_config, repo, drain=drain)
    server.run()
    if failure:
        print(f"forja_server: could not load the model: {failure[0]}", file=sys.stderr)
        return EXIT_LOAD_FAILED
    return 0


