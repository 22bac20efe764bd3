"""Pieces shared by the three kinds: the wire base model, conditions, resources.

Validation lives in two places that must agree: pydantic (for the operator, the
trainers and unit tests) and the CRD the generator derives from these types (for
the API server). Constraints a JSON schema can express (patterns, bounds, enums)
are written once as pydantic constraints and carried over by the generator;
rules across fields are written twice, as a pydantic validator and as a CEL rule
(:func:`cel`) beside it, and a test holds the two to the same table of invalid
objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from forja_api import semver

__all__ = [
    "API_VERSION",
    "GROUP",
    "NAME_PATTERN",
    "QUANTITY_PATTERN",
    "RANGE_PATTERN",
    "SEMVER_PATTERN",
    "VERSION",
    "AliasName",
    "ApiModel",
    "Cel",
    "Condition",
    "CrdInfo",
    "ModelName",
    "Name",
    "NameRule",
    "PrinterColumn",
    "Quantity",
    "Resources",
    "Scheduling",
    "SecretName",
    "SemVer",
    "SemVerRange",
    "Toleration",
    "cel",
    "immutable",
    "immutable_changes",

    "validations",
]

GROUP = "forja.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1123 label: the operator builds child object names and label values from it."""
_NUM = r"(0|[1-9][0-9]*)"
_PRE_ID = r"(0|[1-9][0-9]*|[0-9]*[a-z-][0-9a-z-]*)"
SEMVER_PATTERN = rf"^{_NUM}\.{_NUM}\.{_NUM}(-{_PRE_ID}(\.{_PRE_ID})*)?$"
"""A version as forja stores it: MAJOR.MINOR.PATCH with an optional lowercase
pre-release, no leading v and no +build, because a ModelVersion is named
<model>-<version> and one spelling per version keeps "is it taken?" a name lookup."""

_XR = r"(0|[1-9][0-9]*|x|X|\*)"
_PARTIAL = rf"v?{_XR}(\.{_XR}(\.{_XR}(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)?)?"
_COMPARATOR = rf"(>=|<=|>|<|=|\^|~)?\s*{_PARTIAL}"
_AND = rf"({_PARTIAL}\s+-\s+{_PARTIAL}|{_COMPARATOR}(\s+{_COMPARATOR})*)"
RANGE_PATTERN = rf"^\s*{_AND}(\s*\|\|\s*{_AND})*\s*$"
"""An npm-style range (forja_api.semver.parse_range reads it): ^1.2, ~1.2.3, 1.x,
>=1.2.0 <2.0.0, 1.2.0 - 1.4.0, alternatives joined by ||."""
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
"""A non-negative Kubernetes quantity (no exponents): 2, 500m, 4Gi."""


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
) -> dict[str, str]:
    """One CEL rule for the CRD's ``x-kubernetes-validations``.

    ``message`` is what a person reads in the refusal, so it names the field;
    ``field_path`` (relative, e.g. ``.selector``) makes the API server report the
    error at that field instead of at the object carrying the rule.
    """
    out = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    if reason:
        out["reason"] = reason
    return out


def validations(*rules: dict[str, str], **extra: Any) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules (and any other x-kubernetes-* keys)."""
    out: dict[str, Any] = dict(extra)
    if rules:
        out["x-kubernetes-validations"] = list(rules)
    return out


@dataclass(frozen=True)
class Cel:
    """``Annotated`` metadata adding one CEL rule to a field's schema.

    Unlike ``Field(json_schema_extra=...)``, which the last ``Field`` replaces,
    rules given this way accumulate: ``Annotated[SemVer, immutable("spec.version")]``
    keeps SemVer's format rule and adds the transition rule. pydantic does not
    evaluate CEL; each rule has a pydantic twin (a validator, or
    :func:`immutable_changes` for transition rules).
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = dict(handler(schema))
        rule = cel(self.rule, self.message, field_path=self.field_path, reason=self.reason)
        out["x-kubernetes-validations"] = [*out.get("x-kubernetes-validations", []), rule]
        return out


MAX_LABEL_VALUE = 63
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


@dataclass(frozen=True)
class NameRule:
    """Limits on ``metadata.name`` for a kind whose children or labels carry it: at most
    63 characters (a label value), and with ``dns1035`` a Service name (a letter first,
    no dots). The CRD enforces it with a root CEL rule, the pydantic type with a
    validator; both say ``what`` derives from the name, so the refusal explains itself.
    """

    what: str
    dns1035: bool = False

    @property
    def message(self) -> str:
        if self.dns1035:
            return (f"metadata.name: a DNS-1035 label (lower-case letters, digits and '-', a "
                    f"letter first, no dots, at most {MAX_LABEL_VALUE} characters) "
                    f"({self.what})")
        return f"metadata.name: at most {MAX_LABEL_VALUE} characters ({self.what})"

    def cel(self) -> dict[str, str]:
        rule = f"size(self.metadata.name) <= {MAX_LABEL_VALUE}"
        if self.dns1035:
            rule += f" && self.metadata.name.matches('{DNS1035_LABEL}')"
        return cel(rule, self.message, reason="FieldValueInvalid")

    def validator(self) -> Any:
        """A ``metadata`` field validator refusing what :meth:`cel` refuses."""

        def check(metadata: dict[str, Any]) -> dict[str, Any]:
            name = metadata.get("name")
            if isinstance(name, str) and name and (
                len(name) > MAX_LABEL_VALUE
                or (self.dns1035 and not re.match(DNS1035_LABEL, name))
            ):
                raise ValueError(self.message)
            return metadata

        return field_validator("metadata")(check)


def immutable(name: str, message: str | None = None) -> Cel:
    """The transition rule that freezes a field once the object exists."""
    return Cel("self == oldSelf", message or f"{name} is immutable", reason="FieldValueInvalid")


_QUANTITY_MESSAGE = "must be a non-negative Kubernetes quantity such as 2, 500m or 4Gi"


def _check_quantity(value: str) -> str:
    if not re.match(QUANTITY_PATTERN, value):
        raise ValueError(_QUANTITY_MESSAGE)
    return value


def _number_to_str(value: Any) -> Any:
    # YAML turns `cpu: 2` into an int; Kubernetes accepts both spellings, so do we.
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
"""A DNS-1123 label such as a model or stage name."""

ModelName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=50)]
"""A model series; short enough that <model>-v<version> child names stay within limits."""

AliasName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
"""An alias such as production or staging."""

SecretName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]
"""The name of a Secret in the object's namespace."""

Quantity = Annotated[
    str,
    BeforeValidator(_number_to_str),
    AfterValidator(_check_quantity),
    Field(max_length=32),
    WithJsonSchema(
        {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
    ),
    Cel(
        f"type(self) == string ? self.matches(r'{QUANTITY_PATTERN}') : self >= 0",
        _QUANTITY_MESSAGE,
    ),
]
"""A Kubernetes quantity, written as a string ("500m", "4Gi") or a number (2)."""


_SEMVER_MESSAGE = (
    "must be a semantic version MAJOR.MINOR.PATCH such as 1.2.0 "
    "(optionally a lowercase pre-release such as 2.0.0-rc.1; no leading v)"
)
_RANGE_MESSAGE = "must be a semver range such as ^1.2, ~1.2.3, 1.x or >=1.2.0 <2.0.0"


def _check_semver(value: str) -> str:
    if not re.match(SEMVER_PATTERN, value):
        raise ValueError(_SEMVER_MESSAGE)
    return value


def _check_range(value: str) -> str:
    if not re.match(RANGE_PATTERN, value):
        raise ValueError(_RANGE_MESSAGE)
    try:
        semver.parse_range(value)
    except semver.SemverError as exc:
        raise ValueError(f"{_RANGE_MESSAGE}: {exc}") from exc
    return value


SemVer = Annotated[
    str,
    AfterValidator(_check_semver),
    Field(max_length=63),
    Cel(f"self.matches(r'{SEMVER_PATTERN}')", _SEMVER_MESSAGE),
]
"""A semantic version; checked by a CEL rule so the refusal reads as English
(a schema pattern would quote the regular expression at the user)."""

SemVerRange = Annotated[
    str,
    AfterValidator(_check_range),
    Field(max_length=128),
    Cel(f"self.matches(r'{RANGE_PATTERN}')", _RANGE_MESSAGE),
]
"""An npm-style semver range, read by forja_api.semver.parse_range."""


class ApiModel(BaseModel):
    """camelCase on the wire (as Kubernetes), snake_case in Python; unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

    immutable_fields: ClassVar[tuple[str, ...]] = ()
    """Fields that never change once the object exists (the CRD says so with self == oldSelf)."""

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def immutable_changes(old: ApiModel, new: ApiModel) -> list[str]:
    """The immutable spec fields ``new`` changes, as ``spec.<wireName>`` (what the CRD refuses)."""
    fields = type(old).model_fields
    return [
        f"spec.{fields[name].alias or name}"
        for name in type(old).immutable_fields
        if getattr(old, name) != getattr(new, name)
    ]


class Condition(ApiModel):
    """A Kubernetes-style condition, keyed by type (metav1.Condition)."""

    type: str = Field(max_length=316)
    """The aspect this condition describes, e.g. Ready, Succeeded, ArtifactVerified."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds: True, False or Unknown."""
    reason: str = Field(default="", max_length=1024)
    """A CamelCase reason, one of the documented constants in forja_api.conditions."""
    message: str = Field(default="", max_length=32768)
    """A person-readable explanation."""
    last_transition_time: str | None = Field(
        default=None, json_schema_extra={"format": "date-time"}
    )
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was computed from."""


class Resources(ApiModel):
    """What one pod asks for; requests equal limits. GPUs become nvidia.com/gpu limits."""

    gpus: int = Field(default=0, ge=0, le=64)
    """Number of NVIDIA GPUs (nvidia.com/gpu). A pod that asks for GPUs fails fast when none
    is visible."""
    cpu: Quantity | None = None
    """CPU request and limit as a Kubernetes quantity, e.g. 2 or "500m"."""
    memory: Quantity | None = None
    """Memory request and limit as a Kubernetes quantity, e.g. "4Gi". Going over it is an OOM
    kill."""


class Toleration(ApiModel):
    """A core/v1 toleration: a taint the pod accepts."""

    key: str | None = Field(default=None, max_length=253)
    """The taint key; empty with operator Exists tolerates every taint."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (the default)."""
    value: str | None = Field(default=None, max_length=63)
    """The taint value for operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect to tolerate; empty means all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""


class Scheduling(ApiModel):
    """Where pods may run."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the pod must match, e.g. {"nvidia.com/gpu.product": "A100"}."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Taints the pod tolerates, e.g. the GPU nodes' taint."""
    priority_class_name: str | None = Field(default=None, max_length=253)
    """A PriorityClass; lower-priority training attempts may be preempted and then resume."""


@dataclass(frozen=True)
class PrinterColumn:
    """One column of `kubectl get` (additionalPrinterColumns)."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str
    priority: int = 0

    def to_crd(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            out["priority"] = self.priority
        return out


AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation")


@dataclass(frozen=True)
class CrdInfo:
    """How a kind is published: names, columns, subresources. Read by forja_api.crdgen."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    description: str
    columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("forja", "ml")
    scale: dict[str, str] | None = None
    root_rules: tuple[dict[str, str], ...] = field(default_factory=tuple)
    """CEL rules on the whole object (they may read metadata.name)."""
