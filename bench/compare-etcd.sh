#!/usr/bin/env bash
# Roster against etcd, the way users compare them: wrk at 1, 16, 64 and 256 connections, one
# write per request, 3 nodes on loopback with fsync on, in the same sitting.
#   etcd:   bench/etcd-put.lua (PUT of a key, base64 JSON through etcd's HTTP gateway) to a follower
#   Roster: bench/roster-update.lua (one server's port changed per request) to a follower (it
#           forwards to the leader) and to the leader; plain HTTP like etcd's side.
# Usage: bench/compare-etcd.sh [SECONDS per run, default 10] [ROSTER binary, default target/release/roster]
#   CONNECTIONS="64 256" bench/compare-etcd.sh 60   runs only those connection counts (tail latency runs).
# Needs: apt-get install -y wrk etcd-server etcd-client; a built roster (cargo build --release).
# Prints one line per run and a table at the end; every process it starts is stopped on exit.
set -euo pipefail
secs=${1:-10}
here=$(cd "$(dirname "$0")" && pwd)
roster=${2:-${CARGO_TARGET_DIR:-$here/../target}/release/roster}
for tool in wrk etcd etcdctl curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk etcd-server etcd-client curl python3" >&2; exit 2; }
done
[ -x "$roster" ] || { echo "no roster binary at $roster (cargo build --release, or pass its path)" >&2; exit 2; }
work=$(mktemp -d /tmp/roster-compare.XXXXXX)
roster_pid=""
cleanup() {
  "$here/etcd-3node.sh" down "$work/etcd" >/dev/null 2>&1 || true
  if [ -n "$roster_pid" ]; then kill -- "-$roster_pid" 2>/dev/null || kill "$roster_pid" 2>/dev/null || true; fi
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT
read -r -a connections <<<"${CONNECTIONS:-1 16 64 256}"
results=()

# One wrk run: prints "writes/s p50 p99 max" (ms) and keeps a line for the table.
run() {
  local label=$1 c=$2 script=$3 url=$4
  local threads=2
  [ "$c" -lt 2 ] && threads=1
  local out
  out=$(wrk -t"$threads" -c"$c" -d"${secs}s" --latency -s "$script" "$url")
  local line
  line=$(python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.search(r"[a-z]+", v).group()
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
mx = re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", out).group(1)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
socket = re.search(r"Socket errors: (.*)", out)
print(f"{rps:.0f}/s p50 {ms(lat['50']):.2f} ms p99 {ms(lat['99']):.2f} ms max {ms(mx):.1f} ms"
      + (f" NON-2xx {errors.group(1)}" if errors else "") + (f" socket errors: {socket.group(1)}" if socket else ""))
PY
)
  echo "$label c=$c: $line"
  results+=("$label|$c|$line")
}

echo "== etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}') (3 members, loopback, fsync on)"
"$here/etcd-3node.sh" up "$work/etcd"
leader_ep=$(ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793 endpoint status -w json |
  python3 -c 'import json,sys; s=json.load(sys.stdin); print([e["Endpoint"] for e in s if e["Status"]["leader"]==e["Status"]["header"]["member_id"]][0])')
follower_ep=127.0.0.1:23791
[ "$leader_ep" = "$follower_ep" ] && follower_ep=127.0.0.1:23792
for c in "${connections[@]}"; do run "etcd->follower" "$c" "$here/etcd-put.lua" "http://$follower_ep"; done
"$here/etcd-3node.sh" down "$work/etcd"

echo "== Roster (3 nodes, loopback, fsync on, plain HTTP)"
setsid "$roster" dev --insecure --dir "$work/roster" --base-port 7301 >"$work/roster.log" 2>&1 &
roster_pid=$!
leader=""
for _ in $(seq 150); do
  leader=$(curl -sf http://127.0.0.1:7301/v1/cluster 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(next((m["addr"] for m in d["members"] if m["id"] == d.get("leader")), ""))' 2>/dev/null || true)
  [ -n "$leader" ] && break
  sleep 0.2
done
[ -n "$leader" ] || { echo "the Roster cluster did not elect a leader; see $work/roster.log" >&2; exit 1; }
changes=$(python3 -c 'import json; print(json.dumps({"changes":[{"add_server":{"name":f"s{i}","host":"10.0.0.1","port":1024}} for i in range(1000)]}))')
curl -sf -X POST -H 'Content-Type: application/json' -d "$changes" "http://$leader/v1/commands" >/dev/null
follower=127.0.0.1:7301
[ "$leader" = "$follower" ] && follower=127.0.0.1:7302
for c in "${connections[@]}"; do run "roster->follower" "$c" "$here/roster-update.lua" "http://$follower"; done
for c in "${connections[@]}"; do run "roster->leader" "$c" "$here/roster-update.lua" "http://$leader"; done

echo
echo "| connections | etcd → follower | Roster → follower | Roster → leader |"
echo "|---|---|---|---|"
for c in "${connections[@]}"; do
  row="| $c |"
  for label in "etcd->follower" "roster->follower" "roster->leader"; do
    cell=""
    for r in "${results[@]}"; do
      IFS='|' read -r l rc line <<<"$r"
      [ "$l" = "$label" ] && [ "$rc" = "$c" ] && cell=$line
    done
    row+=" $cell |"
  done
  echo "$row"
done
