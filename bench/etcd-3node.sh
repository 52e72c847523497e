#!/usr/bin/env bash
# The peer Roster's write benchmarks are compared with: a 3-member etcd cluster on loopback,
# fsync on (etcd's default). Members: clients on 127.0.0.1:23791-23793, peers on 23801-23803.
#   bench/etcd-3node.sh up DIR     start it (data and logs in DIR) and wait until it is healthy
#   bench/etcd-3node.sh down DIR   stop it
# Needs Debian's etcd-server and etcd-client (apt-get install -y etcd-server etcd-client wrk).
set -euo pipefail
action=${1:?up or down} dir=${2:?a folder for the data}
members=(1 2 3)
case "$action" in
up)
  command -v etcd >/dev/null || { echo "no etcd: apt-get install -y etcd-server etcd-client" >&2; exit 2; }
  mkdir -p "$dir"
  initial=""
  for m in "${members[@]}"; do initial+="m$m=http://127.0.0.1:2380$m,"; done
  for m in "${members[@]}"; do
    ETCD_UNSUPPORTED_ARCH='' setsid etcd --name "m$m" --data-dir "$dir/m$m" \
      --listen-client-urls "http://127.0.0.1:2379$m" --advertise-client-urls "http://127.0.0.1:2379$m" \
      --listen-peer-urls "http://127.0.0.1:2380$m" --initial-advertise-peer-urls "http://127.0.0.1:2380$m" \
      --initial-cluster "${initial%,}" --initial-cluster-state new --initial-cluster-token roster-bench \
      --log-level error >"$dir/m$m.log" 2>&1 &
    echo $! >"$dir/m$m.pid"
  done
  for _ in $(seq 150); do
    if ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 endpoint health >/dev/null 2>&1; then
      echo "etcd: 3 members healthy (clients 127.0.0.1:23791-23793)"
      exit 0
    fi
    sleep 0.2
  done
  echo "etcd did not become healthy within 30 s; see $dir/m*.log" >&2
  exit 1
  ;;
down)
  for m in "${members[@]}"; do
    if [ -f "$dir/m$m.pid" ]; then kill "$(cat "$dir/m$m.pid")" 2>/dev/null || true; rm -f "$dir/m$m.pid"; fi
  done
  ;;
*) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
