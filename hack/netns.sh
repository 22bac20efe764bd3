#!/usr/bin/env bash
# Runs a command inside the network namespace that holds the local cluster.
#
# The cluster gives pods, nodes and Services addresses outside 127.0.0.0/8 (the
# API server refuses loopback addresses in Endpoints). Those addresses must never
# exist, or be dialled, on the machine's own network: they live only on the `lo`
# of a namespace we create here, and everything that talks to the cluster (the
# cluster's own processes, tests, the demo) runs inside it. Nothing inside can
# reach beyond the machine either, which also proves no run-time downloads.
#
#   bash hack/netns.sh python -m pytest tests/integration -x
set -euo pipefail
ns="${FORJA_NETNS:-forja}"
if [[ "$(ip netns identify $$ 2>/dev/null)" == "$ns" ]]; then exec "$@"; fi
if ! ip netns list | awk '{print $1}' | grep -qx "$ns"; then
  ip netns add "$ns"
fi
ip -n "$ns" link set lo up
# Real nodes (containerd, the kubelet: hack/forja_localcluster/nodes.py) must run in
# the machine's mount namespace, not the private one below: runc cannot join CNI
# namespaces from there. A sleeping holder keeps a handle on it that is readable from
# inside (PID 1's is not, on these machines); FORJA_HOST_MNT_NS names it.
holder="/run/forja-netns-$ns.holder"
hpid="$(cat "$holder" 2>/dev/null || true)"
if [[ -z "$hpid" || "$(cat "/proc/$hpid/comm" 2>/dev/null)" != "sleep" ]]; then
  setsid sleep infinity </dev/null >/dev/null 2>&1 &
  hpid=$!
  echo "$hpid" > "$holder"
fi
export FORJA_HOST_MNT_NS="/proc/$hpid/ns/mnt"
# Not `ip netns exec`: it remounts /sys, which hides the cgroup hierarchies `start`
# makes the nodes' cgroup roots in. Enter the network namespace only, plus a mount
# namespace that gives it the hosts file `ip netns exec` would (/etc/netns/<ns>/hosts),
# so a name someone adds for the cluster's addresses never reaches the machine's.
mkdir -p "/etc/netns/$ns"
[[ -f "/etc/netns/$ns/hosts" ]] || cp /etc/hosts "/etc/netns/$ns/hosts"
exec nsenter --net="/var/run/netns/$ns" unshare --mount --propagation slave -- \
  bash -c 'mount --bind "/etc/netns/$0/hosts" /etc/hosts && exec "$@"' "$ns" "$@"
