"""Which ModelVersions an InferenceService serves: exact version, semver range or alias.

Only Ready versions of the selector's model in the service's namespace count. A
service resolves to a :class:`Revision`: one :class:`ResolvedStage` per pipeline
stage (one for a single-model service). The revision's ``version`` string is what
status and events show; its ``slug`` names the Deployment serving it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from forja_api import semver
from forja_api.v1alpha1.inferenceservice import InferenceServiceSpec, VersionSelector
from forja_operator.inferenceservice.errors import InvalidServiceSpecError, NoMatchingVersionError

__all__ = [
    "LATEST_ALIAS",
    "SINGLE_STAGE",
    "ResolvedStage",
    "Revision",
    "VersionRecord",
    "describe_selector",
    "record_from_body",
    "resolve_selector",
    "resolve_service",
    "selector_models",
]

LATEST_ALIAS = "latest"
SINGLE_STAGE = "model"
READY_PHASE = "Ready"


@dataclass(frozen=True)
class VersionRecord:
    """What resolution needs of one ModelVersion (kept in the operator's index)."""

    name: str
    model: str
    version: str
    format: str
    uri: str
    sha256: str
    ready: bool
    aliases: tuple[str, ...] = ()
    credentials_secret: str | None = None
    task: str | None = None


def record_from_body(body: Mapping[str, Any]) -> VersionRecord | None:
    """A record from a ModelVersion object, or None when it is not usable at all."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    artifact = spec.get("artifact") or {}
    try:
        return VersionRecord(
            name=str(body["metadata"]["name"]),
            model=str(spec["model"]),
            version=str(spec["version"]),
            format=str(spec.get("format", "")),
            uri=str(artifact["uri"]),
            sha256=str(artifact["sha256"]),
            ready=status.get("phase") == READY_PHASE,
            aliases=tuple(spec.get("aliases") or ()),
            credentials_secret=artifact.get("credentialsSecret"),
            task=spec.get("task"),
        )
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class ResolvedStage:
    stage: str
    """The stage name (``model`` for a single-model service)."""
    record: VersionRecord
    parameters: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Revision:
    """One resolved version set: what one Deployment serves."""

    stages: tuple[ResolvedStage, ...]

    @property
    def version(self) -> str:
        """``1.2.0`` for a single model, ``detector@1.0.0,verifier@2.1.0`` for a pipeline."""
        if len(self.stages) == 1 and self.stages[0].stage == SINGLE_STAGE:
            return _plain(self.stages[0].record.version)
        return ",".join(f"{s.stage}@{_plain(s.record.version)}" for s in self.stages)

    @property
    def slug(self) -> str:
        return revision_slug(self.version)


def _plain(version: str) -> str:
    return version[1:] if version.startswith("v") else version


def revision_slug(version: str) -> str:
    """A DNS-label-safe name part for a revision's version string (<= 20 chars).

    Readable for single versions (1.2.0 -> v1-2-0); a digest for pipelines and
    long versions, so two different version sets never share a Deployment.
    """
    readable = "v" + re.sub(r"[^a-z0-9]+", "-", version.lower()).strip("-")
    if "," not in version and len(readable) <= 20:
        return readable
    return "r" + hashlib.sha256(version.encode()).hexdigest()[:10]


def describe_selector(selector: VersionSelector) -> str:
    if selector.version is not None:
        return f"version {selector.version}"
    if selector.range is not None:
        return f"range {selector.range!r}"
    return f"alias {selector.alias!r}"


def _highest(records: Iterable[VersionRecord]) -> VersionRecord | None:
    best: tuple[semver.Version, VersionRecord] | None = None
    for r in records:
        try:
            key = semver.parse(r.version)
        except semver.InvalidVersionError:
            continue
        if best is None or key > best[0]:
            best = (key, r)
    return best[1] if best else None


def resolve_selector(
    model: str, selector: VersionSelector, records: Iterable[VersionRecord], field_path: str
) -> VersionRecord:
    """The Ready version of model the selector picks; NoMatchingVersionError when none (yet)."""
    chosen = [(selector.version, "version"), (selector.range, "range"), (selector.alias, "alias")]
    given = [name for value, name in chosen if value is not None]
    if len(given) != 1:
        raise InvalidServiceSpecError(field_path, "set exactly one of version, range or alias")
    ready = [r for r in records if r.model == model and r.ready]
    picked: VersionRecord | None
    if selector.version is not None:
        try:
            want = semver.parse(selector.version)
        except semver.SemverError as exc:
            raise InvalidServiceSpecError(f"{field_path}.version", str(exc)) from exc
        picked = next((r for r in ready if _same(r.version, want)), None)
    elif selector.range is not None:
        try:
            wanted = semver.parse_range(selector.range)
        except semver.SemverError as exc:
            raise InvalidServiceSpecError(f"{field_path}.range", str(exc)) from exc
        picked = _highest(r for r in ready if _in_range(wanted, r.version))
    elif selector.alias == LATEST_ALIAS:
        # `latest` is kept by the operator as the highest Ready version; computing it
        # here from the same records cannot disagree with it and needs no extra read.
        picked = _highest(r for r in ready if not _prerelease(r.version))
    else:
        # An alias is held by one version at a time; while a move is half applied two
        # may hold it, and the higher one is the one it is moving to in the common case.
        picked = _highest(r for r in ready if selector.alias in r.aliases)
    if picked is None:
        raise NoMatchingVersionError(model, describe_selector(selector))
    return picked


def _prerelease(version: str) -> bool:
    try:
        return bool(semver.parse(version).prerelease)
    except semver.InvalidVersionError:
        return True


def _same(version: str, want: semver.Version) -> bool:
    try:
        return semver.parse(version) == want
    except semver.InvalidVersionError:
        return False


def _in_range(wanted: semver.Range, version: str) -> bool:
    try:
        return wanted.matches(version)
    except semver.InvalidVersionError:
        return False


def selector_models(spec: InferenceServiceSpec) -> list[str]:
    """Every model a service's selectors name (the key of the operator's index)."""
    if spec.stages:
        return sorted({s.model for s in spec.stages})
    return [spec.model] if spec.model else []


def resolve_service(spec: InferenceServiceSpec, records: Iterable[VersionRecord]) -> Revision:
    """The revision a service's spec picks now."""
    pool = list(records)
    if spec.stages:
        if spec.model is not None or spec.selector is not None:
            raise InvalidServiceSpecError("stages", "set either model/selector or stages, not both")
        names = [s.name for s in spec.stages]
        if len(set(names)) != len(names):
            raise InvalidServiceSpecError("stages", "stage names must be unique")
        return Revision(
            tuple(
                ResolvedStage(
                    s.name,
                    resolve_selector(s.model, s.selector, pool, f"stages[{i}].selector"),
                    s.parameters,
                )
                for i, s in enumerate(spec.stages)
            )
        )
    if spec.model is None:
        raise InvalidServiceSpecError("model", "required unless stages are given")
    selector = spec.selector or VersionSelector(alias=LATEST_ALIAS)
    record = resolve_selector(spec.model, selector, pool, "selector")
    return Revision((ResolvedStage(SINGLE_STAGE, record),))
