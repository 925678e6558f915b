#!/usr/bin/env bash
# Benchmark a cached `hoist invoke` of a scientific function (numpy, pandas,
# scipy) against `runc run` of the same handler from the same image, in one
# run on the same machine.
#
# The function imports numpy, pandas and scipy.stats/linalg and does a little
# work with each; requirements.txt pins the three (wheels from PyPI, through
# the normal `hoist build`). It is built twice on testkit's Python 3.11 base
# (Debian packages; the standard library ships bytecode), into OCI layouts:
#   - with bytecode (the default: the base's interpreter compiles the
#     dependency and code layers in the sandbox);
#   - with --no-bytecode (what hoist built before: every start compiles
#     every module it imports).
# The peer is the --no-bytecode image unpacked with `umoci unpack`, then
# byte-compiled the way a Dockerfile `RUN python -m compileall` (or pip) does
# it: `python3.11 -m compileall -q` over /opt/hoist/site-packages and
# /opt/hoist/function, run inside that bundle's root (chroot, as root; the
# default timestamp-based .pyc files). Its config.json is adjusted to the
# sandbox `hoist invoke` makes: uid/gid 1000, no capabilities, no new
# privileges, Docker's default seccomp profile (crates/sandbox-run/src/
# seccomp.json), masked and read-only /proc paths, read-only root, a 512m
# tmpfs on /tmp, network, pid, ipc, uts and mount namespaces, memory 2g,
# 2 CPUs, 256 pids, and /io bind-mounted with inputs.json (the image's own
# command, the runner, reads it and writes output.json there).
#
# Rows (tools interleaved, BENCH_WARMUP untimed runs, then BENCH_RUNS timed):
#   hoist invoke (bytecode), hoist invoke (no bytecode): images already in
#     hoist's layer cache (pulled by the warm-up);
#   runc run (compileall): the peer; runc run (no bytecode): the same bundle
#     before compileall, for reference.
# Every run's output.json is checked against the expected reply.
#
# Environment:
#   HOIST            hoist binary (default ${CARGO_TARGET_DIR:-target}/release/hoist,
#                    built with `cargo build --release --bin hoist` if missing)
#   HOIST_ARGS       extra global arguments for hoist
#   BENCH_PYTHON_BASE  oci:DIR:TAG of the base (default: testkit's python_base(),
#                    via `cargo run --release -p testkit --example base-image -- python`)
#   BENCH_REQUIREMENTS  requirements.txt lines (default: numpy, pandas, scipy pinned)
#   BENCH_RUNS       timed runs per tool (default 10)
#   BENCH_WARMUP     untimed runs per tool before timing (default 1)
#   BENCH_TMPDIR     where layouts, bundles and caches live (default $TMPDIR
#                    or /tmp; needs ~1.5 GiB)
#   BENCH_KEEP=1     keep the temp dir on exit
#
# Needs: root (the sandbox, runc, chroot), runc, umoci, uv, jq, python3.
# Network access to PyPI on the first run (wheels).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
RUNS="${BENCH_RUNS:-10}"
WARMUP="${BENCH_WARMUP:-1}"
REQUIREMENTS="${BENCH_REQUIREMENTS:-numpy==2.2.6
pandas==2.2.3
scipy==1.15.3}"
read -r -a HOIST_EXTRA <<<"${HOIST_ARGS:-}"

require_tools runc umoci uv jq python3 chroot
require_root "the sandbox, runc and chroot need it"
require_positive BENCH_RUNS "$RUNS"
require_count BENCH_WARMUP "$WARMUP"

# hoist builds both images: without it (or with BENCH_SKIP_HOIST=1) there is
# nothing to run.
find_hoist invoke "cannot benchmark" "has no \`invoke\` verb"
[[ -n $HOIST ]] || die "this benchmark builds its images with hoist (${HOIST_NOTE})"
"$HOIST" build --help 2>/dev/null | grep -q -- --no-bytecode ||
    die "$HOIST has no \`build --no-bytecode\`: this benchmark needs a hoist that compiles bytecode"

if [[ -z ${BENCH_PYTHON_BASE:-} ]]; then log "locating testkit's Python base (built once per machine)"; fi
PYTHON_BASE="${BENCH_PYTHON_BASE:-$(base_image python)}"

# drop_containers: delete the containers a failed run left behind; runs on exit
drop_containers() {
    local id
    for id in $(runc --root "$WORK/runc-state" list -q 2>/dev/null); do
        runc --root "$WORK/runc-state" delete -f "$id" >/dev/null 2>&1 || true
    done
}
setup_workspace hoist-bench-scientific drop_containers

# ---------------------------------------------------------------- the function
FN="$WORK/function"
mkdir -p "$FN"
cat >"$FN/user_function.py" <<'PY'
import numpy as np
import pandas as pd
from scipy import linalg, stats


def handler(inputs):
    n = int(inputs["n"])
    x = np.arange(n, dtype=float)
    frame = pd.DataFrame({"x": x, "y": 3.0 * x + 1.0})
    fit = stats.linregress(frame["x"], frame["y"])
    grouped = frame.groupby(frame["x"] % 4).sum()
    return {
        "slope": round(float(fit.slope), 6),
        "groups": int(len(grouped)),
        "det": round(float(linalg.det(np.eye(3) * 2.0)), 6),
    }
PY
printf '%s\n' "$REQUIREMENTS" >"$FN/requirements.txt"
printf '{"n": 1000}\n' >"$WORK/inputs.json"
EXPECTED='{"det":8,"groups":4,"slope":3}'

# ---------------------------------------------------------------- images
BUILD_CACHE="$WORK/build-cache"
# build NAME [FLAGS...]: hoist build into the layout $WORK/NAME; prints its record
build() {
    local name=$1
    shift
    "$HOIST" --json ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} build "$FN" --base "$PYTHON_BASE" \
        --tag "127.0.0.1:1/bench/scientific:v1" --output "oci:$WORK/$name:fn" \
        --cache-dir "$BUILD_CACHE" "$@"
}
log "building the function with bytecode (wheels from PyPI on the first run)"
build pyc >"$WORK/pyc.json" || die "hoist build failed"
log "bytecode: $(jq -c .bytecode "$WORK/pyc.json")"
log "building it without bytecode"
build no-pyc --no-bytecode >"$WORK/no-pyc.json" || die "hoist build --no-bytecode failed"
PACKAGES=$(jq -r '[.packages[] | "\(.name) \(.version)"] | join(", ")' "$WORK/pyc.json")

# ---------------------------------------------------------------- the peer's bundles
log "unpacking the --no-bytecode image with umoci for runc"
for bundle in runc-pyc runc-no-pyc; do
    umoci unpack --image "$WORK/no-pyc:fn" "$WORK/$bundle" >/dev/null
    mkdir -p "$WORK/$bundle/rootfs/io"
    adjust_config "$WORK/$bundle/config.json" "$WORK/$bundle/config.adjusted" rootfs null "$WORK/io"
    mv "$WORK/$bundle/config.adjusted" "$WORK/$bundle/config.json"
done
INTERPRETER=$(jq -r '.process.args[0]' "$WORK/runc-pyc/config.json")
log "byte-compiling the runc bundle: $INTERPRETER -m compileall inside it"
env -u SOURCE_DATE_EPOCH chroot "$WORK/runc-pyc/rootfs" "$INTERPRETER" -m compileall -q /opt/hoist/site-packages /opt/hoist/function \
    >"$WORK/compileall.log" 2>&1 || log "compileall reported modules it could not compile (as pip ignores them)"
mkdir -p "$WORK/io"
chown 1000:1000 "$WORK/io"
cp "$WORK/inputs.json" "$WORK/io/inputs.json"

# ---------------------------------------------------------------- runs
HOIST_CACHE="$WORK/layer-cache"
SEQ=0
# run_tool TOOL: one invocation; its reply (compact JSON) in $WORK/reply
run_tool() {
    local tool=$1
    SEQ=$((SEQ + 1))
    case $tool in
        hoist-pyc | hoist-no-pyc)
            "$HOIST" ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} invoke "oci:$WORK/${tool#hoist-}:fn" \
                --inputs "$WORK/inputs.json" --cache-dir "$HOIST_CACHE" >"$WORK/reply.raw" ;;
        runc-pyc | runc-no-pyc)
            rm -f "$WORK/io/output.json"
            runc --root "$WORK/runc-state" run --bundle "$WORK/$tool" "bench-$SEQ" </dev/null
            cp "$WORK/io/output.json" "$WORK/reply.raw" ;;
    esac
    jq -cS . "$WORK/reply.raw" >"$WORK/reply"
}

TOOLS=(hoist-pyc runc-pyc hoist-no-pyc runc-no-pyc)
declare -A broken=()
log "warming up (hoist pulls both images into its layer cache)"
for ((i = 0; i < WARMUP; i++)); do
    for tool in "${TOOLS[@]}"; do
        [[ -n ${broken[$tool]:-} ]] && continue
        timed run_tool "$tool" || broken[$tool]=1
    done
done
for tool in "${TOOLS[@]}"; do
    [[ -n ${broken[$tool]:-} ]] && continue
    run_tool "$tool" >/dev/null 2>&1 || { broken[$tool]=1; continue; }
    if [[ $(cat "$WORK/reply") != "$EXPECTED" ]]; then
        log "$tool replied $(cat "$WORK/reply"), want $EXPECTED"
        broken[$tool]=1
    fi
done
log "timing $RUNS runs per tool, interleaved"
for ((i = 0; i < RUNS; i++)); do
    for tool in "${TOOLS[@]}"; do
        [[ -n ${broken[$tool]:-} ]] && continue
        if timed run_tool "$tool"; then
            record invoke "$tool" "$T_SEC"
        else
            broken[$tool]=1
        fi
    done
done
for tool in "${TOOLS[@]}"; do
    if [[ -n ${broken[$tool]:-} ]]; then record invoke "$tool" FAILED; fi
done

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$RUNS" "$PACKAGES" "$(jq -c .bytecode "$WORK/pyc.json")" \
    "$(runc --version | head -n1); $(umoci --version)" "$(hoist_version)" <<'PY'
import json, statistics, sys
path, runs, packages, bytecode, peer_versions, hoist_version = sys.argv[1:7]
samples = {}
for line in open(path):
    _, tool, value = line.rstrip("\n").split("\t")
    samples.setdefault(tool, []).append(value)

def median(tool):
    s = samples.get(tool, [])
    if not s: return None, "-"
    if "FAILED" in s: return None, "FAILED"
    m = statistics.median(float(v) for v in s) * 1000
    return m, f"{m:.0f}"

peer, peer_s = median("runc-pyc")
print()
print(f"Scientific function ({packages}): cached invoke, median wall milliseconds of {runs} runs per tool.")
print()
print("| invocation | ms | runc run (compileall) ms | ratio | target |")
print("|---|---:|---:|---:|---|")
for tool, label, target in (
    ("hoist-pyc", "hoist invoke, bytecode at build time", True),
    ("hoist-no-pyc", "hoist invoke, no bytecode (before)", False),
    ("runc-no-pyc", "runc run, no bytecode (reference)", False),
):
    m, s = median(tool)
    ratio = m / peer if m is not None and peer else None
    verdict = ("≤ 1.1×: " + ("met" if ratio <= 1.1 else "MISSED")) if target and ratio is not None else ""
    print(f"| {label} | {s} | {peer_s} | {f'{ratio:.2f}' if ratio is not None else '-'} | {verdict} |")
print()
print("Notes:")
print(f"- hoist's bytecode: {bytecode}.")
print("- runc's bundle is the --no-bytecode image unpacked by umoci, compiled by `python3.11 -m compileall -q` "
      "inside it (timestamp .pyc), configured like hoist's sandbox (uid 1000, no capabilities, seccomp, "
      "read-only root, 2g, 2 CPUs, 256 pids, network namespace), /io bind-mounted.")
print("- hoist invoke includes what the CLI does per call: opening the layer cache, the sandbox sweep, "
      "the private /io tmpfs, reading output.json back.")
print(f"- {peer_versions}" + (f"; {hoist_version}" if hoist_version else ""))
PY
