#!/usr/bin/env bash
# Builds Kubeflow Trainer v2's controller manager and the JobSet controller from their
# pinned Go modules (hack/tools/trainer) into a cache outside the checkout, for the
# side-by-side in bench/operator only (tests and CI do not need them). The cache key is
# a hash of hack/tools/trainer/go.{mod,sum}, so a pin change rebuilds.
#
# Prints the directory holding `trainer-controller-manager`, `jobset-controller` and,
# copied from the same module sources, their CRDs (crds/) and webhook configurations
# (webhook-manifests.yaml: Trainer's; jobset-webhooks.yaml: JobSet's).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mod="$here/tools/trainer"
# shellcheck source=go-cache.sh
source "$here/go-cache.sh"  # cache_root, and GOCACHE in it
key="$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -c1-16)"
out="$cache_root/trainer/$key"
mkdir -p "$out"

build() {  # build <binary name> <main package>
  if [[ ! -x "$out/$1" ]]; then
    echo "[build-trainer] building $1 (first build only; minutes on 2 cores)" >&2
    local start=$SECONDS
    (cd "$mod" && CGO_ENABLED=0 nice -n 10 go build -mod=mod -trimpath -ldflags "-s -w" \
        -o "$out/$1.tmp" "$2")
    mv "$out/$1.tmp" "$out/$1"
    echo "[build-trainer] built $1 in $((SECONDS - start)) s" >&2
  fi
}
build jobset-controller sigs.k8s.io/jobset
build trainer-controller-manager github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager

if [[ ! -d "$out/crds" ]]; then
  trainer="$(cd "$mod" && go list -mod=mod -m -f '{{.Dir}}' github.com/kubeflow/trainer/v2)"
  jobset="$(cd "$mod" && go list -mod=mod -m -f '{{.Dir}}' sigs.k8s.io/jobset)"
  mkdir -p "$out/crds.tmp"
  cp "$trainer"/manifests/base/crds/trainer.kubeflow.org_*.yaml "$out/crds.tmp/"
  cp "$jobset"/config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml "$out/crds.tmp/"
  cp "$trainer"/manifests/base/webhook/manifests.yaml "$out/webhook-manifests.yaml"
  cp "$jobset"/config/components/webhook/manifests.yaml "$out/jobset-webhooks.yaml"
  chmod -R u+w "$out/crds.tmp" "$out/webhook-manifests.yaml" "$out/jobset-webhooks.yaml"
  mv "$out/crds.tmp" "$out/crds"
fi
echo "$out"
