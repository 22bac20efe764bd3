"""Semantic versions (semver 2.0.0) and npm-style ranges, pure and dependency-free.

Used by the operator to pick a model's next version and by InferenceService
selectors (``">=1.2.0 <2.0.0"``, ``"^1.2"``, ``"~1.2.3"``, ``"1.x"``, ``"*"``,
alternatives joined by ``||``).

Exceptions::

    SemverError (ValueError)
     +-- InvalidVersionError
     +-- InvalidRangeError
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Literal

__all__ = [
    "InvalidRangeError",
    "InvalidVersionError",
    "Part",
    "Range",
    "SemverError",
    "Version",
    "bump",
    "highest",
    "matches",
    "parse",
    "parse_range",
]

Part = Literal["major", "minor", "patch"]

_VERSION_RE = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# A partial version as written in ranges: 1, 1.2, 1.2.3, 1.x, 1.2.*, with optional prerelease.
_PARTIAL_RE = re.compile(
    r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)
_COMPARATOR_RE = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*(.+)$")


class SemverError(ValueError):
    """Base of this module's errors; carries the offending text."""

    def __init__(self, text: str, why: str) -> None:
        super().__init__(f"{text!r}: {why}")
        self.text = text


class InvalidVersionError(SemverError):
    pass


class InvalidRangeError(SemverError):
    pass


def _prerelease_key(pre: tuple[str, ...]) -> tuple[tuple[int, int | str], ...]:
    # Numeric identifiers sort below alphanumeric ones and numerically among themselves.
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre)


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = field(default=(), compare=False)

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text

    @property
    def core(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def _key(self) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int | str], ...]]:
        # A release sorts above all of its prereleases.
        return (self.core, 0 if self.prerelease else 1, _prerelease_key(self.prerelease))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


def parse(text: str) -> Version:
    """Parse ``1.2.3``, ``v1.2.3``, ``1.2.3-rc.1+build.5``; raise InvalidVersionError otherwise."""
    m = _VERSION_RE.match(text.strip())
    if not m:
        raise InvalidVersionError(text, "not a semantic version (expected MAJOR.MINOR.PATCH)")
    return Version(
        int(m.group(1)),
        int(m.group(2)),
        int(m.group(3)),
        tuple(m.group(4).split(".")) if m.group(4) else (),
        tuple(m.group(5).split(".")) if m.group(5) else (),
    )


def bump(version: Version | str | None, part: Part) -> Version:
    """The next release after ``version`` (None: the first release, 0.1.0 / 1.0.0 / 0.0.1).

    Bumping a prerelease releases it: 1.2.0-rc.1 bumped by minor is 1.2.0, as npm does.
    """
    if version is None:
        return {"major": Version(1, 0, 0), "minor": Version(0, 1, 0), "patch": Version(0, 0, 1)}[
            part
        ]
    v = parse(version) if isinstance(version, str) else version
    if part == "major":
        if v.prerelease and v.minor == 0 and v.patch == 0:
            return Version(v.major, 0, 0)
        return Version(v.major + 1, 0, 0)
    if part == "minor":
        if v.prerelease and v.patch == 0:
            return Version(v.major, v.minor, 0)
        return Version(v.major, v.minor + 1, 0)
    if part == "patch":
        if v.prerelease:
            return Version(v.major, v.minor, v.patch)
        return Version(v.major, v.minor, v.patch + 1)
    raise SemverError(str(part), "bump part must be major, minor or patch")


def highest(versions: Iterable[Version | str]) -> Version | None:
    parsed = [parse(v) if isinstance(v, str) else v for v in versions]
    return max(parsed) if parsed else None


# --- ranges ---------------------------------------------------------------------

Op = Literal[">=", "<=", ">", "<", "="]


@dataclass(frozen=True)
class _Comparator:
    op: Op
    version: Version

    def test(self, v: Version) -> bool:
        if self.op == ">=":
            return v >= self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == ">":
            return v > self.version
        if self.op == "<":
            return v < self.version
        return v == self.version


@dataclass(frozen=True)
class Range:
    """A union (``||``) of intersections of comparators."""

    text: str
    alternatives: tuple[tuple[_Comparator, ...], ...]

    def matches(self, version: Version | str) -> bool:
        v = parse(version) if isinstance(version, str) else version
        for comparators in self.alternatives:
            if not all(c.test(v) for c in comparators):
                continue
            if not v.prerelease:
                return True
            # npm's rule: a prerelease matches only when some comparator names a
            # prerelease of the same MAJOR.MINOR.PATCH, so "^1.0.0" never picks 2.0.0-rc.1.
            if any(c.version.prerelease and c.version.core == v.core for c in comparators):
                return True
        return False

    def best(self, versions: Iterable[Version | str]) -> Version | None:
        """The highest of ``versions`` inside the range."""
        return highest(v for v in versions if self.matches(v))

    def __str__(self) -> str:
        return self.text


def _partial(text: str, whole: str) -> tuple[list[int | None], tuple[str, ...]]:
    m = _PARTIAL_RE.match(text)
    if not m:
        raise InvalidRangeError(whole, f"{text!r} is not a version")
    parts: list[int | None] = []
    for g in m.group(1, 2, 3):
        if g is None or g in ("x", "X", "*"):
            parts.append(None)
        else:
            parts.append(int(g))
    # Anything after a wildcard is a wildcard too (1.x.3 means 1.x).
    for i, p in enumerate(parts):
        if p is None:
            parts[i + 1 :] = [None] * (len(parts) - i - 1)
            break
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    return parts, pre


def _comparators(token: str, whole: str) -> list[_Comparator]:
    m = _COMPARATOR_RE.match(token)
    if not m:
        raise InvalidRangeError(whole, f"cannot read {token!r}")
    op, rest = m.group(1) or "", m.group(2)
    if rest in ("*", "x", "X"):
        return [_Comparator(">=", Version(0, 0, 0))] if op in ("", "=", ">=", "^", "~") else []
    (major, minor, patch), pre = _partial(rest, whole)
    if major is None:
        return [_Comparator(">=", Version(0, 0, 0))]
    low = Version(major, minor or 0, patch or 0, pre)
    if op == "^":
        if major > 0 or minor is None:
            high = Version(major + 1, 0, 0, ("0",))
        elif minor > 0 or patch is None:
            high = Version(0, minor + 1, 0, ("0",))
        else:
            high = Version(0, 0, patch + 1, ("0",))
        return [_Comparator(">=", low), _Comparator("<", high)]
    if op == "~":
        high = (
            Version(major + 1, 0, 0, ("0",))
            if minor is None
            else Version(major, minor + 1, 0, ("0",))
        )
        return [_Comparator(">=", low), _Comparator("<", high)]
    complete = minor is not None and patch is not None
    if complete:
        return [_Comparator(op or "=", low)]  # type: ignore[arg-type]
    # A partial version stands for the whole span it names.
    upper = (
        Version(major + 1, 0, 0, ("0",)) if minor is None else Version(major, minor + 1, 0, ("0",))
    )
    if op in ("", "="):
        return [_Comparator(">=", low), _Comparator("<", upper)]
    if op == ">=":
        return [_Comparator(">=", low)]
    if op == "<":
        return [_Comparator("<", low)]
    if op == ">":
        return [_Comparator(">=", upper)]
    return [_Comparator("<", upper)]  # <=


def parse_range(text: str) -> Range:
    """Parse ``">=1.2.0 <2.0.0"``, ``"^1.2"``, ``"~1.2.3"``, ``"1.x || 2.3.4"``, ``"*"``."""
    if not text.strip():
        raise InvalidRangeError(text, "empty range")
    alternatives: list[tuple[_Comparator, ...]] = []
    for alt in text.split("||"):
        # Allow ">= 1.2.0" by gluing an operator to the token after it.
        tokens = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", alt.strip()).split()
        if not tokens:
            raise InvalidRangeError(text, "empty alternative around '||'")
        if len(tokens) == 3 and tokens[1] == "-":  # hyphen range: 1.2.3 - 2.3.4
            low = _comparators(">=" + tokens[0], text)
            high = _comparators("<=" + tokens[2], text)
            alternatives.append(tuple(low + high))
            continue
        comps: list[_Comparator] = []
        for token in tokens:
            comps.extend(_comparators(token, text))
        alternatives.append(tuple(comps))
    return Range(text, tuple(alternatives))


def matches(version: Version | str, range_text: str) -> bool:
    return parse_range(range_text).matches(version)
