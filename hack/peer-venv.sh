#!/usr/bin/env bash
# Creates (or reuses) the venv of one peer model server for the side-by-side benchmark
# (bench/server/side_by_side.py): hack/peers/NAME.txt, NAME one of kserve, mlserver,
# pytriton. One venv per peer, cached outside the checkout and keyed by its pins like
# hack/venv.sh: their pins clash with the shared venv's (protobuf 7) and with each other.
# Prints its path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${FORJA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forja}"
py="${PYTHON:-python3}"
name="${1:?usage: peer-venv.sh kserve|mlserver|pytriton}"
reqs="$here/hack/peers/$name.txt"
[[ -f "$reqs" ]] || { echo "no pins for peer $name ($reqs)" >&2; exit 2; }
key="$({ cat "$reqs"; "$py" --version; } | sha256sum | cut -c1-16)"
venv="$cache_root/peer-$name-venv-$key"
if [[ "$(cat "$venv/.forja-key" 2>/dev/null)" != "$key" ]]; then
  echo "[peer-venv] creating $venv" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --progress-bar off --upgrade pip >&2
  "$venv/bin/pip" install -q --progress-bar off -r "$reqs" >&2
  echo "$key" > "$venv/.forja-key"
fi
echo "$venv"
