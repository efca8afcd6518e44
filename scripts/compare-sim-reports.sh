#!/usr/bin/env bash
# Runs every simulator scenario (sim/scenarios/*.toml) for each seed with a given build of the
# simulator's runner (`cargo build --release -p sim --example run`), keeps each report.json,
# and optionally compares them byte for byte with the reports of another build. A refactor
# that claims to change no behaviour must give the same report.json for every scenario and
# seed (the simulator is deterministic: same scenario + seed = byte-identical report.json).
#
#   scripts/compare-sim-reports.sh --bin PATH --out DIR [--seeds "1 2"] [--scenarios "a b"]
#       [--against DIR] [--policy P] [--scenario-dir DIR]
#
#   --bin PATH          the runner binary (e.g. target/release/examples/run, copied away so a
#                       later build does not overwrite it). Without --bin nothing is run and
#                       the reports already in --out are compared with --against.
#   --out DIR           writes DIR/<scenario>/<seed>/report.json (+ report.html when the run
#                       compares policies, stdout.txt, stderr.txt) and appends to DIR/times.tsv
#   --seeds "1 2"       seeds to run (default "1 2")
#   --scenarios "a b"   scenario names (file names without .toml), run in this order
#                       (default: every *.toml of the scenario dir, in name order)
#   --against DIR       after each run, cmp DIR/<scenario>/<seed>/report.json with the one in
#                       --out; prints same / DIFFERENT / missing per (scenario, seed)
#   --policy P          passed on as `--policy P` (cloud|pinned|liquid|all); default: none, so
#                       each scenario's own [placement] policy is used (liquid by default)
#   --scenario-dir DIR  where the scenarios are (default: sim/scenarios of the checkout this
#                       script lives in). functions-small and liquid-edge-sites-objects load
#                       ../../examples/functions/*/<name>.wasm relative to it, which
#                       scripts/build-guests.sh builds; point this at a copy that has them if
#                       the checkout does not.
#
# Prints the wall time of every run. Exits non-zero if a run wrote no report.json or, with
# --against, if any report is DIFFERENT or missing. A run that exits non-zero but writes its
# report (a failed final check) is flagged but is not an error by itself: the comparison is
# about identical reports.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin="" out="" seeds="1 2" scenarios="" against="" policy=""
scenario_dir="$root/sim/scenarios"

usage() {
  sed -n '8,9p' "$0" | sed 's/^#//' >&2
  exit 2
}
die() {
  echo "compare-sim-reports: $*" >&2
  exit 2
}
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bin) need "$@"; bin=$2; shift 2 ;;
    --out) need "$@"; out=$2; shift 2 ;;
    --seeds) need "$@"; seeds=$2; shift 2 ;;
    --scenarios) need "$@"; scenarios=$2; shift 2 ;;
    --against) need "$@"; against=$2; shift 2 ;;
    --policy) need "$@"; policy=$2; shift 2 ;;
    --scenario-dir) need "$@"; scenario_dir=$2; shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown argument $1" ;;
  esac
done

[ -n "$out" ] || usage
if [ -n "$bin" ]; then
  [ -x "$bin" ] || die "--bin $bin is not an executable file"
  bin=$(realpath "$bin")
else
  [ -n "$against" ] || die "without --bin there is nothing to do but compare: give --against"
fi
[ -d "$scenario_dir" ] || die "no scenario dir $scenario_dir"
scenario_dir=$(realpath "$scenario_dir")
if [ -n "$against" ]; then
  [ -d "$against" ] || die "--against $against is not a directory"
  against=$(realpath "$against")
fi
for seed in $seeds; do
  # the runner silently falls back to the scenario's seed on an unparsable --seed
  [[ "$seed" =~ ^[0-9]+$ ]] || die "seed '$seed' is not a non-negative integer"
done
if [ -z "$scenarios" ]; then
  for f in "$scenario_dir"/*.toml; do
    [ -e "$f" ] || die "no *.toml in $scenario_dir"
    scenarios+="$(basename "$f" .toml) "
  done
fi
for sc in $scenarios; do
  [ -f "$scenario_dir/${sc%.toml}.toml" ] || die "no scenario $scenario_dir/${sc%.toml}.toml"
done
mkdir -p "$out"
out=$(realpath "$out")

echo "compare-sim-reports: bin=${bin:-(none, compare only)} out=$out seeds='$seeds'" \
  "policy=${policy:-(scenario default)} scenarios from $scenario_dir${against:+ against $against}"
[ -z "$bin" ] || [ -s "$out/times.tsv" ] || printf 'scenario\tseed\twall_s\texit\n' >"$out/times.tsv"

same=0 different=0 missing=0 no_report=0 failed_runs=0
summary=()
for sc in $scenarios; do
  sc=${sc%.toml}
  for seed in $seeds; do
    dir=$out/$sc/$seed
    line=$(printf '%-28s seed %-3s' "$sc" "$seed")
    if [ -n "$bin" ]; then
      mkdir -p "$dir"
      rm -f "$dir/report.json" "$dir/report.html" # never leave a stale report behind
      args=("$scenario_dir/$sc.toml" --seed "$seed" --out "$dir")
      [ -z "$policy" ] || args+=(--policy "$policy")
      t0=$EPOCHREALTIME
      rc=0
      "$bin" "${args[@]}" >"$dir/stdout.txt" 2>"$dir/stderr.txt" || rc=$?
      t1=$EPOCHREALTIME
      wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
      printf '%s\t%s\t%s\t%s\n' "$sc" "$seed" "$wall" "$rc" >>"$out/times.tsv"
      line+=$(printf ' %8s s  exit %d' "$wall" "$rc")
      if [ "$rc" != 0 ]; then
        failed_runs=$((failed_runs + 1))
        line+="  (RUN FAILED: $(grep -v '^ .*virtual s' "$dir/stderr.txt" | head -1 | cut -c1-200))"
      fi
      if [ ! -f "$dir/report.json" ]; then
        no_report=$((no_report + 1))
        line+="  NO REPORT"
      fi
    fi
    if [ -n "$against" ]; then
      other=$against/$sc/$seed/report.json
      if [ ! -f "$dir/report.json" ] || [ ! -f "$other" ]; then
        verdict=missing
        missing=$((missing + 1))
      elif cmp -s "$dir/report.json" "$other"; then
        verdict=same
        same=$((same + 1))
      else
        verdict=DIFFERENT
        different=$((different + 1))
      fi
      line+="  $verdict"
      summary+=("$(printf '%-28s seed %-3s %s' "$sc" "$seed" "$verdict")")
    fi
    echo "$line"
  done
done

status=0
[ -z "$bin" ] || echo "compare-sim-reports: runs exiting non-zero: $failed_runs; without report.json: $no_report"
[ "$no_report" = 0 ] || status=1
if [ -n "$against" ]; then
  echo "compare-sim-reports: against $against"
  printf '  %s\n' "${summary[@]}"
  echo "compare-sim-reports: same $same, DIFFERENT $different, missing $missing"
  [ "$different" = 0 ] && [ "$missing" = 0 ] || status=1
fi
exit $status
