import pytest

from forja_api import semver
from forja_api.semver import (
    InvalidRangeError,
    InvalidVersionError,
    Version,
    bump,
    parse,
    parse_range,
)


def test_parse_and_print_round_trip():
    v = parse("v1.2.3-rc.1+build.5")
    assert v == Version(1, 2, 3, ("rc", "1"))
    assert str(v) == "1.2.3-rc.1+build.5"


@pytest.mark.parametrize("bad", ["1.2", "01.2.3", "1.2.3.4", "", "latest"])
def test_parse_refuses_non_semver(bad):
    with pytest.raises(InvalidVersionError, match="semantic version"):
        parse(bad)


def test_precedence_follows_semver_spec():
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
        "10.0.0",
    ]
    parsed = [parse(v) for v in ordered]
    assert sorted(reversed(parsed)) == parsed
    assert parse("1.0.0+a") == parse("1.0.0+b")


@pytest.mark.parametrize(
    ("start", "part", "expected"),
    [
        (None, "minor", "0.1.0"),
        (None, "major", "1.0.0"),
        (None, "patch", "0.0.1"),
        ("1.2.3", "patch", "1.2.4"),
        ("1.2.3", "minor", "1.3.0"),
        ("1.2.3", "major", "2.0.0"),
        ("1.3.0-rc.1", "minor", "1.3.0"),
        ("2.0.0-rc.1", "major", "2.0.0"),
    ],
)
def test_bump(start, part, expected):
    assert str(bump(start, part)) == expected


@pytest.mark.parametrize(
    ("rng", "yes", "no"),
    [
        (">=1.2.0 <2.0.0", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0", "2.0.0-rc.1"]),
        ("^1.2", ["1.2.0", "1.99.0"], ["1.1.0", "2.0.0"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("~1.2.3", ["1.2.3", "1.2.10"], ["1.3.0", "1.2.2"]),
        ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
        ("1.x", ["1.0.0", "1.5.2"], ["2.0.0", "0.9.0"]),
        ("1.2", ["1.2.0", "1.2.7"], ["1.3.0"]),
        ("*", ["0.0.1", "9.9.9"], ["1.0.0-rc.1"]),
        ("1.2.3", ["1.2.3"], ["1.2.4"]),
        ("<1.2 || >=3", ["1.1.9", "3.0.0"], ["1.2.0", "2.5.0"]),
        ("1.2.3 - 1.4.0", ["1.2.3", "1.4.0"], ["1.4.1"]),
        (">=1.3.0-rc.1", ["1.3.0-rc.2", "1.3.0", "2.0.0"], ["1.4.0-rc.1"]),
        (">= 1.0.0", ["1.0.0"], ["0.9.0"]),
    ],
)
def test_ranges(rng, yes, no):
    r = parse_range(rng)
    for v in yes:
        assert r.matches(v), (rng, v)
    for v in no:
        assert not r.matches(v), (rng, v)


def test_best_picks_highest_in_range():
    assert str(parse_range("^1").best(["0.9.0", "1.2.0", "1.10.0", "2.0.0"])) == "1.10.0"
    assert parse_range("^3").best(["1.0.0"]) is None
    assert semver.matches("1.5.0", "~1.5")


@pytest.mark.parametrize("bad", ["", ">=banana", "1.2.3 ||", "^"])
def test_bad_ranges_name_the_text(bad):
    with pytest.raises(InvalidRangeError):
        parse_range(bad)
