#!/usr/bin/env bash
# The core and the object logic must not depend on a runtime, a network stack or a Wasm
# engine: the same core runs under the real driver and under the simulator's virtual time.
# The simulator runs functions for real, so it may use the Wasm engine (wasmtime, which
# meters guests by deterministic fuel); tokio reaches it only as WASI's internal I/O layer
# (wasmtime-wasi), never as a scheduler of ours — checked below. No network stack, ever.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
deps_of() { cargo tree -e normal -p "$@" --prefix none --locked | awk '{print $1}' | sort -u; }
has() { grep -qx "$1" <<<"$2" || grep -q "^$1-" <<<"$2"; }
for pkg in liquid-core state-sync; do
  deps=$(deps_of "$pkg")
  for banned in tokio libp2p quinn wasmtime async-std mio; do
    if has "$banned" "$deps"; then
      echo "purity check: $pkg depends on $banned (normal dependencies must stay runtime-free)" >&2
      status=1
    fi
  done
done
# The feature `testing` (the virtual-time harness, for other crates' tests and benches) adds
# code, never a dependency.
if [ "$(deps_of liquid-core --features testing)" != "$(deps_of liquid-core)" ]; then
  echo "purity check: liquid-core's feature \`testing\` adds dependencies (it must add none)" >&2
  status=1
fi
# ... and only tests and benches turn it on: no normal build of the agent or the simulator has it.
for pkg in node-agent sim; do
  if cargo tree -e normal,features -p "$pkg" -i liquid-core --prefix none --locked | grep -q '^liquid-core feature "testing"'; then
    echo "purity check: a normal build of $pkg turns on liquid-core's feature \`testing\`" >&2
    status=1
  fi
done
deps=$(deps_of sim)
for banned in libp2p quinn async-std; do
  if has "$banned" "$deps"; then
    echo "purity check: sim depends on $banned (the simulator has no network stack)" >&2
    status=1
  fi
done
if has tokio "$deps"; then
  users=$(cargo tree -e normal -p sim -i tokio --depth 1 --prefix none --locked | awk '{print $1}' | sort -u | grep -vx tokio || true)
  if [ "$users" != "wasmtime-wasi" ]; then
    echo "purity check: sim reaches tokio through $(echo $users) (only wasmtime-wasi's I/O layer is allowed)" >&2
    status=1
  fi
fi
[ $status -eq 0 ] && echo "purity check: liquid-core and state-sync depend on no runtime, network stack or Wasm engine (liquid-core's feature testing adds no dependency); sim on no network stack, and on tokio only inside wasmtime-wasi"
exit $status
