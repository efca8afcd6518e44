#!/usr/bin/env bash
# Cross-builds the `liquid` agent for ARM boards (aarch64-unknown-linux-gnu) on an x86_64
# Debian 12 (bookworm) host, from Debian packages only.
#
#   scripts/build-aarch64.sh              # release build (what you ship), prints the binary's path
#   scripts/build-aarch64.sh --debug      # debug build
#   scripts/build-aarch64.sh --check      # only check/prepare the toolchain, build nothing
#   ... -- ARGS                           # extra arguments for cargo build
#
# The binary lands in ${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/<profile>/liquid.
#
# Why Debian's compiler, and why not the system's rustc:
# - rustup cannot add the aarch64 std here: its download server is not a reachable registry,
#   so nothing may depend on `rustup target add` (a fresh machine or CI cannot count on it).
# - Debian's `rustc` package is 1.63, far below the workspace's rust-version (1.90; wasmtime 48,
#   libp2p 0.57). Debian's `rustc-web` (bookworm-security, 1.96) is recent enough and ships a
#   prebuilt std for arm64 through multiarch (libstd-rust-web-dev:arm64).
# - But `rustc-web` conflicts with `rustc`, and installing it would take /usr/bin/rustc 1.63 away
#   from scripts/build-guests.sh (wasm32-wasi guests). So this script does not install the
#   compiler: it downloads rustc-web, cargo-web and their std packages (`apt-get download`) and
#   unpacks them (`dpkg -x`) into a private prefix, used only for this build
#   (see ../shared/TOOLCHAIN.md, section ARM, "Caveat"). rustup's toolchain is not used at all.
# What is installed with apt-get (as root; otherwise the command is printed and the script
# stops): the arm64 dpkg architecture, the cross linker gcc-aarch64-linux-gnu (ring, zstd and
# wasmtime's C bits are compiled with it), libllvm22 (rustc-web's LLVM), the shared libraries
# cargo-web links to, and libc6:arm64 so the result runs under qemu-user (scripts/test-aarch64.sh).
#
# Environment:
#   CARGO_TARGET_DIR    target dir (default target/); a separate one avoids rebuilding the host's
#   ARM_TOOLCHAIN_DIR   the private compiler prefix
#                       (default ${XDG_CACHE_HOME:-$HOME/.cache}/liquid-arm/rustc-web-<version>)
#   ARM_RUSTC_VERSION   the rustc-web version to take (default: apt's candidate)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
profile=release
check_only=0
cargo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release ;;
    --debug) profile=debug ;;
    --check) check_only=1 ;;
    --) shift; cargo_args+=("$@"); break ;;
    *) echo "build-aarch64: unknown argument $1 (see the header)" >&2; exit 2 ;;
  esac
  shift
done
t0=$(date +%s)
log() { echo "build-aarch64: $*" >&2; }
die() { log "$*"; exit 1; }

command -v apt-get >/dev/null 2>&1 || die "needs a Debian host (apt-get); see the header"
[ "$(dpkg --print-architecture)" = amd64 ] || die "this recipe is for an x86_64 (amd64) Debian host"

# --- 1. system packages (plain libraries and the cross linker: nothing conflicts) -------------
SYS_PKGS=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6:arm64 libllvm22
  libgit2-1.5 libssh2-1 libcurl4 libsqlite3-0)
missing=()
dpkg --print-foreign-architectures | grep -qx arm64 || missing+=(arch:arm64)
for p in "${SYS_PKGS[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing: ${missing[*]}. As root, run:"
    echo "  dpkg --add-architecture arm64 && apt-get update && \\"
    echo "  apt-get install -y --no-install-recommends ${SYS_PKGS[*]}"
    exit 1
  fi
  log "installing: ${missing[*]}"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${SYS_PKGS[@]}" >/dev/null
fi

# --- 2. the compiler, unpacked into a private prefix ------------------------------------------
ver=${ARM_RUSTC_VERSION:-$(apt-cache policy rustc-web | awk '/Candidate:/ {print $2}')}
case "$ver" in
  ""|"(none)") die "apt knows no rustc-web: is bookworm-security in the apt sources (apt-get update)?" ;;
esac
upstream=${ver%%+*}               # 1.96.0
mm=${upstream%.*}                 # 1.96
minor=${mm#*.}
[ "${mm%%.*}" = 1 ] && [ "$minor" -ge 90 ] \
  || die "rustc-web $ver is older than the workspace's rust-version 1.90 (apt-get update; bookworm-security has 1.96)"
TC=${ARM_TOOLCHAIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/liquid-arm/rustc-web-$ver}
if [ ! -f "$TC/.complete" ]; then
  log "fetching rustc-web $ver (+ cargo-web, std for x86_64 and arm64) into $TC"
  dl=$(mktemp -d "${TMPDIR:-/tmp}/build-aarch64.XXXXXX")
  chmod 755 "$dl"
  (
    cd "$dl"
    # as root, apt's sandbox user _apt must be able to write here
    [ "$(id -u)" = 0 ] && chown _apt "$dl" 2>/dev/null
    apt-get download -qq "rustc-web=$ver" "cargo-web=$ver" "libstd-rust-web-$mm=$ver" \
      "libstd-rust-web-dev=$ver" "libstd-rust-web-dev:arm64=$ver"
  ) || { rm -rf "$dl"; die "apt-get download failed"; }
  rm -rf "$TC.tmp" && mkdir -p "$TC.tmp"
  for deb in "$dl"/*.deb; do dpkg -x "$deb" "$TC.tmp"; done
  rm -rf "$dl" "$TC"
  mv "$TC.tmp" "$TC"
  touch "$TC/.complete"
fi
# rustc finds its sysroot (and both std's) relative to itself; only its driver library needs a path.
export LD_LIBRARY_PATH=$TC/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export RUSTC=$TC/usr/bin/rustc RUSTDOC=$TC/usr/bin/rustdoc
CARGO=$TC/usr/bin/cargo
"$RUSTC" --version >/dev/null || die "$RUSTC does not run (libllvm22 missing?)"
[ -d "$TC/usr/lib/rustlib/$TARGET/lib" ] || die "no $TARGET std in $TC"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
log "toolchain: $("$RUSTC" --version), $("$CARGO" --version), linker $(aarch64-linux-gnu-gcc -dumpversion)"
[ "$check_only" = 1 ] && { log "toolchain ready ($(( $(date +%s) - t0 )) s)"; exit 0; }

# --- 3. the build -------------------------------------------------------------------------------
flags=(--locked --bin liquid --target "$TARGET")
[ "$profile" = release ] && flags+=(--release)
t1=$(date +%s)
"$CARGO" build "${flags[@]}" "${cargo_args[@]}"
bin=${CARGO_TARGET_DIR:-target}/$TARGET/$profile/liquid
[ -f "$bin" ] || die "no binary at $bin"
log "built $bin: $(du -h "$bin" | cut -f1), $(file -b "$bin" | cut -d, -f1-2)"
log "cargo build took $(( $(date +%s) - t1 )) s, all $(( $(date +%s) - t0 )) s"
echo "$bin"
