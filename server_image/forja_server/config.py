"""Reading the server's typed configuration once at start (env, then flags).

The type is :class:`forja_api.serving.ServingConfig`, shared with the
operator. Errors name the field that was wrong.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from forja_api.contract import POD_IP_ENV
from forja_api.serving import (
    DEFAULT_MODEL_CACHE,
    MODEL_CACHE_ENV,
    SERVER_CONFIG_ENV,
    ServingConfig,
)

__all__ = ["ConfigError", "bind_host", "cache_dir", "parse_args", "parse_config"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m forja_server",
        description=f"Serve a forja ModelVersion (or a pipeline). The operator sets "
        f"{SERVER_CONFIG_ENV}; flags override it for local runs.",
    )
    p.add_argument("--config", help="the whole ServingConfig as JSON")
    p.add_argument("--name", help="served model name")
    p.add_argument("--model-uri", help="artifact uri (manifest or single file)")
    p.add_argument("--sha256", help="the artifact's sha256")
    p.add_argument("--format", help="artifact format, e.g. torch-state-dict")
    p.add_argument("--task", help="task, when the artifact has no manifest")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--grpc-port", type=int, help="gRPC port (0 turns gRPC off)")
    p.add_argument("--max-batch-size", type=int)
    p.add_argument("--max-latency-ms", type=float)
    p.add_argument("--log-level", default=os.environ.get("FORJA_LOG_LEVEL", "info"))
    return p.parse_args(argv)


def parse_config(args: argparse.Namespace, env: Mapping[str, str]) -> ServingConfig:
    raw_text = args.config or env.get(SERVER_CONFIG_ENV)
    data: dict[str, Any] = {}
    if raw_text:
        try:
            data = json.loads(raw_text)
        except ValueError as exc:
            raise ConfigError(f"{SERVER_CONFIG_ENV}: not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{SERVER_CONFIG_ENV}: must be a JSON object")
    if args.model_uri:
        stage: dict[str, Any] = {
            "name": args.name or "model",
            "uri": args.model_uri,
            "sha256": args.sha256 or "",
            "format": args.format or "",
        }
        if args.task:
            stage["task"] = args.task
        data["stages"] = [stage]
        data.setdefault("name", args.name or "model")
    elif args.name:
        data["name"] = args.name
    for key, value in (("host", args.host), ("port", args.port),
                       ("grpcPort", args.grpc_port)):
        if value is not None:
            data[key] = value
    batching = dict(data.get("batching") or {})
    if args.max_batch_size is not None:
        batching["maxBatchSize"] = args.max_batch_size
    if args.max_latency_ms is not None:
        batching["maxLatencyMs"] = args.max_latency_ms
    if batching:
        data["batching"] = batching
    if not data.get("stages"):
        raise ConfigError(f"stages: set {SERVER_CONFIG_ENV} or --model-uri/--sha256/--format")
    try:
        return ServingConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{loc}: {first['msg']}") from None


def bind_host(config: ServingConfig, env: Mapping[str, str]) -> str:
    return config.host or env.get(POD_IP_ENV) or "0.0.0.0"  # noqa: S104 - a pod's own IP


def cache_dir(env: Mapping[str, str]) -> Path:
    return Path(env.get(MODEL_CACHE_ENV, DEFAULT_MODEL_CACHE))
