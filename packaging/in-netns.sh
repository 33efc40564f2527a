#!/usr/bin/env bash
# Runs a command in a fresh network namespace that has only its own loopback, so no test
# can send a packet — not even an mDNS membership report — onto the machine's real
# network. Falls back to running it directly, loudly, where namespaces are not allowed.
set -euo pipefail
if unshare -rn true 2>/dev/null; then
  exec unshare -rn bash -c 'ip link set lo up && exec "$@"' bash "$@"
fi
echo "in-netns: cannot create a network namespace here (unshare -rn failed);" \
     "running on the host network: tests still use loopback only, but mDNS tests make" \
     "the kernel announce multicast group membership on real interfaces" >&2
exec "$@"
