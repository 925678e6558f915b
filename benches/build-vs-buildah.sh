#!/usr/bin/env bash
# Benchmark `hoist build` (build + push) against `buildah build` + `buildah
# push` of the equivalent Dockerfile, in one run on the same machine and the
# same loopback registry.
#
# The function needs `six` and `attrs` (requirements.txt) and has a small
# handler. The base is testkit's Python 3.11 image (Debian packages, built
# once per machine), pushed to a throw-away docker-registry on 127.0.0.1 as
# base/python:3.11; both tools build FROM that reference.
#
# The Dockerfile is what `hoist build` makes, written by hand:
#   FROM <registry>/base/python:3.11
#   COPY deps/opt/hoist /opt/hoist        # the installed dependencies
#   COPY code /opt/hoist                  # runner.py + function/<files>
#   USER 1000:1000, WORKDIR /opt/hoist/function, the same ENV, LABELs, CMD.
# so it has the same two layers on top of the base. The installed
# dependencies are hoist's own dependency layer: after an untimed warm-up
# build, that layer blob is fetched from the registry and untarred into the
# build context (byte-for-byte the same files). Without a working `hoist
# build` they come from `uv pip install --target` (pure-Python wheels, no
# bytecode), which is what the layer holds too. buildah thus gets the
# dependencies resolved, downloaded and installed for free; hoist resolves
# and installs them in every cold run.
#
# Rows (tools interleaved, BENCH_WARMUP untimed runs, then BENCH_RUNS timed):
#   (a) cold build + push to a NEW repository every run.
#       hoist: the wheel cache (wheels/) and uv's cache (uv/) are kept; the
#       dependency lock and layer caches (locks/, layers/) are deleted before
#       each run, so it resolves, installs and writes the dependency layer
#       again; base facts (bases/) and the store (store/, which holds the
#       base blobs) are kept: the base is "already pulled".
#       buildah: the base image stays in its storage; every other image is
#       removed before each run and the build uses --layers=false (no build
#       cache), which is buildah's fastest cold build (it commits the three
#       COPY steps as one layer instead of two).
#   (b) code-only rebuild + push: only user_function.py changes (a comment
#       with the run number is appended, untimed); rebuild and push to the
#       same repository. hoist keeps its whole cache; buildah builds with
#       --layers, so FROM and the dependency COPY are cache hits.
# Both tools mount or skip the base layers on push: hoist knows they are in
# base/python from --base; buildah's blob-info cache
# (/var/lib/containers/cache/blob-info-cache-v1.*) records where it pulled
# them from, and it is kept.
#
# Environment:
#   HOIST            hoist binary (default ${CARGO_TARGET_DIR:-target}/release/hoist,
#                    built with `cargo build --release --bin hoist` if missing)
#   HOIST_ARGS       extra global arguments for hoist (e.g. "--registry-timeout 60")
#   BUILDAH_DRIVER   buildah storage driver (default overlay; vfs if overlay fails)
#   BUILDAH_ARGS     extra arguments for `buildah build`
#   BENCH_PYTHON_BASE  oci:DIR:TAG of the base (default: testkit's python_base(),
#                    via `cargo run --release -p testkit --example base-image -- python`)
#   BENCH_RUNS       timed runs per tool per row (default 5)
#   BENCH_WARMUP     untimed runs per tool per row before timing (default 1)
#   BENCH_SKIP_HOIST=1  time buildah only (hoist columns show "-")
#   BENCH_TMPDIR     where the registry, buildah storage and caches live
#                    (default $TMPDIR or /tmp; needs ~1 GiB)
#   BENCH_KEEP=1     keep the temp dir (registry log, contexts) on exit
#
# Needs: root (buildah storage), docker-registry, buildah, skopeo, uv, curl,
# jq, python3, tar. Network access to PyPI on the first run (wheels).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
RUNS="${BENCH_RUNS:-5}"
WARMUP="${BENCH_WARMUP:-1}"
read -r -a HOIST_EXTRA <<<"${HOIST_ARGS:-}"
read -r -a BUILDAH_EXTRA <<<"${BUILDAH_ARGS:-}"

require_tools docker-registry buildah skopeo uv curl jq python3 tar
require_root "buildah storage with the overlay or vfs driver"
require_positive BENCH_RUNS "$RUNS"
require_count BENCH_WARMUP "$WARMUP"

# ---------------------------------------------------------------- hoist binary
find_hoist build "timing buildah only" "has no \`build\` verb; timing buildah only"

# ---------------------------------------------------------------- base image
if [[ -z ${BENCH_PYTHON_BASE:-} ]]; then
    log "locating testkit's Python base (builds it once per machine)"
    BENCH_PYTHON_BASE=$(base_image python)
fi
[[ $BENCH_PYTHON_BASE == oci:*:* ]] || die "BENCH_PYTHON_BASE must be oci:DIR:TAG, got '$BENCH_PYTHON_BASE'"

# ---------------------------------------------------------------- workspace
setup_workspace hoist-bench-build drop_buildah_storage

# image_config REPO TAG -> the image config JSON
image_config() {
    local cfg
    cfg=$(get_manifest "$REG" "$1" "$2" | jq -r .config.digest)
    curl -fsS "http://$REG/v2/$1/blobs/$cfg"
}

# check_image REPO TAG WANT_DIGEST ADDED: the tag names WANT_DIGEST, every
# blob is there, the base layers are untouched with ADDED layers on top, and
# the config is as specified.
check_image() {
    local repo=$1 tag=$2 want=$3 added=$4 manifest
    check_registry_copy "$REG" "$repo" "$tag" "$want" || return 1
    manifest=$(get_manifest "$REG" "$repo" "$want")
    jq -e --argjson base "$BASE_LAYERS" --argjson added "$added" \
        '(.layers | length) == ($base | length) + $added and ([.layers[:($base | length)][].digest] == $base)' \
        <<<"$manifest" >/dev/null ||
        { log "check: $repo:$tag is not the base layers + $added"; return 1; }
    image_config "$repo" "$want" | jq -e '
        .config.User == "1000:1000" and .config.WorkingDir == "/opt/hoist/function"
        and .config.Cmd == ["/usr/bin/python3.11", "/opt/hoist/runner.py"]
        and (.config.Env | index("PYTHONPATH=/opt/hoist/site-packages:/opt/hoist/function") != null)
        and (.config.Labels | has("dev.hoist.function.id"))' >/dev/null ||
        { log "check: $repo:$tag config differs from the function image spec"; return 1; }
}

# ---------------------------------------------------------------- timing
# timed (lib.sh) sets T_SEC; each run is recorded as ROW TOOL SECONDS.

# ---------------------------------------------------------------- main
start_registry R on; REG="127.0.0.1:$REG_PORT"
log "registry on $REG, workdir $WORK"

BASE_REF="$REG/base/python:3.11"
log "pushing $BENCH_PYTHON_BASE to $BASE_REF"
skopeo --insecure-policy copy --quiet --dest-tls-verify=false "$BENCH_PYTHON_BASE" "docker://$BASE_REF"
BASE_LAYERS=$(get_manifest "$REG" base/python 3.11 | jq -c '[.layers[].digest]')

# The function: the same files for both tools.
FN="$WORK/function"
mkdir -p "$FN"
cat >"$FN/user_function.py" <<'PY'
import attr
import six


@attr.s(frozen=True)
class Greeting:
    name = attr.ib(converter=six.text_type)

    def text(self):
        return "hello, " + self.name


def handler(inputs):
    return {"greeting": Greeting(inputs.get("name", "world")).text()}
PY
printf 'six\nattrs\n' >"$FN/requirements.txt"

HCACHE="$WORK/hoist-cache"
# hoist_build REPO: build the function and push it as $REG/REPO:1; the JSON
# report (reference@digest, time per phase) lands in $WORK/hoist.json
hoist_build() {
    "$HOIST" --json ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} build "$FN" --base "$BASE_REF" \
        --tag "$REG/$1:1" --cache-dir "$HCACHE" >"$WORK/hoist.json"
}
hoist_digest() { grep -Eo '@sha256:[0-9a-f]{64}' "$WORK/hoist.json" | tail -n1 | cut -c2-; }
# record_phases ROW: hoist's time per build phase, if its report has them
record_phases() {
    local phase ms
    while IFS=$'\t' read -r phase ms; do
        record "$1" "phase:$phase" "$(awk -v m="$ms" 'BEGIN { print m / 1000 }')"
    done < <(jq -r '(.phases_ms // {}) | to_entries[] | "\(.key)\t\(.value)"' "$WORK/hoist.json" 2>/dev/null || true)
}

# Build context for buildah.
CTX="$WORK/context"
mkdir -p "$CTX/deps/opt/hoist/site-packages" "$CTX/code/function"
cp "$ROOT/crates/oci-build/src/runner.py" "$CTX/code/runner.py"
sync_code() { cp "$FN/user_function.py" "$FN/requirements.txt" "$CTX/code/function/"; }
sync_code

DEPS_SOURCE=""
if [[ -n $HOIST ]]; then
    log "warm-up hoist build (downloads the wheels into $HCACHE)"
    if timed hoist_build bench/warm && check_image bench/warm 1 "$(hoist_digest)" 2; then
        layer=$(get_manifest "$REG" bench/warm 1 |
            jq -r --argjson n "$(jq length <<<"$BASE_LAYERS")" '.layers[$n] | "\(.mediaType) \(.digest)"')
        case ${layer%% *} in
            *zstd*) untar=(tar --zstd -x) ;;
            *gzip*) untar=(tar -xz) ;;
            *) untar=(tar -x) ;;
        esac
        curl -fsS "http://$REG/v2/bench/warm/blobs/${layer#* }" | "${untar[@]}" -C "$CTX/deps"
        [[ -d $CTX/deps/opt/hoist/site-packages/attr ]] || die "hoist's dependency layer has no attr package"
        DEPS_SOURCE="the Dockerfile copies hoist's own dependency layer (untarred from the registry)"
    else
        log "warning: the warm-up hoist build failed; timing buildah only"
        HOIST_NOTE="\`hoist build\` failed in the warm-up; timing buildah only"
        HOIST=""
    fi
fi
if [[ -z $DEPS_SOURCE ]]; then
    log "installing six and attrs with uv pip install --target"
    uv pip install --quiet --no-compile --python "$(command -v python3)" --cache-dir "$WORK/uv-cache" \
        --target "$CTX/deps/opt/hoist/site-packages" -r "$FN/requirements.txt"
    DEPS_SOURCE="the Dockerfile copies a \`uv pip install --target\` of six and attrs"
fi

cat >"$CTX/Dockerfile" <<EOF
FROM $BASE_REF
COPY deps/opt/hoist /opt/hoist
COPY code /opt/hoist
USER 1000:1000
WORKDIR /opt/hoist/function
ENV PYTHONPATH=/opt/hoist/site-packages:/opt/hoist/function PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
LABEL dev.hoist.function.id=bench dev.hoist.function.user=bench dev.hoist.function.version=1 dev.hoist.function.created=1970-01-01T00:00:00Z
CMD ["/usr/bin/python3.11", "/opt/hoist/runner.py"]
EOF
printf 'Dockerfile\n' >"$CTX/.dockerignore"

setup_buildah "$BASE_REF"

# buildah_build_push LAYERS REPO: build the context and push it as $REG/REPO:1
buildah_build_push() {
    "${BUILDAH[@]}" build --quiet --layers="$1" --pull=false --tls-verify=false \
        ${BUILDAH_EXTRA[@]+"${BUILDAH_EXTRA[@]}"} -t "bench/function:latest" "$CTX" &&
        "${BUILDAH[@]}" push --quiet --tls-verify=false --digestfile "$WORK/buildah.digest" \
            "bench/function:latest" "docker://$REG/$2:1"
}
buildah_digest() { cat "$WORK/buildah.digest"; }

SEQ=0
# run_one ROW TOOL TIMED(0|1) FIRST(0|1): prepare, run, check; records when timed
run_one() {
    local row=$1 tool=$2 is_timed=$3 first=$4 repo
    SEQ=$((SEQ + 1))
    case $row in
        cold)
            repo="bench/$tool-cold-$SEQ"
            if [[ $tool == hoist ]]; then
                rm -rf "$HCACHE/locks" "$HCACHE/layers"
                CMD=(hoist_build "$repo")
            else
                drop_buildah_images
                CMD=(buildah_build_push false "$repo")
            fi
            ;;
        code)
            repo="bench/$tool-code"
            printf '# run %s\n' "$SEQ" >>"$FN/user_function.py"
            sync_code
            if [[ $tool == hoist ]]; then CMD=(hoist_build "$repo"); else CMD=(buildah_build_push true "$repo"); fi
            ;;
    esac
    timed "${CMD[@]}" || return 1
    if ((first)); then
        # `buildah build --layers=false` commits one layer for all the steps.
        local digest added=2
        if [[ $tool == hoist ]]; then digest=$(hoist_digest); else digest=$(buildah_digest); fi
        if [[ $tool == buildah && $row == cold ]]; then added=1; fi
        check_image "$repo" 1 "$digest" "$added" || { log "$tool built a wrong image in row $row"; return 1; }
    fi
    if ((is_timed)); then
        record "$row" "$tool" "$T_SEC"
        if [[ $tool == hoist ]]; then record_phases "$row"; fi
    fi
}

# bench_row ROW LABEL
bench_row() {
    local row=$1 label=$2 tools=(buildah) tool i
    [[ -n $HOIST ]] && tools=(hoist buildah)
    log "row: $label"
    declare -A broken=()
    if [[ $row == code ]]; then
        # The repository already holds a build with the same dependencies.
        for tool in "${tools[@]}"; do
            run_one code "$tool" 0 1 || broken[$tool]=1
        done
    fi
    for ((i = 0; i < WARMUP; i++)); do
        for tool in "${tools[@]}"; do
            [[ -n ${broken[$tool]:-} ]] && continue
            run_one "$row" "$tool" 0 0 || broken[$tool]=1
        done
    done
    # Timed runs, tools interleaved so that drift hits both alike.
    for ((i = 0; i < RUNS; i++)); do
        for tool in "${tools[@]}"; do
            [[ -n ${broken[$tool]:-} ]] && continue
            run_one "$row" "$tool" 1 $((i == 0)) || broken[$tool]=1
        done
    done
    for tool in "${tools[@]}"; do
        if [[ -n ${broken[$tool]:-} ]]; then record "$row" "$tool" FAILED; fi
    done
}

bench_row cold "cold build + push, new repository"
bench_row code "code-only rebuild + push, same repository"

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$RUNS" "$HOIST_NOTE" "$DEPS_SOURCE" "$DRIVER" "$(buildah --version)" \
    "$(hoist_version)" <<'PY'
import statistics, sys
path, runs, hoist_note, deps_source, driver, buildah_version, hoist_version = sys.argv[1:8]
rows = {"cold": {"hoist": [], "buildah": []}, "code": {"hoist": [], "buildah": []}}
for line in open(path):
    row, tool, sec = line.rstrip("\n").split("\t")
    rows[row].setdefault(tool, []).append(sec)

def median(samples):
    if not samples: return None, "-"
    if "FAILED" in samples: return None, "FAILED"
    m = statistics.median(float(s) for s in samples) * 1000
    return m, f"{m:.0f}"

labels = {
    "cold": ("cold build + push, new repository (wheels downloaded)",
             lambda h, b: f"hoist ≤ 300 ms: {'met' if h <= 300 else 'MISSED'}"),
    "code": ("code-only rebuild + push, same repository",
             lambda h, b: f"hoist ≤ 100 ms: {'met' if h <= 100 else 'MISSED'}; "
                          f"≥ 5× faster than buildah: {'met' if b / h >= 5 else 'MISSED'} ({b / h:.1f}×)"),
}
print()
print(f"hoist build vs buildah build + push — median of {runs} run(s) per cell, wall milliseconds.")
print()
print("| case | hoist ms | buildah ms | hoist/buildah | target |")
print("|---|---:|---:|---:|---|")
for row in ("cold", "code"):
    label, target = labels[row]
    h, hs = median(rows[row]["hoist"])
    b, bs = median(rows[row]["buildah"])
    ratio = f"{h / b:.2f}" if h is not None and b else "-"
    verdict = target(h, b) if h is not None and b else "-"
    print(f"| {label} | {hs} | {bs} | {ratio} | {verdict} |")
print()
print("Notes:")
print("- One local docker-registry (distribution) on 127.0.0.1; the base (testkit's Python 3.11, "
      "3 layers) is pushed to it first and both tools build FROM it.")
print("- Cold: hoist keeps wheels/ and uv/ and loses locks/ and layers/ before every run; "
      f"buildah (storage driver {driver}) keeps only the base image and builds with --layers=false. "
      "Each run pushes to a new repository.")
print("- Code-only: user_function.py gets one more comment line per run; hoist keeps its cache, "
      "buildah builds with --layers (dependency COPY cached); both push to the same repository.")
print(f"- Dependencies: {deps_source}; buildah never resolves or installs them, hoist does in cold runs.")
print("- buildah times are `buildah build` + `buildah push`; hoist's are one `hoist build` (build + push).")
for row in ("cold", "code"):
    phases = [(t[6:], median(v)[1]) for t, v in rows[row].items() if t.startswith("phase:")]
    if phases:
        print(f"- hoist phases, {labels[row][0]} (median ms): "
              + ", ".join(f"{name} {ms}" for name, ms in phases) + ".")
if hoist_note: print(f"- {hoist_note}.")
print(f"- {buildah_version}" + (f"; {hoist_version}" if hoist_version else ""))
PY
