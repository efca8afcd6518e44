#!/usr/bin/env bash
# The core and the simulator must not depend on a runtime, a network stack or a Wasm engine:
# the same core runs under the real driver and under the simulator's virtual time.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for pkg in liquid-core sim state-sync; do
  deps=$(cargo tree -e normal -p "$pkg" --prefix none --locked | awk '{print $1}' | sort -u)
  for banned in tokio libp2p quinn wasmtime async-std mio; do
    if grep -qx "$banned" <<<"$deps" || grep -q "^$banned-" <<<"$deps"; then
      echo "purity check: $pkg depends on $banned (normal dependencies must stay runtime-free)" >&2
      status=1
    fi
  done
done
[ $status -eq 0 ] && echo "purity check: liquid-core, sim and state-sync depend on no runtime, network stack or Wasm engine"
exit $status
