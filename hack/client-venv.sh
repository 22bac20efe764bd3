#!/usr/bin/env bash
# Creates (or reuses) the venv of the ecosystem's inference clients (KServe's and
# Triton's Python clients, hack/clients/requirements.txt), cached outside the checkout
# and keyed by its pins like hack/venv.sh. A venv of its own because their pins
# (protobuf<7 among them) conflict with the shared venv's. Prints its path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${FORJA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forja}"
py="${PYTHON:-python3}"
reqs="$here/hack/clients/requirements.txt"
key="$({ cat "$reqs"; "$py" --version; } | sha256sum | cut -c1-16)"
venv="$cache_root/client-venv-$key"
if [[ "$(cat "$venv/.forja-key" 2>/dev/null)" != "$key" ]]; then
  echo "[client-venv] creating $venv" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --progress-bar off --upgrade pip >&2
  "$venv/bin/pip" install -q --progress-bar off -r "$reqs" >&2
  echo "$key" > "$venv/.forja-key"
fi
echo "$venv"
