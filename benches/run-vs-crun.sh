#!/usr/bin/env bash
# Benchmark `hoist run` against crun and runc on the same images, in one run.
#
# Starts a throw-away docker-registry on 127.0.0.1 (access log on), pushes
# testkit's BusyBox and Python 3.11 base images and a ~200 MiB five-layer
# image (the BusyBox base + five layers of 40 MiB random data, made with
# `umoci raw add-layer`) to it with skopeo, then measures:
#   (a) cached start: `hoist run` of an image already in its layer cache
#       (`/bin/true` on BusyBox, `python3 -c pass` on Python) against
#       `crun run` and `runc run` of the same image unpacked once with
#       `umoci unpack`. The bundle's config.json is adjusted to match the
#       sandbox `hoist run` makes: the same command as uid/gid 1000, no
#       capabilities, no new privileges, the same seccomp profile (Docker's
#       default, from crates/sandbox-run/src/seccomp.json), the same masked
#       and read-only /proc paths, read-only root, a tmpfs on /tmp (512m), new network,
#       pid, ipc, uts and mount namespaces, memory 2g, 2 CPUs, 256 pids.
#   (b) cold pull + unpack + run of the 200 MiB image running `/bin/true`:
#       `hoist run` with a fresh --cache-dir against the peer pipeline
#       `skopeo copy` to a fresh OCI layout + `umoci unpack` + copying in the
#       adjusted config.json + `runc run`.
#   (c) BENCH_CONCURRENCY (default 50) concurrent cold `hoist run`s of the
#       200 MiB image sharing one --cache-dir: blob downloads per blob,
#       counted as GET /v2/<repo>/blobs/<digest> lines with a 2xx status in
#       the registry's access log.
# Images are named by digest (REF@sha256:…), as a worker would run them.
#
# crun 1.8 refuses a hybrid cgroup hierarchy ("cgroups in hybrid mode not
# supported"). When /sys/fs/cgroup/unified is mounted, crun is started in a
# private mount namespace with that mount hidden:
#   unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; exec crun "$@"' sh run ...
# That wrapper's own cost is timed too (running `true` instead of crun) and
# printed as a note. runc runs as is.
#
# Environment:
#   HOIST            hoist binary (default ${CARGO_TARGET_DIR:-target}/release/hoist,
#                    built with `cargo build --release --bin hoist` if missing)
#   HOIST_ARGS       extra global arguments for hoist (e.g. "--registry-timeout 60")
#   BENCH_BUSYBOX_BASE, BENCH_PYTHON_BASE  oci:DIR:TAG of the bases (default:
#                    testkit's, via `cargo run --release -p testkit --example base-image`)
#   BENCH_START_RUNS timed starts per tool in (a) (default 30)
#   BENCH_RUNS       timed runs per tool in (b) (default 5)
#   BENCH_WARMUP     untimed runs per tool per row before timing (default 1)
#   BENCH_CONCURRENCY  concurrent runs in (c) (default 50; 0 skips the row)
#   BENCH_SKIP_HOIST=1  time the peers only (hoist columns show "-")
#   BENCH_TMPDIR     where the registry, bundles and caches live
#                    (default $TMPDIR or /tmp; needs ~2 GiB)
#   BENCH_KEEP=1     keep the temp dir (registry log, bundles) on exit
#
# Needs: root, docker-registry, skopeo, umoci, runc, crun, unshare, curl, jq,
# python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
START_RUNS="${BENCH_START_RUNS:-30}"
RUNS="${BENCH_RUNS:-5}"
WARMUP="${BENCH_WARMUP:-1}"
CONCURRENCY="${BENCH_CONCURRENCY:-50}"
read -r -a HOIST_EXTRA <<<"${HOIST_ARGS:-}"
MiB=$((1024 * 1024))

require_tools docker-registry skopeo umoci runc crun unshare curl jq python3
require_root "runc and crun need it for these bundles"
require_positive BENCH_START_RUNS "$START_RUNS"
require_positive BENCH_RUNS "$RUNS"
require_count BENCH_WARMUP "$WARMUP"
require_count BENCH_CONCURRENCY "$CONCURRENCY"

# ---------------------------------------------------------------- hoist binary
find_hoist run "timing peers only" "has no \`run\` verb; timing peers only"

# ---------------------------------------------------------------- base images
if [[ -z ${BENCH_BUSYBOX_BASE:-} || -z ${BENCH_PYTHON_BASE:-} ]]; then
    log "locating testkit's base images (built once per machine)"
fi
BUSYBOX_BASE="${BENCH_BUSYBOX_BASE:-$(base_image busybox)}"
PYTHON_BASE="${BENCH_PYTHON_BASE:-$(base_image python)}"

find_crun

# ---------------------------------------------------------------- workspace
# drop_containers: delete the containers a failed run left behind; runs on exit
drop_containers() {
    local id
    for id in $(runc --root "$WORK/runc-state" list -q 2>/dev/null); do
        runc --root "$WORK/runc-state" delete -f "$id" >/dev/null 2>&1 || true
    done
    for id in $(crun --root "$WORK/crun-state" list -q 2>/dev/null); do
        "${CRUN[@]}" --root "$WORK/crun-state" delete -f "$id" >/dev/null 2>&1 || true
    done
}
setup_workspace hoist-bench-run drop_containers

# push SRC REPO:TAG -> prints the pushed reference pinned by digest
push() {
    "${SKOPEO[@]}" "$1" "docker://$REG/$2"
    local digest
    digest=$(manifest_digest "$REG" "${2%:*}" "${2##*:}")
    [[ -n $digest ]] || die "pushed $2 but the registry does not serve it"
    printf '%s/%s@%s\n' "$REG" "${2%:*}" "$digest"
}

# make_bundle NAME IMAGE_REF ARGS_JSON: skopeo copy the pushed image to a
# layout, umoci unpack it, adjust its config
make_bundle() {
    local name=$1 ref=$2 args=$3
    "${SKOPEO[@]}" "docker://$ref" "oci:$WORK/layout-$name:bench"
    umoci unpack --image "$WORK/layout-$name:bench" "$WORK/bundle-$name" >/dev/null
    adjust_config "$WORK/bundle-$name/config.json" "$WORK/bundle-$name/config.adjusted" rootfs "$args"
    mv "$WORK/bundle-$name/config.adjusted" "$WORK/bundle-$name/config.json"
}

# ---------------------------------------------------------------- timing
# timed (lib.sh) sets T_SEC; each measurement is recorded as ROW TOOL VALUE.

SEQ=0
next_id() { SEQ=$((SEQ + 1)); ID="bench-$SEQ"; }

# ---------------------------------------------------------------- (a) cached start
HCACHE_WARM="$WORK/hoist-cache"
# start_cmd TOOL IMAGE -> CMD (array) for one start
start_cmd() {
    local tool=$1 img=$2 argv
    read -r -a argv <<<"${IMG_ARGV[$img]}"
    next_id
    case $tool in
        hoist) CMD=("$HOIST" ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} run "${IMG_REF[$img]}"
            --cache-dir "$HCACHE_WARM" -- "${argv[@]}") ;;
        crun) CMD=("${CRUN[@]}" --root "$WORK/crun-state" run --bundle "$WORK/bundle-$img" "$ID") ;;
        runc) CMD=(runc --root "$WORK/runc-state" run --bundle "$WORK/bundle-$img" "$ID") ;;
        wrapper) CMD=("${CRUN_WRAPPER[@]}") ;;
    esac
}

# json_array ARGS... -> a JSON array of strings (jq 1.6's --args would take
# a "-c" among ARGS for its own option)
json_array() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }

# Print the uid, then "ro" if the root file system cannot be written.
PROBE_SH=(/bin/sh -c 'id -u; if touch /probe 2>/dev/null; then echo rw; else echo ro; fi')
PROBE_PY=(python3 -c '
import os
print(os.getuid())
try:
    open("/probe", "w")
    print("rw")
except OSError:
    print("ro")')

# check_sandbox TOOL IMAGE: uid 1000 and a read-only root, once per tool
check_sandbox() {
    local tool=$1 img=$2 out probe
    probe=("${PROBE_SH[@]}")
    [[ $img == python ]] && probe=("${PROBE_PY[@]}")
    next_id
    # stdout only: the probe prints there; a tool's own messages go to stderr.
    case $tool in
        hoist)
            out=$("$HOIST" ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} run "${IMG_REF[$img]}" \
                --cache-dir "$HCACHE_WARM" -- "${probe[@]}" 2>"$WORK/probe.err") || true ;;
        crun | runc)
            mkdir -p "$WORK/probe-$img"
            adjust_config "$WORK/bundle-$img/config.json" "$WORK/probe-$img/config.json" \
                "$WORK/bundle-$img/rootfs" "$(json_array "${probe[@]}")"
            if [[ $tool == crun ]]; then
                out=$("${CRUN[@]}" --root "$WORK/crun-state" run --bundle "$WORK/probe-$img" "$ID" 2>"$WORK/probe.err") || true
            else
                out=$(runc --root "$WORK/runc-state" run --bundle "$WORK/probe-$img" "$ID" 2>"$WORK/probe.err") || true
            fi ;;
    esac
    if [[ $out != $'1000\nro' ]]; then
        log "$tool on $img: want uid 1000 and a read-only root, got: $out"
        sed 's/^/    /' "$WORK/probe.err" | tail -n 10 >&2
        return 1
    fi
}

# bench_start IMAGE LABEL
bench_start() {
    local img=$1 label=$2 tools=(crun runc) tool i
    [[ -n $HOIST ]] && tools=(hoist crun runc)
    ((${#CRUN_WRAPPER[@]})) && [[ $img == busybox ]] && tools+=(wrapper)
    log "row: $label"
    declare -A broken=()
    for tool in "${tools[@]}"; do
        [[ $tool == wrapper ]] && continue
        check_sandbox "$tool" "$img" || broken[$tool]=1
    done
    for ((i = 0; i < WARMUP; i++)); do
        for tool in "${tools[@]}"; do
            [[ -n ${broken[$tool]:-} ]] && continue
            start_cmd "$tool" "$img"
            timed "${CMD[@]}" || broken[$tool]=1
        done
    done
    # Timed runs, tools interleaved so that drift hits all alike.
    for ((i = 0; i < START_RUNS; i++)); do
        for tool in "${tools[@]}"; do
            [[ -n ${broken[$tool]:-} ]] && continue
            start_cmd "$tool" "$img"
            if timed "${CMD[@]}"; then
                record "$label" "$tool" "$T_SEC"
            else
                broken[$tool]=1
            fi
        done
    done
    for tool in "${tools[@]}"; do
        if [[ -n ${broken[$tool]:-} ]]; then record "$label" "$tool" FAILED; fi
    done
}

# ---------------------------------------------------------------- (b) cold
# peer_pipeline REF DIR: skopeo copy + umoci unpack + config + runc run
peer_pipeline() {
    local t0 t1 t2 t3
    t0=$EPOCHREALTIME
    "${SKOPEO[@]}" "docker://$1" "oci:$2/layout:bench"
    t1=$EPOCHREALTIME
    umoci unpack --image "$2/layout:bench" "$2/bundle" >/dev/null
    t2=$EPOCHREALTIME
    cp "$WORK/big-config.json" "$2/bundle/config.json"
    runc --root "$WORK/runc-state" run --bundle "$2/bundle" "$ID"
    t3=$EPOCHREALTIME
    printf '%s\t%s\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        "$(awk -v a="$t1" -v b="$t2" 'BEGIN { print b - a }')" \
        "$(awk -v a="$t2" -v b="$t3" 'BEGIN { print b - a }')" >"$WORK/stages"
}

# bench_cold LABEL
bench_cold() {
    local label=$1 tools=(peer) tool i dir stages
    [[ -n $HOIST ]] && tools=(hoist peer)
    log "row: $label"
    declare -A broken=()
    for ((i = 0; i < WARMUP + RUNS; i++)); do
        for tool in "${tools[@]}"; do
            [[ -n ${broken[$tool]:-} ]] && continue
            next_id
            dir="$WORK/cold-$ID"
            if [[ $tool == hoist ]]; then
                CMD=("$HOIST" ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} run "${IMG_REF[big]}"
                    --cache-dir "$dir" -- /bin/true)
            else
                drop_skopeo_cache
                mkdir -p "$dir"
                CMD=(peer_pipeline "${IMG_REF[big]}" "$dir")
            fi
            sync
            if ! timed "${CMD[@]}"; then
                broken[$tool]=1
            elif ((i >= WARMUP)); then
                record "$label" "$tool" "$T_SEC"
                if [[ $tool == peer ]]; then
                    IFS=$'\t' read -r -a stages <"$WORK/stages"
                    record "$label" skopeo "${stages[0]}"
                    record "$label" umoci "${stages[1]}"
                    record "$label" runc "${stages[2]}"
                fi
            fi
            rm -rf "$dir"
        done
    done
    for tool in "${tools[@]}"; do
        if [[ -n ${broken[$tool]:-} ]]; then record "$label" "$tool" FAILED; fi
    done
}

# ---------------------------------------------------------------- (c) concurrent
# bench_concurrent LABEL: N cold runs sharing one cache; blob GETs per blob
bench_concurrent() {
    local label=$1 dir="$WORK/shared-cache" offset i failed=0 pids=() t0 t1 repo=${IMG_REF[big]}
    log "row: $label"
    repo=${repo#*/}
    repo=${repo%@*}
    offset=$(wc -l <"$REG_LOG")
    t0=$EPOCHREALTIME
    for ((i = 0; i < CONCURRENCY; i++)); do
        "$HOIST" ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} run "${IMG_REF[big]}" --cache-dir "$dir" -- /bin/true \
            >"$WORK/concurrent-$i.out" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            failed=$((failed + 1))
            if ((failed <= 3)); then
                log "concurrent run $i failed:"
                tail -n 5 "$WORK/concurrent-$i.out" | sed 's/^/    /' >&2
            fi
        fi
    done
    t1=$EPOCHREALTIME
    ((failed <= 3)) || log "$failed of $CONCURRENCY concurrent runs failed"
    sleep 0.5 # the access log line is written after the response
    record "$label" wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    record "$label" failed "$failed"
    tail -n +"$((offset + 1))" "$REG_LOG" |
        grep -Eo "\"GET /v2/$repo/blobs/sha256:[0-9a-f]{64} HTTP/[0-9.]+\" 2[0-9][0-9]" |
        grep -Eo 'sha256:[0-9a-f]{64}' | sort | uniq -c >"$WORK/blob-gets" || true
    record "$label" blobs "${IMG_BLOBS[big]}"
    record "$label" gets "$(awk '{ s += $1 } END { print s + 0 }' "$WORK/blob-gets")"
    record "$label" max "$(awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }' "$WORK/blob-gets")"
    record "$label" fetched "$(wc -l <"$WORK/blob-gets")"
    rm -rf "$dir"
}

# ---------------------------------------------------------------- main
start_registry R on; REG="127.0.0.1:$REG_PORT"
log "registry on $REG, workdir $WORK"

# IMG_ARGV: the command each start row runs (split on spaces).
declare -A IMG_REF IMG_ARGV IMG_BLOBS
log "pushing the base images"
IMG_REF[busybox]=$(push "$BUSYBOX_BASE" base/busybox:1)
IMG_ARGV[busybox]=/bin/true
IMG_REF[python]=$(push "$PYTHON_BASE" base/python:3.11)
IMG_ARGV[python]="python3 -c pass"

log "building the 200 MiB five-layer image with umoci"
BIG="$WORK/big-layout"
"${SKOPEO[@]}" "$BUSYBOX_BASE" "oci:$BIG:big"
for i in 1 2 3 4 5; do
    mkdir -p "$WORK/big-layer/data"
    head -c $((40 * MiB)) /dev/urandom >"$WORK/big-layer/data/layer-$i.bin"
    tar -C "$WORK/big-layer" -cf "$WORK/big-layer.tar" data
    umoci raw add-layer --image "$BIG:big" --tag big "$WORK/big-layer.tar"
    rm -rf "$WORK/big-layer" "$WORK/big-layer.tar"
done
umoci gc --layout "$BIG"
IMG_REF[big]=$(push "oci:$BIG:big" bench/big:1)
IMG_BLOBS[big]=$(get_manifest "$REG" bench/big 1 | jq '[.config, .layers[]] | length')
rm -rf "$BIG"
log "pushed ${IMG_REF[big]} ($((IMG_BLOBS[big] - 1)) layers)"

log "unpacking bundles for crun and runc"
for img in busybox python; do
    read -r -a argv <<<"${IMG_ARGV[$img]}"
    make_bundle "$img" "${IMG_REF[$img]}" "$(json_array "${argv[@]}")"
done
# The cold peer pipeline copies this config into each fresh bundle.
adjust_config "$WORK/bundle-busybox/config.json" "$WORK/big-config.json" rootfs '["/bin/true"]'

if [[ -n $HOIST ]]; then
    log "warming hoist's layer cache"
    for img in busybox python; do
        start_cmd hoist "$img"
        timed "${CMD[@]}" || log "warning: the warm-up hoist run of $img failed"
    done
fi

bench_start busybox "BusyBox /bin/true, cached"
bench_start python "Python python3 -c pass, cached"
bench_cold "200 MiB, 5 layers: cold pull + unpack + /bin/true"
if [[ -n $HOIST && $CONCURRENCY -gt 0 ]]; then
    bench_concurrent "$CONCURRENCY concurrent cold runs, one cache"
fi

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$START_RUNS" "$RUNS" "$HOIST_NOTE" "$CONCURRENCY" \
    "$(crun --version | head -n1); $(runc --version | head -n1); $(skopeo --version); $(umoci --version)" \
    "$(hoist_version)" <<'PY'
import statistics, sys
path, start_runs, runs, hoist_note, concurrency, peer_versions, hoist_version = sys.argv[1:8]
rows, order = {}, []
for line in open(path):
    label, tool, value = line.rstrip("\n").split("\t")
    if label not in rows:
        rows[label] = {}; order.append(label)
    rows[label].setdefault(tool, []).append(value)

def median(row, tool):
    samples = rows.get(row, {}).get(tool, [])
    if not samples: return None, "-"
    if "FAILED" in samples: return None, "FAILED"
    m = statistics.median(float(s) for s in samples) * 1000
    return m, f"{m:.0f}" if m >= 10 else f"{m:.1f}"

def verdict(ok): return "met" if ok else "MISSED"

print()
print(f"hoist run vs crun / runc — median wall milliseconds ({start_runs} starts per tool for cached rows, "
      f"{runs} runs for the cold row).")
print()
print("| case | hoist ms | peer | peer ms | hoist/peer | target |")
print("|---|---:|---|---:|---:|---|")
notes = []
for label in order:
    r = rows[label]
    if "gets" in r or "wall" in r:
        continue
    h, hs = median(label, "hoist")
    if "peer" in r:
        p, ps = median(label, "peer")
        ratio = h / p if h is not None and p else None
        target = (f"≤ 1000 ms: {verdict(h <= 1000)}; ≤ 0.3× peer: {verdict(ratio <= 0.3)}"
                  if ratio is not None else "-")
        print(f"| {label} | {hs} | skopeo copy + umoci unpack + runc run | {ps} | "
              f"{f'{ratio:.2f}' if ratio is not None else '-'} | {target} |")
        stages = [f"{t} {median(label, t)[1]} ms" for t in ("skopeo", "umoci", "runc") if t in r]
        if stages and "FAILED" not in r["peer"]:
            notes.append(f"{label}, peer stages (medians): " + ", ".join(stages) + ".")
        continue
    for peer in ("crun", "runc"):
        p, ps = median(label, peer)
        ratio = h / p if h is not None and p else None
        target = f"≤ 1.2× crun: {verdict(ratio <= 1.2)}" if peer == "crun" and ratio is not None else ""
        print(f"| {label} | {hs} | {peer} run | {ps} | {f'{ratio:.2f}' if ratio is not None else '-'} | {target} |")
    if "wrapper" in r:
        notes.append(f"crun's unshare wrapper alone (hybrid cgroups; `exec true` instead of crun) takes "
                     f"{median(label, 'wrapper')[1]} ms of the crun time.")
for label in order:
    r = rows[label]
    if "gets" not in r:
        continue
    gets, blobs, mx, fetched = (int(r[k][0]) for k in ("gets", "blobs", "max", "fetched"))
    wall = float(r["wall"][0])
    failed = int(r["failed"][0])
    print(f"| {label}: blob GETs | {gets} for {blobs} blobs ({fetched} fetched), at most {mx} per blob; "
          f"{failed} of {concurrency} runs failed; {wall:.2f} s wall | - | - | - | one download per blob: "
          f"{verdict(mx <= 1 and failed == 0)}{' (runs failed)' if failed else ''} |")
print()
print("Notes:")
print("- Images come from one local docker-registry (distribution) on 127.0.0.1, by digest. "
      "The crun/runc bundles are `umoci unpack`s of the same images, configured like hoist's sandbox: "
      "uid/gid 1000, no capabilities, no new privileges, Docker's default seccomp profile, masked /proc paths, "
      "read-only root, tmpfs /tmp, network namespace, 2g memory, 2 CPUs, 256 pids.")
print("- Cold row: hoist gets a fresh --cache-dir every run; the peer pipeline a fresh layout and bundle "
      "(skopeo's blob-info cache deleted first). Layers are 40 MiB of random data each, so nothing compresses.")
for n in notes: print(f"- {n}")
if hoist_note: print(f"- {hoist_note}.")
print(f"- {peer_versions}" + (f"; {hoist_version}" if hoist_version else ""))
PY
