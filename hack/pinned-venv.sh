#!/usr/bin/env bash
# Creates (or reuses) a venv of its own for one requirements file whose pins clash with
# the shared venv's (hack/venv.sh): usage `pinned-venv.sh LABEL REQUIREMENTS`. Cached
# outside the checkout as LABEL-venv-<key>, the key a hash of the pins and the Python
# version; a changed pin makes a new one. Prints its path on stdout.
set -euo pipefail
label="${1:?usage: pinned-venv.sh LABEL REQUIREMENTS}"
reqs="${2:?usage: pinned-venv.sh LABEL REQUIREMENTS}"
cache_root="${FORJA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forja}"
py="${PYTHON:-python3}"
key="$({ cat "$reqs"; "$py" --version; } | sha256sum | cut -c1-16)"
venv="$cache_root/$label-venv-$key"
if [[ "$(cat "$venv/.forja-key" 2>/dev/null)" != "$key" ]]; then
  echo "[$label-venv] creating $venv" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --progress-bar off --upgrade pip >&2
  "$venv/bin/pip" install -q --progress-bar off -r "$reqs" >&2
  echo "$key" > "$venv/.forja-key"
fi
echo "$venv"
