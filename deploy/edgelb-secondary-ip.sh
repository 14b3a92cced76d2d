#!/bin/bash
# edgelb-secondary-ip: configure every secondary private IPv4 of this instance's ENIs on the
# matching network interface, as read from the instance metadata service (IMDSv2 only).
#
# Replaces the seed's secondary-ip role script, which used IMDSv1 (plain GET, refused when the
# instance requires tokens), parsed `ifconfig` output, only looked at eth0 and hard-coded /24.
#
# EC2 assigns a secondary private IP to the ENI, but only the primary one arrives by DHCP on most
# distributions. The peer's Elastic IP is NATed to our secondary IP during a takeover, so that IP
# must be on the interface before the takeover happens. (Amazon Linux 2023 does this itself through
# amazon-ec2-net-utils; this script is then unnecessary but harmless.)
#
# Usage: edgelb-secondary-ip.sh [--dry-run]
#   IMDS_ENDPOINT   metadata endpoint (default http://169.254.169.254); for tests only.
# Idempotent: addresses already present are left alone. Needs curl and iproute2; runs as root.

set -euo pipefail

IMDS=${IMDS_ENDPOINT:-http://169.254.169.254}
DRY_RUN=0
if [[ ${1:-} == "--dry-run" ]]; then
  DRY_RUN=1
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--dry-run]" >&2
  exit 2
fi

log() { echo "edgelb-secondary-ip: $*" >&2; }

# IMDSv2: a session token first (PUT), then every GET carries it. Short TTL: this runs once.
TOKEN=$(curl -sfS --max-time 2 --retry 10 --retry-delay 1 --retry-connrefused \
  -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$IMDS/latest/api/token") || {
  log "cannot get an IMDSv2 token from $IMDS"
  exit 1
}

imds() {
  curl -sfS --max-time 2 --retry 3 --retry-delay 1 \
    -H "X-aws-ec2-metadata-token: $TOKEN" "$IMDS/latest/meta-data/$1"
}

# Interface name for a MAC address, from sysfs (no ifconfig, no fixed eth0: Nitro names it ens5).
dev_for_mac() {
  local mac=$1 dir
  for dir in /sys/class/net/*; do
    if [[ -r $dir/address ]] && [[ $(<"$dir/address") == "$mac" ]]; then
      basename "$dir"
      return 0
    fi
  done
  return 1
}

macs=$(imds network/interfaces/macs/) || {
  log "cannot list the network interfaces from IMDS"
  exit 1
}
added=0
for mac_entry in $macs; do
  mac=${mac_entry%/}
  if ! dev=$(dev_for_mac "$mac"); then
    log "no interface with MAC $mac yet; skipping it"
    continue
  fi
  cidr=$(imds "network/interfaces/macs/$mac/subnet-ipv4-cidr-block")
  prefix=${cidr#*/}
  # local-ipv4s lists the primary IP first, then the secondary ones, one per line.
  mapfile -t ips < <(imds "network/interfaces/macs/$mac/local-ipv4s")
  for ip in "${ips[@]:1}"; do
    [[ -n $ip ]] || continue
    if ip -4 -o addr show dev "$dev" | grep -qF " inet $ip/"; then
      log "$ip already on $dev"
      continue
    fi
    if ((DRY_RUN)); then
      log "would run: ip addr add $ip/$prefix dev $dev"
    else
      ip addr add "$ip/$prefix" dev "$dev"
      log "added $ip/$prefix to $dev"
    fi
    added=$((added + 1))
  done
done
log "done ($added address(es) added)"
