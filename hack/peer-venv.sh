#!/usr/bin/env bash
# Creates (or reuses) the venv of one peer model server for the side-by-side benchmark
# (bench/server/side_by_side.py): hack/peers/NAME.txt, NAME one of kserve, mlserver,
# pytriton. One venv per peer, cached and keyed by its pins (hack/pinned-venv.sh):
# their pins clash with the shared venv's (protobuf 7) and with each other.
# Prints its path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:?usage: peer-venv.sh kserve|mlserver|pytriton}"
reqs="$here/hack/peers/$name.txt"
[[ -f "$reqs" ]] || { echo "no pins for peer $name ($reqs)" >&2; exit 2; }
exec bash "$here/hack/pinned-venv.sh" "peer-$name" "$reqs"
