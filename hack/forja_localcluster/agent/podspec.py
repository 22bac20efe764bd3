"""Pure functions from a pod spec to what a container process needs.

Nothing here talks to the API server: lookups of Secrets and ConfigMaps are passed
in as callables, so these functions are unit-tested with plain dicts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

__all__ = [
    "EnvError",
    "Mount",
    "container_env",
    "expand",
    "field_value",
    "parse_quantity",
    "should_restart",
]

JSON = dict[str, Any]
Lookup = Callable[[str, str], "Mapping[str, str] | None"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


class EnvError(Exception):
    """A container's env cannot be built (a missing Secret, key or field); names it."""


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity ("512Mi", "250m", "1e3") as a number."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = Decimal(match.group(1)), match.group(2)
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _REF.sub(repl, text)


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: JSON, path: str) -> str:
    """The value of a downward-API ``fieldRef.fieldPath`` for ``pod``."""
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
    }
    if path in simple:
        return str(simple[path])
    if path == "status.podIPs":
        return ",".join(p["ip"] for p in status.get("podIPs", []))
    if path == "status.hostIPs":
        return ",".join(p["ip"] for p in status.get("hostIPs", []))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1], {}) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    match = _SUBSCRIPT.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise EnvError(f"fieldRef.fieldPath {path!r} is not supported")


def resource_value(container: JSON, ref: JSON) -> str:
    """The value of a ``resourceFieldRef`` (limits/requests cpu/memory) with its divisor."""
    kind, _, name = ref["resource"].partition(".")
    resources = container.get("resources", {}) or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None:
        raw = (resources.get("limits") or {}).get(name) if kind == "requests" else None
    if raw is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor", "1"))
    value = parse_quantity(raw) / divisor
    # Kubernetes rounds up to an integer (at least 1 for non-zero).
    integer = int(value.to_integral_value(rounding="ROUND_CEILING"))
    return str(integer)


def _key_ref(kind: str, ref: JSON, namespace: str, lookup: Lookup, var: str) -> str | None:
    data = lookup(namespace, ref["name"])
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise EnvError(f"env {var}: {kind} {namespace}/{ref['name']} not found")
    if ref["key"] not in data:
        if optional:
            return None
        raise EnvError(f"env {var}: key {ref['key']!r} not in {kind} {namespace}/{ref['name']}")
    return data[ref["key"]]


def container_env(
    pod: JSON,
    container: JSON,
    base: Mapping[str, str],
    secrets: Lookup,
    config_maps: Lookup,
) -> dict[str, str]:
    """The full environment of a container: ``base``, then envFrom, then env, in order."""
    namespace = pod["metadata"]["namespace"]
    env = dict(base)
    for source in container.get("envFrom", []) or []:
        prefix = source.get("prefix", "")
        for kind, lookup in (("configMapRef", config_maps), ("secretRef", secrets)):
            ref = source.get(kind)
            if ref is None:
                continue
            data = lookup(namespace, ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                raise EnvError(f"envFrom: {kind} {namespace}/{ref['name']} not found")
            for key, value in data.items():
                env[prefix + key] = value
    for var in container.get("env", []) or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        resolved: str | None
        if "secretKeyRef" in source:
            resolved = _key_ref("Secret", source["secretKeyRef"], namespace, secrets, name)
        elif "configMapKeyRef" in source:
            resolved = _key_ref("ConfigMap", source["configMapKeyRef"], namespace, config_maps,
                                name)
        elif "fieldRef" in source:
            resolved = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            resolved = resource_value(container, source["resourceFieldRef"])
        else:
            raise EnvError(f"env {name}: unsupported valueFrom {sorted(source)}")
        if resolved is not None:
            env[name] = resolved
    return env


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path at a path inside the container's mount namespace."""

    source: str
    target: str
    read_only: bool = False


def should_restart(policy: str, exit_code: int) -> bool:
    """Whether a container that exited with ``exit_code`` is started again."""
    if policy == "Always":
        return True
    if policy == "OnFailure":
        return exit_code != 0
    return False


def memory_limit(container: JSON) -> int | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return int(parse_quantity(limit)) if limit is not None else None


def cpu_limit(container: JSON) -> Decimal | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("cpu")
    return parse_quantity(limit) if limit is not None else None
