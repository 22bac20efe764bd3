#!/usr/bin/env bash
# Builds Kueue's controller manager from its pinned Go module into a cache outside
# the checkout, for tests/integration/kueue (forja_localcluster.kueue runs it). The
# cache key is a hash of hack/tools/kueue/go.{mod,sum}, so a pin change rebuilds.
#
# Prints the directory holding `kueue`; Kueue's CRDs and webhook configurations
# (config/components/{crd/bases,webhook} of the same module source) are copied beside
# it, in ../crds and ../webhook.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/tools/kueue"
# shellcheck source=go-cache.sh
source "$here/go-cache.sh"  # cache_root, and GOCACHE in it
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
out="$cache_root/kueue/$key"
mkdir -p "$out/bin"

if [[ ! -x "$out/bin/kueue" ]]; then
  echo "[build-kueue] building sigs.k8s.io/kueue/cmd/kueue (first build only; ~6 min on 2 cores)" >&2
  start=$SECONDS
  (cd "$mod" && CGO_ENABLED=0 nice -n 10 go build -mod=mod -trimpath -ldflags "-s -w" \
      -o "$out/bin/kueue.tmp" sigs.k8s.io/kueue/cmd/kueue)
  mv "$out/bin/kueue.tmp" "$out/bin/kueue"
  echo "[build-kueue] built in $((SECONDS - start)) s" >&2
fi
if [[ ! -f "$out/webhook/manifests.yaml" ]]; then
  src="$(cd "$mod" && go list -mod=mod -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
  mkdir -p "$out/crds" "$out/webhook"
  cp "$src"/config/components/crd/bases/kueue.x-k8s.io_*.yaml "$out/crds/"
  cp "$src/config/components/webhook/manifests.yaml" "$out/webhook/manifests.yaml.tmp"
  chmod u+w "$out"/crds/* "$out/webhook/manifests.yaml.tmp"
  mv "$out/webhook/manifests.yaml.tmp" "$out/webhook/manifests.yaml"
fi
echo "$out/bin"
