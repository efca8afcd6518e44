#!/usr/bin/env bash
# Builds the example functions in examples/functions/<name>/ into <name>.wasm next to their
# liquid.toml, with Debian's toolchains (no rustup target needed): rustc 1.63 for
# wasm32-wasi and clang 14 with wasi-libc. Then checks every module's exports and imports.
#
# The .wasm files are committed, so the demo, the tests, the benches and the simulator never
# need these toolchains. Run this after editing a guest (or the SDK) and commit the result;
# CI runs --check, which fails when a committed module is not what its source builds to.
# The builds are byte-reproducible: the same Debian packages give the same bytes in any
# checkout and working directory (paths are remapped; nothing depends on the time).
#
#   scripts/build-guests.sh          # build what is out of date, check all
#   scripts/build-guests.sh --force  # rebuild everything
#   scripts/build-guests.sh --check  # rebuild everything into a temporary directory and compare
#                                    # byte for byte with the committed modules (changes nothing)
#   scripts/build-guests.sh --install  # first install missing toolchains with apt-get (root or sudo)
set -euo pipefail
cd "$(dirname "$0")/.."

RUSTC=/usr/bin/rustc # Debian's, by full path: rustup's rustc stays first on PATH
CLANG=${CLANG:-clang}
OUT=target/guests
APT="apt-get install -y rustc libstd-rust-dev-wasm32 clang lld wasi-libc libclang-rt-14-dev-wasm32 wabt"
force=0
install=0
check=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --install) install=1 ;;
    --check) check=1 force=1 ;;
    *) echo "build-guests: unknown argument $arg" >&2; exit 2 ;;
  esac
done

toolchains_present() {
  [ -x "$RUSTC" ] && [ -d /usr/lib/rustlib/wasm32-wasi/lib ] && command -v "$CLANG" >/dev/null 2>&1 \
    && command -v wasm-ld >/dev/null 2>&1 && [ -f /usr/include/wasm32-wasi/stdio.h ] \
    && command -v wasm-objdump >/dev/null 2>&1
}
if [ "$install" = 1 ] && ! toolchains_present && command -v apt-get >/dev/null 2>&1; then
  echo "build-guests: installing the guest toolchains from Debian"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo $APT -qq
fi

missing() {
  echo "build-guests: $1 is missing. Install the guest toolchains with:" >&2
  echo "  $APT" >&2
  exit 1
}
[ -x "$RUSTC" ] || missing "$RUSTC (Debian's rustc)"
[ -d /usr/lib/rustlib/wasm32-wasi/lib ] || missing "the wasm32-wasi Rust std (libstd-rust-dev-wasm32)"
command -v "$CLANG" >/dev/null 2>&1 || missing "clang"
command -v wasm-ld >/dev/null 2>&1 || missing "wasm-ld (lld)"
[ -f /usr/include/wasm32-wasi/stdio.h ] || missing "wasi-libc"
command -v wasm-objdump >/dev/null 2>&1 || missing "wasm-objdump (wabt)"

# Where the modules go: next to their sources, or (--check) under a temporary directory that
# mirrors the repository's layout.
dest=""
if [ "$check" = 1 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  dest=$tmp/
  OUT=$tmp/target/guests
fi
mkdir -p "$OUT"
# Reproducible: no absolute path of this checkout (or of the temporary directory) reaches a
# module, whatever the working directory. The Rust builds get one codegen unit.
remap=(--remap-path-prefix "$PWD/=" -C codegen-units=1)
[ -z "$dest" ] || remap+=(--remap-path-prefix "${dest}=")
cremap=(-ffile-prefix-map="$PWD/=" -fdebug-prefix-map="$PWD/=")
[ -z "$dest" ] || cremap+=(-ffile-prefix-map="${dest}=")

# stale OUTPUT INPUT... : true if OUTPUT is missing or older than an input
stale() {
  local out=$1
  shift
  [ "$force" = 1 ] && return 0
  [ -e "$out" ] || return 0
  local f
  for f in "$@"; do
    [ "$f" -nt "$out" ] && return 0
  done
  return 1
}

sdk=guest/src/lib.rs
rlib=$OUT/libliquid_guest.rlib
if stale "$rlib" "$sdk"; then
  echo "build-guests: liquid_guest (rlib)"
  "$RUSTC" --edition 2021 --target wasm32-wasi --crate-type rlib -O \
    "${remap[@]}" --crate-name liquid_guest "$sdk" -o "$rlib"
fi

built=()
committed=()
for dir in examples/functions/*/; do
  dir=${dir%/}
  name=$(basename "$dir")
  [ -f "$dir/liquid.toml" ] || continue
  wasm=$dest$dir/$name.wasm
  mkdir -p "$dest$dir"
  crate=${name//-/_}
  if [ -f "$dir/lib.rs" ]; then
    # A Liquid ABI function in Rust (exports liquid_call) using the SDK.
    if stale "$wasm" "$dir/lib.rs" "$rlib"; then
      echo "build-guests: $name (Rust, Liquid ABI)"
      "$RUSTC" --edition 2021 --target wasm32-wasi --crate-type cdylib -O \
        -C strip=debuginfo -C lto "${remap[@]}" --crate-name "$crate" \
        --extern liquid_guest="$rlib" -L "$OUT" "$dir/lib.rs" -o "$wasm"
    fi
  elif [ -f "$dir/main.rs" ]; then
    # A WASI command in Rust.
    if stale "$wasm" "$dir/main.rs" "$rlib"; then
      echo "build-guests: $name (Rust, WASI command)"
      "$RUSTC" --edition 2021 --target wasm32-wasi -O -C strip=debuginfo -C lto "${remap[@]}" \
        --crate-name "$crate" --extern liquid_guest="$rlib" -L "$OUT" \
        "$dir/main.rs" -o "$wasm"
    fi
  elif compgen -G "$dir/*.c" >/dev/null; then
    # C: a WASI command if it defines main, else a reactor exporting liquid_call.
    srcs=("$dir"/*.c)
    if stale "$wasm" "${srcs[@]}" guest/liquid.h; then
      model=()
      if ! grep -qE '\bint[[:space:]]+main[[:space:]]*\(' "${srcs[@]}"; then
        model=(-mexec-model=reactor)
      fi
      echo "build-guests: $name (C${model:+, reactor})"
      "$CLANG" --target=wasm32-wasi -O2 -Wall -Werror -Iguest "${model[@]}" "${cremap[@]}" \
        -Wl,--strip-debug "${srcs[@]}" -o "$wasm"
    fi
  else
    echo "build-guests: $dir has a liquid.toml but no lib.rs, main.rs or *.c" >&2
    exit 1
  fi
  chmod 644 "$wasm" # data, not a program (wasm-ld marks its output executable)
  built+=("$wasm")
  committed+=("$dir/$name.wasm")
done

# Check each module: exports memory and liquid_call or _start; imports only liquid.* (with
# the signatures of docs/abi.md) and wasi_snapshot_preview1.*.
declare -A abi=(
  [input_len]="() -> i32" [input_read]="(i32, i32) -> i32" [output]="(i32, i32) -> i32"
  [result_read]="(i32, i32) -> i32" [obj_get]="(i32, i32, i32, i32) -> i64"
  [obj_set]="(i32, i32, i32, i32, i32, i32) -> i64" [obj_inc]="(i32, i32, i32, i32, i64) -> i64"
  [obj_del]="(i32, i32, i32, i32) -> i64" [obj_apply]="(i32, i32, i32, i32) -> i64"
  [obj_list]="(i32, i32) -> i64" [log]="(i32, i32, i32) -> nil" [now_ms]="() -> i64"
  [random]="(i32, i32) -> i32" [call]="(i32, i32, i32, i32) -> i64"
)
fail=0
for wasm in "${built[@]}"; do
  exports=$(wasm-objdump -x -j Export "$wasm" | sed -n 's/.* -> "\(.*\)"$/\1/p')
  imports=$(wasm-objdump -x -j Import "$wasm" | sed -n 's/.* <- \([^ ]*\)$/\1/p')
  problems=()
  grep -qx memory <<<"$exports" || problems+=("no exported memory")
  entry=$(grep -xE 'liquid_call|_start' <<<"$exports" | head -1 || true)
  [ -n "$entry" ] || problems+=("exports neither liquid_call nor _start")
  bad=$(grep -vE '^(liquid|wasi_snapshot_preview1)\.' <<<"$imports" || true)
  [ -z "$bad" ] || problems+=("imports outside liquid/wasi_snapshot_preview1: $(echo $bad)")
  # signatures of the liquid imports
  declare -A types=()
  while read -r idx sig; do types[$idx]=$sig; done < <(
    wasm-objdump -x -j Type "$wasm" | sed -n 's/^ - type\[\([0-9]*\)\] \(.*\)$/\1 \2/p')
  while read -r idx name; do
    want=${abi[$name]:-}
    if [ -z "$want" ]; then
      problems+=("unknown import liquid.$name")
    elif [ "${types[$idx]:-}" != "$want" ]; then
      problems+=("liquid.$name is ${types[$idx]:-?}, the ABI says $want")
    fi
  done < <(wasm-objdump -x -j Import "$wasm" |
    sed -n 's/^ - func\[[0-9]*\] sig=\([0-9]*\) .* <- liquid\.\([a-z_]*\)$/\1 \2/p')
  unset types
  size=$(stat -c %s "$wasm")
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'build-guests: FAIL %s: %s\n' "$wasm" "$(IFS=';'; echo "${problems[*]}")" >&2
    fail=1
  else
    printf 'build-guests: ok %-48s %7d bytes  %-11s imports: %s\n' "${wasm#"$dest"}" "$size" "$entry" \
      "$(echo $imports)"
  fi
done
[ "$fail" = 0 ] || exit 1

if [ "$check" = 1 ]; then
  # Byte for byte against the committed modules.
  differ=()
  for i in "${!built[@]}"; do
    want=${committed[$i]}
    if [ ! -f "$want" ]; then
      echo "build-guests: MISSING $want (not committed)" >&2
      differ+=("$want")
    elif ! cmp -s "${built[$i]}" "$want"; then
      echo "build-guests: DIFFERS $want: committed $(stat -c %s "$want") bytes, its source builds" \
        "$(stat -c %s "${built[$i]}") bytes ($(cmp "${built[$i]}" "$want" 2>&1 | sed 's/.*differ: //'))" >&2
      differ+=("$want")
    else
      echo "build-guests: same $want"
    fi
  done
  if [ ${#differ[@]} -gt 0 ]; then
    echo "build-guests: ${#differ[@]} committed module(s) are not what their sources build to." >&2
    echo "  Refresh them with: scripts/build-guests.sh --force && git add ${differ[*]}" >&2
    echo "  The bytes depend on the toolchains' exact versions; these were (Debian packages):" >&2
    dpkg-query -W rustc libstd-rust-dev-wasm32 clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 \
      2>/dev/null | sed 's/^/    /' >&2 || echo "    $("$RUSTC" --version); $("$CLANG" --version | head -1)" >&2
    exit 1
  fi
  echo "build-guests: all ${#built[@]} committed modules are byte for byte what scripts/build-guests.sh builds"
fi
