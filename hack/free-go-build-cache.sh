#!/usr/bin/env bash
# Drops the Go build cache that hack/build-*.sh fill (forja's own GOCACHE, never the
# user's). Every binary they build is kept by pin elsewhere in the cache, so the only
# cost is a slower rebuild after a pin changes; what it frees (7-9 GB after the
# control plane, Argo CD and Kueue) is what the clusters' nodes and registry need on a
# small disk. hack/demo.sh and hack/test.sh call it once their builds are done.
set -euo pipefail
# shellcheck source=go-cache.sh
source "$(dirname "${BASH_SOURCE[0]}")/go-cache.sh"
dir="$GOCACHE"
if [[ -d "$dir" ]]; then
  size="$(du -sh "$dir" 2>/dev/null | cut -f1)"
  rm -rf "$dir"
  echo "[free-go-build-cache] freed $size ($dir)" >&2
fi
