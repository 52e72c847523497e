#!/usr/bin/env bash
# Installs the system packages Roster's build needs on a fresh Debian machine (idempotent).
# RocksDB's Rust bindings are generated with bindgen, which needs libclang.
set -euo pipefail
if ! dpkg -s libclang-dev >/dev/null 2>&1; then
  echo "installing libclang-dev (needed to build RocksDB's bindings)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
fi
# The chaos harness (chaos/) injects partitions and packet loss with nftables rules inside
# network namespaces (ip netns, from iproute2).
# The clock-skew test (tests/clock.rs) runs nodes under libfaketime (Debian's faketime).
for pkg in nftables iproute2 faketime; do
  if ! dpkg -s "$pkg" >/dev/null 2>&1; then
    echo "installing $pkg (used by the chaos harness and the clock-skew test)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  fi
done
