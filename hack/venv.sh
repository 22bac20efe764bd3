#!/usr/bin/env bash
# Creates (or reuses) the development environment: one venv with every extra,
# cached outside the checkout and keyed by the declared dependencies, so a fresh
# clone and CI on the same machine reuse it. Our own code is not installed into
# it: tests and local pods import it from the checkout (see pytest pythonpath).
# Prints the venv path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${FORJA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forja}"
py="${PYTHON:-python3}"

reqs="$("$py" - "$here/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
own = p["name"]
out = list(p["dependencies"])
for name, deps in sorted(p["optional-dependencies"].items()):
    out += [d for d in deps if not d.startswith(own + "[")]
print("\n".join(sorted(set(out))))
PY
)"
key="$(printf '%s\n%s\n' "$reqs" "$("$py" --version)" | sha256sum | cut -c1-16)"
venv="$cache_root/venv"
# The stamp holds the key of the requirements last installed: a changed pin
# installs incrementally into the same venv instead of rebuilding 8 GB.
if [[ "$(cat "$venv/.forja-key" 2>/dev/null)" != "$key" ]]; then
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "[venv] creating $venv (first time: several GB of wheels, ~10 min)" >&2
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >&2
  else
    echo "[venv] requirements changed: installing the difference into $venv" >&2
  fi
  printf '%s\n' "$reqs" > "$venv/requirements.txt"
  "$venv/bin/pip" install -q --progress-bar off -r "$venv/requirements.txt" >&2
  echo "$key" > "$venv/.forja-key"
fi
echo "$venv"
