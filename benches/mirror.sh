#!/usr/bin/env bash
# Benchmark `hoist mirror` against `skopeo sync` on the same images, in one run.
#
# Starts a throw-away docker-registry on 127.0.0.1 as the primary and seeds
# it with N small images (one incompressible random layer each, in their own
# repositories bench/img-I:v1). Then, per run, starts two fresh secondaries
# and times both tools copying all N images to their own one:
#   (a) cold:  hoist mirror --list FILE  vs  skopeo sync --src yaml
#   (b) again: the same command once more (everything already there)
# Checks that every image arrived with its digest unchanged, and prints a
# Markdown table with medians and the ratio hoist / skopeo.
#
# Environment:
#   HOIST          hoist binary (default ${CARGO_TARGET_DIR:-target}/release/hoist,
#                  built with `cargo build --release --bins` if missing)
#   BENCH_IMAGES   images mirrored (default 100)
#   BENCH_LAYER_KB size of each image's layer in KiB (default 64)
#   BENCH_RUNS     timed runs per tool (default 3)
#   BENCH_TMPDIR   where registries and fixtures live (default $TMPDIR or /tmp)
#   BENCH_KEEP=1   keep the temp dir (registry logs) on exit
#
# Needs: docker-registry, skopeo, curl, jq, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
IMAGES="${BENCH_IMAGES:-100}"
LAYER_KB="${BENCH_LAYER_KB:-64}"
RUNS="${BENCH_RUNS:-3}"
require_positive BENCH_IMAGES "$IMAGES"
require_positive BENCH_LAYER_KB "$LAYER_KB"
require_positive BENCH_RUNS "$RUNS"
require_tools docker-registry skopeo curl jq python3
find_hoist mirror "nothing to compare" "has no mirror verb"
[[ -n $HOIST ]] || die "$HOIST_NOTE"
REG_PIDS=()
setup_workspace hoist-mirror-bench

log "writing $IMAGES images of $LAYER_KB KiB"
python3 - "$WORK/layout" "$IMAGES" "$LAYER_KB" <<'PY'
import hashlib, io, json, os, sys, tarfile
root, n, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(root, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
manifests = []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        payload = os.urandom(kb * 1024)
        info = tarfile.TarInfo("data"); info.size = len(payload); info.mtime = 0
        t.addfile(info, io.BytesIO(payload))
    layer, lsize = blob(buf.getvalue())
    config = json.dumps({"created": "2026-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
                         "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
    cd, cs = blob(config)
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": lsize}]}).encode()
    md, ms = blob(m)
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                      "annotations": {"org.opencontainers.image.ref.name": f"t{i}"}})
with open(os.path.join(root, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": manifests}, f)
with open(os.path.join(root, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
PY

start_registry primary
PRIMARY="127.0.0.1:$REG_PORT"
log "seeding $PRIMARY"
: >"$WORK/list"
{ echo "127.0.0.1:$REG_PORT:"; echo "  tls-verify: false"; echo "  images:"; } >"$WORK/sync.yml"
for ((i = 0; i < IMAGES; i++)); do
    "$HOIST" -q copy "oci:$WORK/layout:t$i" "$PRIMARY/bench/img-$i:v1"
    echo "bench/img-$i:v1" >>"$WORK/list"
    echo "    bench/img-$i: [v1]" >>"$WORK/sync.yml"
done

# check HOST: every image is on HOST with the primary's digest
check() {
    local i
    for ((i = 0; i < IMAGES; i++)); do
        [[ $(manifest_digest "$1" "bench/img-$i" v1) == $(manifest_digest "$PRIMARY" "bench/img-$i" v1) ]] ||
            die "bench/img-$i:v1 on $1 differs from the primary"
    done
}

run_hoist() { "$HOIST" mirror --from "$PRIMARY" --to "$1" --list "$WORK/list"; }
run_skopeo() {
    # skopeo sync keeps only the last path component: put it under bench/.
    skopeo sync --preserve-digests --src yaml --dest docker --dest-tls-verify=false "$WORK/sync.yml" "$1/bench"
}

for ((run = 1; run <= RUNS; run++)); do
    for tool in hoist skopeo; do
        start_registry "$tool-$run"
        dst="127.0.0.1:$REG_PORT"
        drop_skopeo_cache
        timed "run_$tool" "$dst"
        record cold "$tool" "$T_SEC"
        timed "run_$tool" "$dst"
        record again "$tool" "$T_SEC"
        check "$dst"
        log "run $run $tool: done"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "mirror of $IMAGES images of $LAYER_KB KiB, median of $RUNS runs ($(hoist_version); $(skopeo --version))"
echo
echo "| pass | hoist mirror (s) | skopeo sync (s) | hoist / skopeo |"
echo "|---|---|---|---|"
for row in cold again; do
    h=$(awk -F'\t' -v r="$row" '$1 == r && $2 == "hoist" {print $3}' "$RESULTS" | median)
    s=$(awk -F'\t' -v r="$row" '$1 == r && $2 == "skopeo" {print $3}' "$RESULTS" | median)
    printf '| %s | %.3f | %.3f | %.2f× |\n' "$row" "$h" "$s" "$(awk -v a="$h" -v b="$s" 'BEGIN {print a / b}')"
done
