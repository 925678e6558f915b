#!/usr/bin/env bash
# Benchmark `hoist sbom` on a Debian image (`hoist base debian --preset
# numpy`, about 40 packages and numpy's files): cold (empty layer cache:
# the layout is pulled into the cache, then scanned), warm (cached: the
# layers are only scanned), each format; beside them the floor of reading
# the image once, `gzip -dc` of every layer blob to /dev/null. Prints
# median seconds. No other SBOM tool (syft, trivy) can be installed here,
# so hoist is timed alone against that floor. Needs apt lists
# (`apt-get update`).
#
# Environment:
#   HOIST        the hoist binary (default: target/release/hoist, built if missing)
#   BENCH_RUNS   runs per case (default 5)
#   BENCH_PRESET slim | numpy | scipy (default numpy)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNS=${BENCH_RUNS:-5}
PRESET=${BENCH_PRESET:-numpy}

command -v jq >/dev/null || { echo "sbom.sh: jq not found (scripts/install-test-deps)" >&2; exit 1; }
if [[ -z ${HOIST:-} ]]; then
    HOIST="${CARGO_TARGET_DIR:-$ROOT/target}/release/hoist"
    [[ -x $HOIST ]] || (cd "$ROOT" && cargo build --release --bin hoist) >&2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sbom-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# seconds CMD...: runs CMD (output discarded) and prints its wall time
seconds() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

IMAGE="oci:$WORK/image:$PRESET"
"$HOIST" --quiet base debian --preset "$PRESET" --no-bytecode --output "$IMAGE" \
    --cache-dir "${XDG_CACHE_HOME:-$HOME/.cache}/hoist/debian-base" >&2
read_floor() { for b in "$WORK"/image/blobs/sha256/*; do gzip -dc "$b" 2>/dev/null || true; done; }

floor=() cold=() warm_spdx=() warm_cdx=() warm_table=()
for _ in $(seq "$RUNS"); do
    floor+=("$(seconds read_floor)")
    rm -rf "$WORK/cache"
    cold+=("$(seconds "$HOIST" sbom "$IMAGE" --cache-dir "$WORK/cache")")
    warm_spdx+=("$(seconds "$HOIST" sbom "$IMAGE" --cache-dir "$WORK/cache")")
    warm_cdx+=("$(seconds "$HOIST" sbom "$IMAGE" --format cyclonedx --cache-dir "$WORK/cache")")
    warm_table+=("$(seconds "$HOIST" sbom "$IMAGE" --list --cache-dir "$WORK/cache")")
done
packages=$("$HOIST" --json sbom "$IMAGE" --list --cache-dir "$WORK/cache" | jq '.packages | length')
bytes=$(du -cb "$WORK"/image/blobs/sha256/* | tail -n1 | cut -f1)

printf 'image: %s preset, %s packages, %s bytes of blobs; median of %s runs\n' "$PRESET" "$packages" "$bytes" "$RUNS"
printf '%-34s %8s s\n' \
    "read every layer once (gzip -dc)" "$(median "${floor[@]}")" \
    "hoist sbom, cold cache (spdx)" "$(median "${cold[@]}")" \
    "hoist sbom, cached (spdx)" "$(median "${warm_spdx[@]}")" \
    "hoist sbom, cached (cyclonedx)" "$(median "${warm_cdx[@]}")" \
    "hoist sbom --list, cached" "$(median "${warm_table[@]}")"
