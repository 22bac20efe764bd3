#!/usr/bin/env bash
# Creates (or reuses) the venv of the ecosystem's inference clients (KServe's and
# Triton's Python clients, hack/clients/requirements.txt), cached and keyed by its pins
# (hack/pinned-venv.sh). A venv of its own because their pins (protobuf<7 among them)
# conflict with the shared venv's. Prints its path on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec bash "$here/hack/pinned-venv.sh" client "$here/hack/clients/requirements.txt"
