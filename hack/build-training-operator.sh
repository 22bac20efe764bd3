#!/usr/bin/env bash
# Builds Kubeflow's training-operator (v1, PyTorchJob) from its pinned Go module into
# a cache outside the checkout, for the side-by-side in bench/operator only (tests
# and CI do not need it). The cache key is a hash of hack/tools/training-operator/
# go.{mod,sum}, so a pin change rebuilds.
#
# Prints the directory holding `training-operator` and its PyTorchJob CRD (from the
# same module source).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/tools/training-operator"
# shellcheck source=go-cache.sh
source "$here/go-cache.sh"  # cache_root, and GOCACHE in it
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
out="$cache_root/training-operator/$key"
mkdir -p "$out"

if [[ ! -x "$out/training-operator" ]]; then
  echo "[build-training-operator] building (first build only; ~10 min on 2 cores)" >&2
  start=$SECONDS
  (cd "$mod" && CGO_ENABLED=0 nice -n 10 go build -mod=mod -trimpath -ldflags "-s -w" \
      -o "$out/training-operator.tmp" github.com/kubeflow/training-operator/cmd/training-operator.v1)
  mv "$out/training-operator.tmp" "$out/training-operator"
  echo "[build-training-operator] built in $((SECONDS - start)) s" >&2
fi
if [[ ! -f "$out/kubeflow.org_pytorchjobs.yaml" ]]; then
  src="$(cd "$mod" && go list -mod=mod -m -f '{{.Dir}}' github.com/kubeflow/training-operator)"
  cp "$src/manifests/base/crds/kubeflow.org_pytorchjobs.yaml" "$out/"
  chmod u+w "$out/kubeflow.org_pytorchjobs.yaml"
fi
echo "$out"
