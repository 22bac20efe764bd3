# Sourced by hack/build-*.sh and hack/free-go-build-cache.sh: forja's cache root, and
# a Go build cache of forja's own in it. The build scripts share that cache (Argo CD
# reuses the control plane's packages); hack/free-go-build-cache.sh drops it once they
# have run, since the binaries are cached by pin and the 7-9 GB it reaches is disk
# the clusters need. Never the user's own GOCACHE.
cache_root="${FORJA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forja}"
export GOCACHE="$cache_root/go-build"
