#!/usr/bin/env bash
# Installs the system packages Roster's build and tests need on a fresh Debian machine
# (idempotent; uses sudo when not run as root):
#   libclang-dev       RocksDB's Rust bindings are generated with bindgen, which needs libclang
#   nftables iproute2  the chaos harness injects partitions and loss inside network namespaces
#   faketime           the clock-skew test (tests/clock.rs) runs nodes under libfaketime
#   chromium chromium-driver  the web console's browser test (tests/console.rs)
#   python3 python3-cryptography  the independent history verifier docs/verify_history.py
#                      (tests/history_proofs.rs runs it; cryptography gives it Ed25519)
#   python3-venv       a virtual environment for schemathesis (PyPI), the API fuzzer that
#                      tests/schemathesis.rs runs against the OpenAPI document; it goes to
#                      $ROSTER_VENV (default /var/cache/roster/venv), not the system Python
#   curl               the README's walkthrough calls the API with it (tests/readme.rs)
set -euo pipefail
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
missing=()
for pkg in libclang-dev nftables iproute2 faketime chromium chromium-driver python3 python3-cryptography python3-venv curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# schemathesis, pinned, in its own virtual environment.
SCHEMATHESIS_VERSION=4.32.5
venv="${ROSTER_VENV:-/var/cache/roster/venv}"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
  if [ -w "$(dirname "$venv")" ] || mkdir -p "$venv" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  else
    as_root python3 -m venv "$venv"
    as_root "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  fi
fi
