#!/usr/bin/env bash
# Builds forja's four images from their Dockerfiles, daemonless (buildah), and tags
# them with the chart's appVersion:
#
#   bash hack/build-images.sh                      # operator server trainer trainer-tf
#   bash hack/build-images.sh operator server      # some of them
#
# Images land in the machine's containers storage (/var/lib/containers/storage,
# shared with podman) as localhost/forja/<name>:<appVersion>. No registry is
# reachable here, so the base is Debian-built (hack/images/base.sh) unless
# BASE_IMAGE names another; users with a registry build the same Dockerfiles with
# docker or podman against python:3.11-slim (docs/images.md).
#
# Layers are cached (buildah --layers): the dependency layer of each image is keyed
# by its pins alone and the source layer comes last, so a change of forja's code
# rebuilds a few MB. The host's pip cache and CA bundle are mounted into RUN steps,
# never copied into an image. A failed build names the failing step and leaves the
# previous tag in place.
#
# Prints one line per image on stdout: name, tag, size, seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

log() { echo "[build-images] $*" >&2; }

all=(operator server trainer trainer-tf)
images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=("${all[@]}")

dockerfile_of() {
  case "$1" in
    operator) echo operator/Dockerfile ;;
    server) echo server_image/Dockerfile ;;
    trainer) echo trainer_image/Dockerfile ;;
    trainer-tf) echo trainer_image/Dockerfile.tf ;;
    *) log "unknown image '$1': one of ${all[*]}"; return 1 ;;
  esac
}
for name in "${images[@]}"; do dockerfile_of "$name" >/dev/null; done

missing=()
# buildah builds; podman (over runc) runs them in tests/integration/images.
for tool in buildah podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  log "installing ${missing[*]} from Debian"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >&2
fi

version="$(awk -F'"' '/^appVersion:/ {print $2}' helm/forja/Chart.yaml)"
[[ -n "$version" ]] || { log "no appVersion in helm/forja/Chart.yaml"; exit 1; }
base="${BASE_IMAGE:-$(bash hack/images/base.sh)}"
registry="${FORJA_IMAGE_PREFIX:-localhost/forja}"

# Mounted into RUN steps only: pip's cache (wheels downloaded once per machine) and
# the CA bundle this machine's package traffic needs.
pip_cache="${PIP_CACHE_DIR:-$HOME/.cache/pip}"
mkdir -p "$pip_cache"
mounts=(--volume "$pip_cache:/root/.cache/pip")
ca="${FORJA_BUILD_CA:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
build_args=(--build-arg "BASE_IMAGE=$base")
if [[ -f "$ca" ]]; then
  mounts+=(--volume "$ca:/run/host-ca.crt:ro")
  build_args+=(--build-arg PIP_CERT=/run/host-ca.crt)
fi

logs="${FORJA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/forja}/images/logs"
mkdir -p "$logs"

# What an image is built from: its Dockerfile, the base, the build arguments and every
# file its COPY lines take from the context (.dockerignore's caches left out). With
# every layer cached buildah still hashes the multi-GB dependency layer on each build
# (about a minute for the trainer), so an image whose inputs are unchanged is not
# handed to buildah at all: the warm demo rebuilds nothing.
inputs_key() {
  local file="$1"
  local -a srcs
  mapfile -t srcs < <(awk '$1 == "COPY" && $2 !~ /^--from/ { for (i = 2; i < NF; i++) print $i }' "$file")
  {
    printf '%s\n' "$file" "$base" "${build_args[@]}"
    sha256sum "$file"
    find "${srcs[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
      | sort -z | xargs -0 -r sha256sum
  } | sha256sum | cut -c1-32
}

for name in "${images[@]}"; do
  tag="$registry/$name:$version"
  file="$(dockerfile_of "$name")"
  out="$logs/$name.log"
  stamp="$logs/$name.inputs"
  key="$(inputs_key "$file")"
  image_id="$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  if [[ -n "$image_id" && -f "$stamp" && "$(cat "$stamp")" == "$key $image_id" ]]; then
    size="$(podman image inspect --format '{{.Size}}' "$tag")"
    log "$tag is up to date (its inputs are unchanged since it was built)"
    printf '%s\t%s\t%s MB\t%s s\n' "$name" "$tag" "$((size / 1000000))" 0
    continue
  fi
  log "building $tag from $file (log: $out)"
  start=$SECONDS
  if ! buildah bud --layers --force-rm --isolation chroot "${mounts[@]}" "${build_args[@]}" \
      -f "$file" -t "$tag" . >"$out" 2>&1; then
    # buildah names the step ("building at STEP \"RUN ...\""); its own numbering is
    # on the step's "[stage] STEP n/m:" line.
    step="$(grep -oE 'STEP [0-9]+/[0-9]+: .*' "$out" | tail -n1 || true)"
    log "FAILED: $tag at ${step:-an unknown step} ($file); the previous $tag, if any, is untouched"
    tail -n 15 "$out" | sed 's/^/    /' >&2
    exit 1
  fi
  secs=$((SECONDS - start))
  size="$(buildah inspect --type image --format '{{.FromImageID}}' "$tag" >/dev/null 2>&1;
          podman image inspect --format '{{.Size}}' "$tag" 2>/dev/null || echo 0)"
  log "built $tag in $secs s ($((size / 1000000)) MB)"
  echo "$key $(podman image inspect --format '{{.Id}}' "$tag")" >"$stamp"
  printf '%s\t%s\t%s MB\t%s s\n' "$name" "$tag" "$((size / 1000000))" "$secs"
done
