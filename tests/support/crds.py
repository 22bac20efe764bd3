"""Minimal CRDs for operator tests until the generated crds/ land on main.

They accept any spec (preserve-unknown-fields) but have the status subresource,
so the operator's status patches and kubectl wait behave as with the real ones.
Prefer crds/ when it exists: tests call :func:`crd_documents`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KINDS = {
    "TrainingJob": "trainingjobs",
    "ModelVersion": "modelversions",
    "InferenceService": "inferenceservices",
}


def minimal_crd(kind: str, plural: str) -> dict[str, Any]:
    loose = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.forja.dev"},
        "spec": {
            "group": "forja.dev",
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "plural": plural,
                "singular": kind.lower(),
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": loose, "status": loose},
                        }
                    },
                }
            ],
        },
    }


def crd_documents() -> list[dict[str, Any]]:
    generated = sorted((ROOT / "crds").glob("*.yaml")) if (ROOT / "crds").is_dir() else []
    if generated:
        docs: list[dict[str, Any]] = []
        for f in generated:
            docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
        return docs
    return [minimal_crd(k, p) for k, p in KINDS.items()]


if __name__ == "__main__":
    print(yaml.safe_dump_all(crd_documents()))
