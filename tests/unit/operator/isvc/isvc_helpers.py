"""Small builders of test objects for the InferenceService unit tests."""

from __future__ import annotations

from typing import Any

from forja_operator.inferenceservice.resolve import VersionRecord

SHA = "a" * 64


def record(
    version: str,
    model: str = "smoke",
    *,
    ready: bool = True,
    aliases: tuple[str, ...] = (),
    fmt: str = "onnx",
) -> VersionRecord:
    return VersionRecord(
        name=f"{model}-{version.replace('.', '-')}",
        model=model,
        version=version,
        format=fmt,
        uri=f"s3://models/{model}/{version}/forja-model.json",
        sha256=SHA,
        ready=ready,
        aliases=aliases,
    )


def isvc_body(
    spec: dict[str, Any],
    *,
    name: str = "svc",
    status: dict[str, Any] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    return {
        "apiVersion": "forja.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": generation},
        "spec": spec,
        "status": status or {},
    }
