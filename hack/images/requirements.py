"""Prints the third-party requirements of one image, from pyproject.toml.

    python requirements.py pyproject.toml server

pyproject.toml stays the one place pins live: the base dependencies plus the
named extras, with self-references (``forja[storage]``) expanded. The Dockerfiles
run this in a stage of its own, so the dependency layer that follows is cached by
the printed pins alone, not by every other line of pyproject.toml.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    own = project["name"] + "["
    optional = project["optional-dependencies"]
    out: list[str] = list(project["dependencies"])
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"no extra {extra!r} in {pyproject}: one of {sorted(optional)}")
        seen.add(extra)
        for dep in optional[extra]:
            if dep.startswith(own):
                todo += [e.strip() for e in dep[len(own) :].rstrip("]").split(",")]
            elif dep not in out:
                out.append(dep)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
