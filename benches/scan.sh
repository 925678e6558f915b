#!/usr/bin/env bash
# Benchmark `hoist scan` beside `hoist sbom` on a Debian image (`hoist base
# debian --preset numpy`: Python, numpy and about 40 Debian packages),
# with the layers cached (the scan reads them once and matches every
# package against the OSV store), and the floor of reading the image once:
# `gzip -dc` of every layer blob to /dev/null. The store holds real
# advisories (PyYAML, setuptools, glibc) written as OSV records;
# a lookup reads one small file per package whatever the store's size.
# Prints median seconds and the ratios to the floor. No Trivy or Grype can
# be installed here, so hoist is timed against that floor. Needs apt lists
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

command -v jq >/dev/null || { echo "scan.sh: jq not found (scripts/install-test-deps)" >&2; exit 1; }
if [[ -z ${HOIST:-} ]]; then
    HOIST="${CARGO_TARGET_DIR:-$ROOT/target}/release/hoist"
    [[ -x $HOIST ]] || (cd "$ROOT" && cargo build --release --bin hoist) >&2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/scan-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# seconds CMD...: runs CMD (output discarded; exit 1, a rejection, is a
# result too) and prints its wall time
seconds() {
    local t0=$EPOCHREALTIME rc=0
    "$@" >/dev/null 2>"$WORK/err" || rc=$?
    ((rc <= 1)) || { cat "$WORK/err" >&2; exit 1; }
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'
}
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }'; }

IMAGE="oci:$WORK/image:$PRESET"
"$HOIST" --quiet base debian --preset "$PRESET" --no-bytecode --output "$IMAGE" \
    --cache-dir "${XDG_CACHE_HOME:-$HOME/.cache}/hoist/debian-base" >&2
read_floor() { for b in "$WORK"/image/blobs/sha256/*; do gzip -dc "$b" 2>/dev/null || true; done; }

# Real advisories as OSV records.
mkdir -p "$WORK/osv"
cat >"$WORK/osv/GHSA-8q59-q68h-6hv4.json" <<'EOF'
{"id": "GHSA-8q59-q68h-6hv4", "modified": "2024-09-20T21:58:29Z", "aliases": ["CVE-2020-14343"],
 "summary": "Improper Input Validation in PyYAML",
 "affected": [{"package": {"ecosystem": "PyPI", "name": "pyyaml"},
   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.4"}]}]}],
 "database_specific": {"severity": "CRITICAL"}}
EOF
cat >"$WORK/osv/GHSA-cx63-2mw6-8hw5.json" <<'EOF'
{"id": "GHSA-cx63-2mw6-8hw5", "modified": "2024-07-15T19:43:33Z", "aliases": ["CVE-2024-6345"],
 "summary": "setuptools vulnerable to Command Injection via package URL",
 "affected": [{"package": {"ecosystem": "PyPI", "name": "setuptools"},
   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "70.0.0"}]}]}],
 "database_specific": {"severity": "HIGH"}}
EOF
cat >"$WORK/osv/DSA-5514-1.json" <<'EOF'
{"id": "DSA-5514-1", "modified": "2023-10-03T00:00:00Z", "aliases": ["CVE-2023-4911"],
 "summary": "glibc - security update",
 "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.36-9+deb12u3"}]}]}],
 "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"}]}
EOF
"$HOIST" --quiet db import "$WORK/osv" --db "$WORK/db"

# Fill the layer cache once: both commands then read the cached layers.
"$HOIST" sbom "$IMAGE" --list --cache-dir "$WORK/cache" >/dev/null

floor=() sbom=() scan_table=() scan_json=() scan_sarif=()
for _ in $(seq "$RUNS"); do
    floor+=("$(seconds read_floor)")
    sbom+=("$(seconds "$HOIST" sbom "$IMAGE" --list --cache-dir "$WORK/cache")")
    scan_table+=("$(seconds "$HOIST" scan "$IMAGE" --db "$WORK/db" --cache-dir "$WORK/cache")")
    scan_json+=("$(seconds "$HOIST" scan "$IMAGE" --db "$WORK/db" --format json --cache-dir "$WORK/cache")")
    scan_sarif+=("$(seconds "$HOIST" scan "$IMAGE" --db "$WORK/db" --format sarif --cache-dir "$WORK/cache")")
done
packages=$("$HOIST" --json sbom "$IMAGE" --list --cache-dir "$WORK/cache" | jq '.packages | length')
findings=$("$HOIST" scan "$IMAGE" --db "$WORK/db" --format json --cache-dir "$WORK/cache" | jq '.findings | length' || true)
bytes=$(du -cb "$WORK"/image/blobs/sha256/* | tail -n1 | cut -f1)

f=$(median "${floor[@]}")
printf 'image: %s preset, %s packages, %s findings, %s bytes of blobs; median of %s runs\n' \
    "$PRESET" "$packages" "$findings" "$bytes" "$RUNS"
row() { printf '%-36s %8s s  %6sx the floor\n' "$1" "$2" "$(ratio "$2" "$f")"; }
row "read every layer once (gzip -dc)" "$f"
row "hoist sbom --list, cached" "$(median "${sbom[@]}")"
row "hoist scan (table), cached" "$(median "${scan_table[@]}")"
row "hoist scan --format json, cached" "$(median "${scan_json[@]}")"
row "hoist scan --format sarif, cached" "$(median "${scan_sarif[@]}")"
