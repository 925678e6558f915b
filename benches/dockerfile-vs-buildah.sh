#!/usr/bin/env bash
# Benchmark Dockerfile builds: `hoist build -f` against `buildah build`
# (`bud`), each followed by a push to the same loopback registry, in one run.
#
# The Dockerfile (two stages, two RUNs, COPY --from) is built FROM testkit's
# Python 3.11 base pushed to the registry as base/python:3.11:
#   FROM base AS build; WORKDIR /build; COPY app/ ./; RUN compileall
#   FROM base; COPY --from=build /build /srv/app; WORKDIR /srv/app;
#   RUN (writes a VERSION file); CMD
# Rows (tools interleaved, BENCH_WARMUP untimed runs, then BENCH_RUNS timed):
#   (a) cold: hoist with an empty build cache (the base blobs already in its
#       store, as buildah's base is already pulled); buildah with every image
#       but the base removed and --layers=false; a new repository each run;
#   (b) fully cached: nothing changed, rebuild + push to the same repository
#       (hoist: its cache; buildah: --layers);
#   (c) one source file changed (a comment appended to app/main.py), rebuild
#       + push: the steps after it run again.
# Goals (issue): (b) ≤ 0.2× buildah, (c) ≤ 0.5×, (a) no slower.
#
# Environment:
#   HOIST            hoist binary (default target/release/hoist, built if missing)
#   BUILDAH_DRIVER   buildah storage driver (default overlay; vfs if overlay fails)
#   BENCH_PYTHON_BASE  oci:DIR:TAG of the base (default: testkit's)
#   BENCH_RUNS       timed runs per tool per row (default 3)
#   BENCH_WARMUP     untimed runs per tool per row (default 1)
#   BENCH_TMPDIR, BENCH_KEEP=1  as in the other scripts
#
# Needs: root, docker-registry, buildah, skopeo, curl, jq, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
RUNS="${BENCH_RUNS:-3}"
WARMUP="${BENCH_WARMUP:-1}"

require_tools docker-registry buildah skopeo curl jq python3
require_root "the sandbox and buildah storage"
require_positive BENCH_RUNS "$RUNS"
require_count BENCH_WARMUP "$WARMUP"
BENCH_SKIP_HOIST=0 find_hoist build "cannot benchmark Dockerfile builds" "has no \`build\` verb"
[[ -n $HOIST ]] || die "$HOIST_NOTE"
PYTHON_BASE="${BENCH_PYTHON_BASE:-$(base_image python)}"

setup_workspace hoist-bench-dockerfile drop_buildah_storage

start_registry R on
REG="127.0.0.1:$REG_PORT"
BASE_REF="$REG/base/python:3.11"
log "pushing the base to $BASE_REF"
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "$PYTHON_BASE" "docker://$BASE_REF"

CTX="$WORK/context"
mkdir -p "$CTX/app/pkg"
for i in $(seq 20); do
    printf 'def f%s(x):\n    return x * %s\n' "$i" "$i" >"$CTX/app/pkg/mod$i.py"
done
printf 'import pkg\nprint("hello")\n' >"$CTX/app/main.py"
: >"$CTX/app/pkg/__init__.py"
cat >"$CTX/Dockerfile" <<EOF
FROM $BASE_REF AS build
WORKDIR /build
COPY app/ ./
RUN ["python3", "-c", "import compileall, sys; sys.exit(0 if compileall.compile_dir('/build', quiet=1) else 1)"]

FROM $BASE_REF
COPY --from=build /build /srv/app
WORKDIR /srv/app
RUN python3 -c "open('/srv/app/VERSION', 'w').write('1')"
CMD ["python3", "main.py"]
EOF

setup_buildah "$BASE_REF"

HCACHE="$WORK/hoist-cache"
hoist_build() {
    "$HOIST" --quiet build -f "$CTX/Dockerfile" "$CTX" --tag "$REG/$1:1" --cache-dir "$HCACHE" >/dev/null
}
buildah_build() {
    "${BUILDAH[@]}" build --quiet --isolation chroot --layers="$1" --pull=false --tls-verify=false \
        -t bench/app:latest "$CTX" >/dev/null &&
        "${BUILDAH[@]}" push --quiet --tls-verify=false bench/app:latest "docker://$REG/$2:1"
}

SEQ=0
run_one() {
    local row=$1 tool=$2 is_timed=$3
    SEQ=$((SEQ + 1))
    case $row:$tool in
        cold:hoist)
            # Only the store keeps the base's blobs: "already pulled".
            find "$HCACHE" -mindepth 1 -maxdepth 1 ! -name store -exec rm -rf {} + 2>/dev/null || true
            CMD=(hoist_build "bench/hoist-cold-$SEQ")
            ;;
        cold:buildah)
            drop_buildah_images
            CMD=(buildah_build false "bench/buildah-cold-$SEQ")
            ;;
        cached:hoist) CMD=(hoist_build bench/hoist-cached) ;;
        cached:buildah) CMD=(buildah_build true bench/buildah-cached) ;;
        changed:*)
            printf '# change %s\n' "$SEQ" >>"$CTX/app/main.py"
            if [[ $tool == hoist ]]; then CMD=(hoist_build bench/hoist-changed); else CMD=(buildah_build true bench/buildah-changed); fi
            ;;
    esac
    timed "${CMD[@]}" || die "$tool failed in row $row"
    if ((is_timed)); then record "$row" "$tool" "$T_SEC"; fi
}

for row in cold cached changed; do
    log "row: $row"
    for ((i = 0; i < WARMUP + RUNS; i++)); do
        for tool in hoist buildah; do
            run_one "$row" "$tool" $((i >= WARMUP))
        done
    done
done

# The hoist image runs and says hello (checked once, not timed).
CHECK=$("$HOIST" --quiet run "$REG/bench/hoist-changed:1" --cache-dir "$WORK/run-cache" 2>&1) ||
    die "the hoist image does not run: $CHECK"
[[ $CHECK == hello ]] || die "the hoist image printed '$CHECK'"

python3 - "$RESULTS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    row, tool, sec = line.rstrip("\n").split("\t")
    rows.setdefault(row, {}).setdefault(tool, []).append(float(sec))
print("| build + push | hoist median s | buildah median s | hoist / buildah |")
print("|---|---:|---:|---:|")
names = {"cold": "cold", "cached": "fully cached", "changed": "one file changed"}
for row in ("cold", "cached", "changed"):
    h = statistics.median(rows[row]["hoist"])
    b = statistics.median(rows[row]["buildah"])
    print(f"| {names[row]} | {h:.2f} | {b:.2f} | {h / b:.2f} |")
EOF
