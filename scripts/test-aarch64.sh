#!/usr/bin/env bash
# The ARM agent test: runs the aarch64 `liquid` (cross-built by scripts/build-aarch64.sh) under
# qemu-user on this x86_64 host, next to an x86_64 agent, and checks:
#   1. `liquid --version` runs;
#   2. an aarch64 agent and an x86_64 agent form a mesh on loopback (QUIC), each sees the other
#      alive with its architecture;
#   3. objects converge both ways (written on one agent, read with the same value on the other);
#   4. a function deployed on the x86 agent is invoked on the ARM agent and runs there (its
#      module travels by hash and is compiled by wasmtime's aarch64 backend under emulation);
#   5. the ARM agent stops cleanly on SIGTERM (exit 0).
# One PASS/FAIL line per check, then a summary line; exits non-zero if any check failed.
#
#   scripts/test-aarch64.sh [ARM_LIQUID [X86_LIQUID]]
#
# Defaults: ARM_LIQUID=${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/liquid
# (build it with scripts/build-aarch64.sh) and X86_LIQUID=${CARGO_TARGET_DIR:-target}/debug/liquid
# (built with `cargo build --bin liquid` when missing). The function is
# examples/functions/hello/hello.wasm (built with scripts/build-guests.sh when missing).
#
# Bounded: the whole test is killed after ARM_TEST_TIMEOUT seconds (default 300; it takes
# about a minute). Agents and the temp dir are removed on exit (ARM_TEST_KEEP=1 keeps the dir).
# Runs in a network namespace of its own that has only loopback when `unshare -n` is allowed
# (root), else on the host's loopback (ports are picked by the kernel either way).
#
# qemu-user: Debian 12's qemu-user 7.2 cannot run the agent (wasmtime's pooling allocator
# reserves terabytes of address space and qemu 7.2 grows until the OOM killer ends it), so the
# test needs qemu-aarch64 >= 8. It uses ARM_QEMU_USER, else qemu-aarch64-static or
# qemu-aarch64 if >= 8, else downloads qemu-user from bookworm-backports once (a private apt
# state: the system's sources are not touched) into ${XDG_CACHE_HOME:-$HOME/.cache}/liquid-arm.
# The aarch64 glibc comes from libc6:arm64 (multiarch, installed by build-aarch64.sh); never
# mix it with libc6-arm64-cross's loader (`-L /usr/aarch64-linux-gnu`): threads then hang.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=$ROOT/scripts/$(basename "$0")
TD=${CARGO_TARGET_DIR:-$ROOT/target}
ARM=${1:-$TD/aarch64-unknown-linux-gnu/release/liquid}
X86=${2:-$TD/debug/liquid}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/liquid-arm
TIMEOUT=${ARM_TEST_TIMEOUT:-300}
say() { echo "test-aarch64: $*"; }

# ---------------------------------------------------------------- preparation (outside the bound)
if [ -z "${ARM_TEST_INNER:-}" ]; then
  t0=$(date +%s)
  [ -f "$ARM" ] || { say "FAIL no aarch64 binary at $ARM (run scripts/build-aarch64.sh)"; exit 1; }
  arch=$(LC_ALL=C readelf -h "$ARM" 2>/dev/null | awk -F: '/Machine:/ {gsub(/^ +/, "", $2); print $2}')
  [ "$arch" = AArch64 ] || { say "FAIL $ARM is not an AArch64 binary (${arch:-not ELF})"; exit 1; }
  if [ ! -x "$X86" ]; then
    say "building the x86_64 agent: cargo build --bin liquid"
    (cd "$ROOT" && cargo build --locked --quiet --bin liquid) || { say "FAIL x86 build"; exit 1; }
    X86=$ROOT/target/debug/liquid
    [ -n "${CARGO_TARGET_DIR:-}" ] && X86=$CARGO_TARGET_DIR/debug/liquid
  fi
  if [ ! -f "$ROOT/examples/functions/hello/hello.wasm" ]; then
    say "building the example functions: scripts/build-guests.sh --install"
    "$ROOT/scripts/build-guests.sh" --install >/dev/null || { say "FAIL guest build"; exit 1; }
  fi
  # The aarch64 glibc (multiarch) for qemu-user.
  if [ ! -e /lib/ld-linux-aarch64.so.1 ] || [ ! -e /lib/aarch64-linux-gnu/libc.so.6 ]; then
    say "FAIL libc6:arm64 is missing: dpkg --add-architecture arm64 && apt-get update && apt-get install libc6:arm64 libgcc-s1:arm64"
    exit 1
  fi
  # qemu-user >= 8.
  qver() { "$1" --version 2>/dev/null | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1; }
  QEMU=${ARM_QEMU_USER:-}
  if [ -z "$QEMU" ]; then
    for q in qemu-aarch64-static qemu-aarch64 "$CACHE/qemu-user/qemu-aarch64"; do
      p=$(command -v "$q" 2>/dev/null) || continue
      [ "$(qver "$p")" -ge 8 ] 2>/dev/null && { QEMU=$p; break; }
    done
  fi
  if [ -z "$QEMU" ]; then
    codename=$(. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}")
    [ "$codename" = bookworm ] || { say "FAIL no qemu-aarch64 >= 8 (set ARM_QEMU_USER)"; exit 1; }
    say "fetching qemu-user from bookworm-backports into $CACHE/qemu-user (once)"
    a=$(mktemp -d "${TMPDIR:-/tmp}/test-aarch64-apt.XXXXXX")
    mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$CACHE/qemu-user"
    echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" > "$a/sources.list"
    o=(-o "Dir::Etc::SourceList=$a/sources.list" -o "Dir::Etc::SourceParts=$a/none"
      -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o APT::Sandbox::User=root)
    if apt-get -qq "${o[@]}" update && (cd "$a" && apt-get -qq "${o[@]}" download qemu-user) \
      && dpkg -x "$a"/qemu-user_*.deb "$a/x"; then
      cp "$a/x/usr/bin/qemu-aarch64" "$CACHE/qemu-user/qemu-aarch64.tmp"
      mv "$CACHE/qemu-user/qemu-aarch64.tmp" "$CACHE/qemu-user/qemu-aarch64"
      dpkg-deb -f "$a"/qemu-user_*.deb Version > "$CACHE/qemu-user/version"
    fi
    rm -rf "$a"
    [ -x "$CACHE/qemu-user/qemu-aarch64" ] || { say "FAIL could not fetch qemu-user"; exit 1; }
    QEMU=$CACHE/qemu-user/qemu-aarch64
  fi
  say "aarch64: $ARM ($(du -h "$ARM" | cut -f1)); x86_64: $X86; qemu-user $(qver "$QEMU") ($QEMU); prepared in $(( $(date +%s) - t0 )) s"
  export ARM_TEST_INNER=1 ARM_LIQUID=$(readlink -f "$ARM") X86_LIQUID=$(readlink -f "$X86") QEMU ROOT
  # A network namespace with only loopback, when allowed.
  if unshare -n true 2>/dev/null; then
    NETNS=(unshare -n)
    say "in a network namespace of its own (loopback only)"
  else
    NETNS=()
    say "unshare -n not allowed: on the host's loopback"
  fi
  # The bound: TERM after $TIMEOUT s (the inner script's trap stops the agents), KILL 10 s later.
  timeout -k 10 "$TIMEOUT" "${NETNS[@]}" bash "$SELF"
  rc=$?
  [ $rc = 124 ] && say "FAIL timed out after $TIMEOUT s (ARM_TEST_TIMEOUT)"
  exit $rc
fi

# ---------------------------------------------------------------- the test (inside the bound)
ip link set lo up 2>/dev/null
ARM=$ARM_LIQUID X86=$X86_LIQUID
W=$(mktemp -d "${TMPDIR:-/tmp}/test-aarch64.XXXXXX")
cd "$W" || exit 1
START=$(date +%s.%N)
now() { date +%s.%N; }
el() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $*"; }
A_PID="" B_PID=""
cleanup() {
  trap - EXIT TERM INT
  for p in $B_PID $A_PID; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    kill -0 $B_PID $A_PID 2>/dev/null || break
    sleep 0.1
  done
  for p in $B_PID $A_PID; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  cd /
  if [ "${ARM_TEST_KEEP:-0}" = 1 ]; then echo "test-aarch64: kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'echo "test-aarch64: stopped (signal)"; exit 124' TERM INT
# arm ARGS...: the aarch64 liquid under qemu-user (multiarch glibc: no -L), bounded.
arm() { timeout -k 5 120 "$QEMU" "$ARM" "$@"; }
x86() { timeout -k 5 60 "$X86" "$@"; }
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
  local n=$(($1 * 5))
  shift
  for _ in $(seq "$n"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}
dump_logs() {
  echo "--- x86 agent log (tail)"; tail -n 15 a.log 2>/dev/null
  echo "--- arm agent log (tail)"; tail -n 15 b.log 2>/dev/null
}

# 1. --version
t=$(now)
v=$(arm --version 2>&1)
rc=$?
if [ $rc = 0 ] && echo "$v" | grep -q '^liquid [0-9]'; then
  pass "version: '$v' under qemu-user ($(el "$t") s)"
else
  fail "version: rc=$rc, output: $v"
fi

# 2. the mesh
x86 cluster init --out cluster.key >/dev/null || { fail "cluster init"; exit 1; }
COMMON=(--cluster-key cluster.key --no-mdns --api 127.0.0.1:0 --listen /ip4/127.0.0.1/udp/0/quic-v1)
"$X86" agent --data-dir a "${COMMON[@]}" --tier cloud --name x86-a 2>a.log &
A_PID=$!
if ! wait_for 20 x86 status --data-dir a; then
  fail "x86 agent did not start"
  dump_logs
  exit 1
fi
A_ADDR=$(x86 status --data-dir a --json | sed -n 's/.*"\(\/ip4\/127\.0\.0\.1\/udp\/[^"]*\)".*/\1/p' | head -1)
t=$(now)
timeout -k 5 "$TIMEOUT" "$QEMU" "$ARM" agent --data-dir b "${COMMON[@]}" --tier edge --name arm-b \
  --bootstrap "$A_ADDR" 2>b.log &
B_PID=$!
if ! wait_for 60 x86 status --data-dir b; then
  fail "arm agent did not answer its API within 60 s"
  dump_logs
  exit 1
fi
B_UP=$(el "$t")
t=$(now)
seen_arm() { x86 nodes --data-dir a | grep -E '^arm-b ' | grep -q 'aarch64.*alive'; }
seen_x86() { arm nodes --data-dir b | grep -E '^x86-a ' | grep -q 'x86_64.*alive'; }
if wait_for 60 seen_arm && wait_for 30 seen_x86; then
  pass "mesh: arm agent API up in $B_UP s; x86-a sees arm-b (aarch64) alive and arm-b sees x86-a (x86_64) alive after $(el "$t") s"
  x86 nodes --data-dir a | sed 's/^/    /'
else
  fail "mesh: the agents do not see each other alive"
  x86 nodes --data-dir a
  arm nodes --data-dir b
  dump_logs
fi

# 3. objects, both ways
t=$(now)
arm obj set arm-test/from-arm v '"written-on-aarch64"' --data-dir b >/dev/null 2>obj.err || cat obj.err
got_on_x86() { x86 obj get arm-test/from-arm --json --data-dir a 2>/dev/null | grep -q '"written-on-aarch64"'; }
if wait_for 30 got_on_x86; then
  pass "object arm->x86: written on arm-b, x86-a reads $(x86 obj get arm-test/from-arm --json --data-dir a | tr -d ' \n') ($(el "$t") s)"
else
  fail "object arm->x86: x86-a reads '$(x86 obj get arm-test/from-arm --json --data-dir a 2>&1 | tr -d '\n')'"
fi
t=$(now)
x86 obj set arm-test/from-x86 v '"written-on-x86_64"' --data-dir a >/dev/null 2>obj.err || cat obj.err
got_on_arm() { arm obj get arm-test/from-x86 --json --data-dir b 2>/dev/null | grep -q '"written-on-x86_64"'; }
if wait_for 30 got_on_arm; then
  pass "object x86->arm: written on x86-a, arm-b reads $(arm obj get arm-test/from-x86 --json --data-dir b | tr -d ' \n') ($(el "$t") s)"
else
  fail "object x86->arm: arm-b reads '$(arm obj get arm-test/from-x86 --json --data-dir b 2>&1 | tr -d '\n')'"
fi

# 4. a function: deployed on x86-a, invoked on arm-b (a stateless function runs where it is invoked)
t=$(now)
if x86 fn deploy "$ROOT/examples/functions/hello" --quiet --data-dir a >deploy.out 2>&1; then
  known_on_arm() { arm fn ls --data-dir b 2>/dev/null | grep -q hello; }
  wait_for 30 known_on_arm
  out="" ok=0
  for _ in $(seq 20); do
    out=$(arm fn invoke hello --input aarch64 --data-dir b 2>&1) && echo "$out" | grep -q '^hello, aarch64!$' && { ok=1; break; }
    sleep 1
  done
  logs=$(arm fn logs hello --data-dir b 2>&1)
  if [ $ok = 1 ] && echo "$logs" | grep -q 'greeting 7 bytes'; then
    pass "function: hello deployed on x86-a, invoked on arm-b -> '$out'; arm-b's log: '$(echo "$logs" | grep 'greeting' | tail -1 | sed 's/^[0-9]* *[a-zA-Z]* *//')' ($(el "$t") s)"
    t=$(now)
    out2=$(arm fn invoke hello --input again --data-dir b 2>&1)
    echo "    second call on arm-b (module compiled): $(el "$t") s, '$out2'"
  else
    fail "function: invoke on arm-b gave '$out' (rc ok=$ok); arm-b's logs: $logs"
    dump_logs
  fi
else
  fail "function: deploy on x86-a failed: $(cat deploy.out)"
fi

# 5. clean stop of the ARM agent
t=$(now)
kill -TERM "$B_PID"
wait "$B_PID"
rc=$?
B_PID=""
if [ $rc = 0 ]; then
  pass "shutdown: arm agent exited 0 on SIGTERM ($(el "$t") s)"
else
  fail "shutdown: arm agent exit code $rc"
  dump_logs
fi
warns=$(grep -c -E ' (WARN|ERROR) ' b.log)
echo "    arm agent log: $(wc -l <b.log) lines, $warns WARN/ERROR"
grep -E ' (WARN|ERROR) ' b.log | head -3 | sed 's/^/    /'

total=$(el "$START")
if [ $FAILED = 0 ]; then
  echo "test-aarch64: PASS ($PASSED checks in $total s)"
else
  echo "test-aarch64: FAIL ($FAILED of $((PASSED + FAILED)) checks failed, $total s)"
  exit 1
fi
