#!/usr/bin/env bash
# Builds the local stand-in for `python:3.11-slim` from Debian packages, for machines
# that reach Debian's archive but no container registry: debootstrap (minbase) with
# Debian's Python, imported with `buildah from scratch`. Users with a registry never
# need it: the Dockerfiles' BASE_IMAGE defaults to the public image.
#
# The tag carries a hash of the package list and suite, so a change rebuilds it and
# everything else reuses it. Prints the image name on stdout.
set -euo pipefail

suite="bookworm"
packages="python3,python3-venv,python-is-python3,ca-certificates,libgomp1"
key="$(printf '%s %s v2\n' "$suite" "$packages" | sha256sum | cut -c1-12)"
image="localhost/forja/base:$suite-$key"

log() { echo "[build-images] $*" >&2; }

if buildah inspect --type image "$image" >/dev/null 2>&1; then
  echo "$image"; exit 0
fi

# The archive this machine's apt already uses (its first `URIs:` or `deb` line), so the
# base comes from the same place as every other Debian package here.
mirror="$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}')"
if [[ -z "$mirror" ]]; then
  mirror="$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}')"
fi
[[ -n "$mirror" ]] || { log "no Debian archive found in /etc/apt: cannot debootstrap the base"; exit 1; }
command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install debootstrap"; exit 1; }

log "building the base image $image (debootstrap $suite minbase + python3; first time only, ~2 min)"
start=$SECONDS
rootfs="$(mktemp -d /var/tmp/forja-base.XXXXXX)"
ctr=""
cleanup() {
  [[ -n "$ctr" ]] && buildah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$rootfs"
}
trap cleanup EXIT
debootstrap_log="${TMPDIR:-/tmp}/forja-debootstrap.log"
if ! debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >"$debootstrap_log" 2>&1; then
  log "debootstrap failed (full log: $debootstrap_log):"; tail -n 20 "$debootstrap_log" >&2; exit 1
fi
# What python:3.11-slim also leaves out: package lists, docs, man pages, caches.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
       "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/usr/share/locale/*
ctr="$(buildah from scratch)"
mnt="$(buildah mount "$ctr")"
cp -a "$rootfs"/. "$mnt"/
buildah umount "$ctr" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd python3 \
  --label org.opencontainers.image.description="Debian $suite minbase with Debian's Python (forja's local base)" \
  "$ctr"
buildah commit --quiet "$ctr" "$image" >/dev/null
log "built $image in $((SECONDS - start)) s"
# Earlier bases (another package list) are no longer named by anything we build.
for old in $(buildah images --noheading --format '{{.Name}}:{{.Tag}}' localhost/forja/base 2>/dev/null); do
  [[ "$old" == "$image" ]] || buildah rmi "$old" >/dev/null 2>&1 || true
done
echo "$image"
