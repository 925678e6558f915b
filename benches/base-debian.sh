#!/usr/bin/env bash
# Benchmark `hoist base debian --preset slim`: cold (empty .deb cache: the
# packages come through `apt-get download`), warm (every .deb cached: index,
# resolution, unpack, bytecode in the sandbox, layers), and beside them
# `apt-get download` alone of the same package versions, the floor of a cold
# build's download. Prints seconds (median of the warm runs) and the image's
# size. Needs root (the sandbox compiles the bytecode) and apt lists
# (`apt-get update`).
#
# Environment:
#   HOIST        the hoist binary (default: target/release/hoist, built if missing)
#   BENCH_RUNS   warm runs (default 3)
#   BENCH_PRESET slim | numpy | scipy (default slim)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS=${BENCH_RUNS:-3}
PRESET=${BENCH_PRESET:-slim}

[[ $(id -u) == 0 ]] || { echo "base-debian.sh: run as root (the sandbox compiles bytecode)" >&2; exit 1; }
command -v jq >/dev/null || { echo "base-debian.sh: jq not found (scripts/install-test-deps)" >&2; exit 1; }
if [[ -z ${HOIST:-} ]]; then
    HOIST="${CARGO_TARGET_DIR:-$ROOT/target}/release/hoist"
    [[ -x $HOIST ]] || (cd "$ROOT" && cargo build --release --bin hoist) >&2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/base-debian.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# seconds CMD...: runs CMD (output kept in $WORK/out) and prints its wall time
seconds() {
    local t0=$EPOCHREALTIME
    "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}
build() { "$HOIST" --json base debian --preset "$PRESET" --cache-dir "$WORK/cache" --output "oci:$WORK/out-$1:$PRESET"; }

cold=$(seconds build cold)
cp "$WORK/out" "$WORK/cold.json"
warm=()
for i in $(seq "$RUNS"); do
    rm -rf "$WORK/out-warm"
    warm+=("$(seconds build warm)")
done
median=$(printf '%s\n' "${warm[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')

mapfile -t pins < <(jq -r '.packages[] | "\(.name)=\(.version)"' "$WORK/cold.json")
mkdir "$WORK/apt"
apt=$(cd "$WORK/apt" && seconds apt-get download -q "${pins[@]}")
deb_bytes=$(du -cb "$WORK"/apt/*.deb | tail -n1 | cut -f1)

jq -r --arg cold "$cold" --arg warm "$median" --arg apt "$apt" --arg runs "$RUNS" \
    --arg debs "$deb_bytes" --arg preset "$PRESET" '
    "preset                  \($preset): \(.packages | length) packages, \($debs | tonumber / 1048576 * 10 | round / 10) MiB of .deb",
    "cold build (s)          \($cold)",
    "apt-get download (s)    \($apt)",
    "warm build (s, median of \($runs))  \($warm)",
    "image (MiB, gzip)       \(.image_size / 1048576 * 10 | round / 10) in \(.layers | length) layers",
    "bytecode                \(.bytecode.status) \(.bytecode.modules // "") modules",
    "digest                  \(.digest)"' "$WORK/cold.json"
