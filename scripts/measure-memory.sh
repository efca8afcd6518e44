#!/usr/bin/env bash
# Resident memory of idle Liquid agents.
#
# Starts a mesh of 4 agents on loopback (QUIC on 127.0.0.1, API on 127.0.0.1, no mDNS), waits
# until every agent sees all of them alive (`liquid nodes --json`), lets the mesh idle, then
# prints each agent's VmRSS (resident now) and VmHWM (peak resident) from /proc/PID/status in
# MiB. The agents are stopped with SIGTERM (SIGKILL after a grace period) and the temporary
# directory removed on every exit path.
#
# Environment:
#   LIQUID_BIN          the liquid binary (default target/release/liquid; a debug build works
#                       too, but its numbers are not representative)
#   LIQUID_MEM_AGENTS   how many agents (default 4)
#   LIQUID_MEM_IDLE_S   how long the formed mesh idles before measuring (default 20)
#   LIQUID_MEM_FORM_S   how long the mesh may take to form (default 60)
#
# Linux only (reads /proc). Needs jq or python3 to read the CLI's JSON.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${LIQUID_BIN:-target/release/liquid}
AGENTS=${LIQUID_MEM_AGENTS:-4}
IDLE_S=${LIQUID_MEM_IDLE_S:-20}
FORM_S=${LIQUID_MEM_FORM_S:-60}
STOP_GRACE_S=10
CLI_TIMEOUT_S=5

die() {
  echo "measure-memory: $*" >&2
  exit 1
}

[ -x "$BIN" ] || die "$BIN is not an executable (build it with: cargo build --release -p node-agent --bin liquid, or set LIQUID_BIN)"
BIN=$(realpath "$BIN")
[ -r /proc/self/status ] || die "/proc is needed to read VmRSS/VmHWM"
[[ "$AGENTS" =~ ^[0-9]+$ ]] && [ "$AGENTS" -ge 2 ] || die "LIQUID_MEM_AGENTS must be a number >= 2"
[[ "$IDLE_S" =~ ^[0-9]+$ ]] || die "LIQUID_MEM_IDLE_S must be a number of seconds"
[[ "$FORM_S" =~ ^[0-9]+$ ]] || die "LIQUID_MEM_FORM_S must be a number of seconds"

if command -v jq >/dev/null 2>&1; then
  first_listen_addr() { jq -r '.listen_addrs[0] // empty'; }
  alive_count() { jq '[.[] | select(.status == "alive")] | length'; }
elif command -v python3 >/dev/null 2>&1; then
  first_listen_addr() { python3 -c 'import json,sys; a=json.load(sys.stdin).get("listen_addrs") or [""]; print(a[0])'; }
  alive_count() { python3 -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin) if m.get("status")=="alive"))'; }
else
  die "jq or python3 is needed to read the CLI's JSON"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/liquid-mem.XXXXXX")
PIDS=()
SLEEP_PID=""

# A process is still running (not gone, not a zombie waiting to be reaped).
running() {
  [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$SLEEP_PID" ] && kill "$SLEEP_PID" 2>/dev/null
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  local deadline=$((SECONDS + STOP_GRACE_S))
  for pid in "${PIDS[@]}"; do
    while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.1
    done
    if running "$pid"; then
      echo "measure-memory: agent $pid ignored SIGTERM for ${STOP_GRACE_S}s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    for log in "$WORK"/agent-*.log; do
      [ -s "$log" ] || continue
      echo "--- last lines of $(basename "$log") ---" >&2
      tail -n 15 "$log" >&2
    done
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cli() {
  timeout "$CLI_TIMEOUT_S" "$BIN" "$@"
}

start_agent() {
  local k=$1 bootstrap=${2:-}
  local dir="$WORK/agent-$k"
  mkdir -p "$dir"
  local args=(agent --data-dir "$dir" --listen /ip4/127.0.0.1/udp/0/quic-v1 --api 127.0.0.1:0 --no-mdns
    --cluster-key "$WORK/cluster.key" --name "mem-$k")
  [ -n "$bootstrap" ] && args+=(--bootstrap "$bootstrap")
  RUST_LOG=${RUST_LOG:-warn} "$BIN" "${args[@]}" </dev/null >"$WORK/agent-$k.log" 2>&1 &
  PIDS+=($!)
}

cli cluster init --out "$WORK/cluster.key" >/dev/null

echo "starting $AGENTS agents on loopback with $BIN"
start_agent 1
deadline=$((SECONDS + FORM_S))
boot=""
while [ -z "$boot" ]; do
  running "${PIDS[0]}" || die "agent 1 exited during start-up"
  [ "$SECONDS" -lt "$deadline" ] || die "agent 1 did not report a listen address within ${FORM_S}s"
  boot=$(cli status --json --data-dir "$WORK/agent-1" 2>/dev/null | first_listen_addr 2>/dev/null || true)
  [ -n "$boot" ] || sleep 0.2
done
echo "agent 1 listens on $boot"
for k in $(seq 2 "$AGENTS"); do
  start_agent "$k" "$boot"
done

formed_at=""
while [ -z "$formed_at" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "the mesh did not form within ${FORM_S}s"
  all=1
  for k in $(seq 1 "$AGENTS"); do
    running "${PIDS[$((k - 1))]}" || die "agent $k exited"
    n=$(cli nodes --json --data-dir "$WORK/agent-$k" 2>/dev/null | alive_count 2>/dev/null || echo 0)
    if [ "${n:-0}" != "$AGENTS" ]; then
      all=0
      break
    fi
  done
  if [ "$all" = 1 ]; then
    formed_at=$SECONDS
  else
    sleep 0.5
  fi
done
echo "all $AGENTS agents see each other alive; idling ${IDLE_S}s"
sleep "$IDLE_S" &
SLEEP_PID=$!
wait "$SLEEP_PID"
SLEEP_PID=""

kib_to_mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
field_kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"; }

printf '\n%-8s %8s %10s %10s %8s\n' agent pid "VmRSS MiB" "VmHWM MiB" threads
sum_rss=0
sum_hwm=0
for k in $(seq 1 "$AGENTS"); do
  pid=${PIDS[$((k - 1))]}
  running "$pid" || die "agent $k exited while idling"
  rss=$(field_kib VmRSS "$pid")
  hwm=$(field_kib VmHWM "$pid")
  threads=$(field_kib Threads "$pid")
  sum_rss=$((sum_rss + rss))
  sum_hwm=$((sum_hwm + hwm))
  printf '%-8s %8s %10s %10s %8s\n' "mem-$k" "$pid" "$(kib_to_mib "$rss")" "$(kib_to_mib "$hwm")" "$threads"
done
printf '%-8s %8s %10s %10s\n' mean "" "$(kib_to_mib $((sum_rss / AGENTS)))" "$(kib_to_mib $((sum_hwm / AGENTS)))"
echo
echo "binary: $BIN ($(du -h "$BIN" | cut -f1)); idle ${IDLE_S}s after the mesh formed; stopping the agents"
