#!/usr/bin/env bash
# Builds Argo CD (one binary: it becomes argocd-application-controller,
# argocd-repo-server, ... by argv[0]) from its pinned Go module into a cache
# outside the checkout, and installs Redis from Debian if it is missing.
# The cache key is a hash of hack/tools/argocd/go.{mod,sum}, so a pin change
# rebuilds and everything else reuses the binary.
#
# Prints the directory holding `argocd` and its argv[0] links on stdout; Argo CD's
# CRDs (manifests/crds of the module) are copied beside it, in ../crds.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=go-cache.sh
source "$here/go-cache.sh"  # cache_root, and GOCACHE in it
key="$(cat "$here/tools/argocd/go.mod" "$here/tools/argocd/go.sum" | sha256sum | cut -c1-16)"
bin="$cache_root/argocd/$key/bin"
mkdir -p "$bin"

log() { echo "[build-argocd] $*" >&2; }

if [[ ! -x "$bin/argocd" ]]; then
  log "building argocd from github.com/argoproj/argo-cd/v3/cmd (first build only; 10-20 min on 2 cores)"
  start=$SECONDS
  (cd "$here/tools/argocd" && CGO_ENABLED=0 nice -n 10 go build -mod=mod -trimpath \
      -ldflags "-s -w" -o "$bin/argocd.tmp" github.com/argoproj/argo-cd/v3/cmd)
  mv "$bin/argocd.tmp" "$bin/argocd"
  log "built argocd in $((SECONDS - start)) s"
fi
# Argo CD's CRDs from the same module source, for the launcher to apply.
crds="$cache_root/argocd/$key/crds"
if [[ ! -f "$crds/application-crd.yaml" ]]; then
  src="$(cd "$here/tools/argocd" && go list -mod=mod -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)"
  mkdir -p "$crds"
  cp "$src"/manifests/crds/app*-crd.yaml "$crds/"
  chmod u+w "$crds"/*
fi
for name in argocd-application-controller argocd-repo-server argocd-git-ask-pass; do
  ln -sf argocd "$bin/$name"
done

if ! command -v redis-server >/dev/null; then
  log "installing redis-server from Debian"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q redis-server >&2
fi

echo "$bin"
