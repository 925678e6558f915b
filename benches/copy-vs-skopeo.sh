#!/usr/bin/env bash
# Benchmark `hoist copy` against `skopeo copy` on the same images, in one run.
#
# Starts two throw-away docker-registry instances on 127.0.0.1 (A = source,
# B = destination), builds OCI-layout fixtures of incompressible random data,
# pushes them to A with skopeo, then times both tools on:
#   (a) A -> B cold     (a new destination repository every run)
#   (b) A -> B no-op    (the destination already holds the image)
#   (c) A -> OCI layout (a fresh directory every run)
# for a ~20 MiB one-layer and a ~200 MiB five-layer image, plus hoist's peak
# RSS copying a 1 GiB single-layer image A -> B. The cold A -> B rows also
# time B's own ingest floor: benches/ingest-floor.rs holds the image in memory
# and uploads every blob at once with plain monolithic POST + PUT requests,
# then the manifest. Prints a Markdown table.
#
# Environment:
#   HOIST            hoist binary (default ${CARGO_TARGET_DIR:-target}/release/hoist,
#                    built with `cargo build --release --bin hoist` if missing)
#   HOIST_ARGS       extra arguments for `hoist copy` (e.g. "-j 8")
#   SKOPEO_ARGS      extra arguments for `skopeo copy`
#   INGEST_FLOOR     the ingest-floor binary (default
#                    ${CARGO_TARGET_DIR:-target}/release/examples/ingest-floor,
#                    built with `cargo build --release --example ingest-floor`)
#   BENCH_RUNS       timed runs per tool per row (default 5)
#   BENCH_WARMUP     untimed runs per tool per row before timing (default 1)
#   BENCH_SKIP_1G=1  skip the 1 GiB peak-RSS row
#   BENCH_SKIP_HOIST=1  time skopeo only (hoist columns show "-")
#   BENCH_TMPDIR     where registries and fixtures live (default $TMPDIR or /tmp;
#                    needs ~4 GiB free with the 1 GiB row, ~1 GiB without)
#   BENCH_KEEP=1     keep the temp dir (registry logs) on exit
#
# Needs: docker-registry, skopeo, curl, jq, python3, GNU time (/usr/bin/time).
# scripts/install-test-deps installs all but curl and python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
RUNS="${BENCH_RUNS:-5}"
WARMUP="${BENCH_WARMUP:-1}"
SKIP_1G="${BENCH_SKIP_1G:-0}"
read -r -a HOIST_EXTRA <<<"${HOIST_ARGS:-}"
read -r -a SKOPEO_EXTRA <<<"${SKOPEO_ARGS:-}"
GNU_TIME=/usr/bin/time
# timed also measures peak RSS (T_RSS) with GNU time.
TIMED_RSS=1

require_tools docker-registry skopeo curl jq python3 sha256sum
"$GNU_TIME" -f %M true >/dev/null 2>&1 || die "GNU time not found at $GNU_TIME (apt-get install time)"
require_positive BENCH_RUNS "$RUNS"
require_count BENCH_WARMUP "$WARMUP"

# ---------------------------------------------------------------- hoist binary
find_hoist copy "timing skopeo only" "has no working \`copy\` subcommand; hoist not timed"

# ---------------------------------------------------------------- ingest floor
FLOOR="${INGEST_FLOOR:-}"
if [[ -z $FLOOR ]]; then
    # Built every time (a no-op when up to date): an old build would time an
    # old floor.
    log "building the ingest floor: cargo build --release --example ingest-floor"
    (cd "$ROOT" && cargo build --release --example ingest-floor) >&2 || die "cargo build failed"
    FLOOR="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/ingest-floor"
fi
[[ -x $FLOOR ]] || die "INGEST_FLOOR=$FLOOR is not executable"

# ---------------------------------------------------------------- workspace
setup_workspace hoist-bench

# ---------------------------------------------------------------- fixtures
cat >"$WORK/mkfixture.py" <<'PY'
"""Write an OCI image layout with gzip layers of random data.

usage: mkfixture.py DIR TAG SIZE_BYTES [SIZE_BYTES ...]   (one layer per size)
"""
import gzip, hashlib, io, json, os, sys, tarfile

class Random(io.RawIOBase):
    def __init__(self, n): self.left = n
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left, 1 << 20)
        if n == 0: return 0
        b[:n] = os.urandom(n)
        self.left -= n
        return n

class Hashing(io.RawIOBase):
    """Write-through wrapper that hashes and counts what passes."""
    def __init__(self, inner): self.inner, self.h, self.n = inner, hashlib.sha256(), 0
    def writable(self): return True
    def write(self, b):
        self.h.update(b); self.n += len(b)
        if self.inner is not None: self.inner.write(b)
        return len(b)

def blob(root, data_or_path, media_type):
    if isinstance(data_or_path, bytes):
        d = hashlib.sha256(data_or_path).hexdigest()
        with open(os.path.join(root, "blobs/sha256", d), "wb") as f: f.write(data_or_path)
        size = len(data_or_path)
    else:
        raise TypeError
    return {"mediaType": media_type, "digest": "sha256:" + d, "size": size}

def layer(root, i, size):
    tmp = os.path.join(root, "blobs/sha256", ".tmp-layer")
    with open(tmp, "wb") as out:
        compressed = Hashing(out)
        gz = gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=1, mtime=0)
        uncompressed = Hashing(gz)
        with tarfile.open(fileobj=uncompressed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            d = tarfile.TarInfo("data"); d.type = tarfile.DIRTYPE; d.mode = 0o755; d.mtime = 0
            tar.addfile(d)
            ti = tarfile.TarInfo(f"data/layer-{i}.bin"); ti.size = size; ti.mode = 0o644; ti.mtime = 0
            tar.addfile(ti, io.BufferedReader(Random(size), 1 << 20))
        gz.close()
    digest = compressed.h.hexdigest()
    os.rename(tmp, os.path.join(root, "blobs/sha256", digest))
    return ({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
             "digest": "sha256:" + digest, "size": compressed.n},
            "sha256:" + uncompressed.h.hexdigest())

def main():
    root, tag, sizes = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3:]]
    os.makedirs(os.path.join(root, "blobs/sha256"), exist_ok=True)
    layers, diff_ids = [], []
    for i, size in enumerate(sizes):
        desc, diff_id = layer(root, i, size)
        layers.append(desc); diff_ids.append(diff_id)
    config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": f"bench layer {i}"}
                    for i in range(len(sizes))],
    }
    cfg = blob(root, json.dumps(config, separators=(",", ":")).encode(),
               "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": layers}
    man = blob(root, json.dumps(manifest, separators=(",", ":")).encode(),
               "application/vnd.oci.image.manifest.v1+json")
    man["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [man]}
    with open(os.path.join(root, "index.json"), "w") as f: json.dump(index, f)
    with open(os.path.join(root, "oci-layout"), "w") as f: json.dump({"imageLayoutVersion": "1.0.0"}, f)
    print(man["digest"])

main()
PY

MiB=$((1024 * 1024))
# Trailing "${ARR[@]}" expansions are written with :+ so empty arrays are fine
# under `set -u` on every bash version.
SKOPEO+=(${SKOPEO_EXTRA[@]+"${SKOPEO_EXTRA[@]}"})

# make_image NAME SIZES... : build a layout, push it to A as bench/NAME:v1,
# verify the digest is unchanged, delete the layout. Sets IMG_DIGEST.
declare -A IMG_DIGEST
make_image() {
    local name=$1; shift
    local dir="$WORK/fixture-$name" digest pushed bytes=0 s
    for s in "$@"; do bytes=$((bytes + s)); done
    log "building fixture $name ($((bytes / MiB)) MiB in $# layer(s))"
    digest=$(python3 "$WORK/mkfixture.py" "$dir" v1 "$@")
    log "pushing $name to registry A"
    skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
        "oci:$dir:v1" "docker://$A/bench/$name:v1"
    pushed=$(manifest_digest "$A" "bench/$name" v1)
    [[ $pushed == "$digest" ]] || die "pushed $name digest $pushed != built $digest"
    rm -rf "$dir"
    IMG_DIGEST[$name]=$digest
}

# check_layout_copy DIR TAG WANT_DIGEST: index.json names the manifest, blobs exist with right sizes
check_layout_copy() {
    local dir=$1 tag=$2 want=$3 got
    got=$(jq -r --arg t "$tag" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
        "$dir/index.json" 2>/dev/null | head -n1)
    [[ $got == "$want" ]] || { log "check: $dir:$tag has manifest '${got:-none}', want $want"; return 1; }
    local d
    for d in "$want" $(jq -r '.config.digest, .layers[].digest' "$dir/blobs/sha256/${want#sha256:}"); do
        [[ -f $dir/blobs/sha256/${d#sha256:} ]] || { log "check: blob $d missing in $dir"; return 1; }
    done
    # Spot-check content of the manifest blob.
    [[ "sha256:$(sha256sum "$dir/blobs/sha256/${want#sha256:}" | cut -d' ' -f1)" == "$want" ]] ||
        { log "check: manifest blob in $dir is corrupt"; return 1; }
}

# ---------------------------------------------------------------- timing
# timed (lib.sh) sets T_SEC and T_RSS; each run is recorded as
# ROW TOOL SECONDS RSS_KIB.

# Per-row command builders. Each takes: ROW TOOL IMAGE and sets CMD (array),
# CHECK (array, run after the first timed run) and PRE (a function name run
# before every run, untimed). Tool "floor" is ingest-floor, cold A -> B only.
SEQ=0
pre_none() { :; }
# skopeo's blob-info cache remembers where it has seen each blob and lets it
# mount blobs across repositories of registry B instead of uploading them.
# Cold runs delete it first so that skopeo does the same work as hoist.
pre_cold_skopeo() { drop_skopeo_cache; }

build_cmd() {
    local row=$1 tool=$2 img=$3
    SEQ=$((SEQ + 1))
    local src="$A/bench/$img:v1" dst="" repo=""
    PRE=pre_none
    case $row in
        reg-cold)
            repo="bench/$img-cold-$tool-$SEQ"
            dst="$B/$repo:v1"
            [[ $tool == skopeo ]] && PRE=pre_cold_skopeo
            CHECK=(check_registry_copy "$B" "$repo" v1 "${IMG_DIGEST[$img]}")
            ;;
        reg-noop)
            repo="bench/$img-noop-$tool"
            dst="$B/$repo:v1"
            CHECK=(check_registry_copy "$B" "$repo" v1 "${IMG_DIGEST[$img]}")
            ;;
        layout-cold)
            LAYOUT_DIR="$WORK/layout-$tool-$SEQ"
            dst="$LAYOUT_DIR"
            [[ $tool == skopeo ]] && PRE=pre_cold_skopeo
            CHECK=(check_layout_copy "$LAYOUT_DIR" v1 "${IMG_DIGEST[$img]}")
            ;;
    esac
    if [[ $tool == floor ]]; then
        CMD=("$FLOOR" "$src" "$dst")
    elif [[ $tool == hoist ]]; then
        if [[ $row == layout-cold ]]; then dst="oci:$dst:v1"; fi
        CMD=("$HOIST" copy --quiet ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} "$src" "$dst")
    else
        if [[ $row == layout-cold ]]; then dst="oci:$dst:v1"; else dst="docker://$dst"; fi
        CMD=("${SKOPEO[@]}" "docker://$src" "$dst")
    fi
}

# after_run ROW: remove what a cold run wrote, so disk use stays flat
after_run() {
    if [[ $1 == layout-cold ]]; then rm -rf "$LAYOUT_DIR"; fi
}

# bench_row ROW IMAGE LABEL [floor]: with "floor", a reg-cold row also times
# ingest-floor
bench_row() {
    local row=$1 img=$2 label=$3 tools=(skopeo) tool i
    [[ -n $HOIST ]] && tools=(hoist skopeo)
    [[ ${4:-} == floor ]] && tools+=(floor)
    log "row: $label"
    declare -A broken=()
    # No-op rows: put the image in place first, with the tool under test.
    if [[ $row == reg-noop ]]; then
        for tool in "${tools[@]}"; do
            build_cmd "$row" "$tool" "$img"
            if ! timed "${CMD[@]}" || ! "${CHECK[@]}"; then
                broken[$tool]=1
            fi
        done
    fi
    for ((i = 0; i < WARMUP; i++)); do
        for tool in "${tools[@]}"; do
            [[ -n ${broken[$tool]:-} ]] && continue
            build_cmd "$row" "$tool" "$img"
            "$PRE"
            timed "${CMD[@]}" || broken[$tool]=1
            after_run "$row"
        done
    done
    # Timed runs, tools interleaved so that drift hits both alike.
    for ((i = 0; i < RUNS; i++)); do
        for tool in "${tools[@]}"; do
            [[ -n ${broken[$tool]:-} ]] && continue
            build_cmd "$row" "$tool" "$img"
            "$PRE"
            if ! timed "${CMD[@]}"; then
                broken[$tool]=1
                after_run "$row"
                continue
            fi
            if ((i == 0)) && ! "${CHECK[@]}"; then
                log "$tool produced a wrong copy in row '$label'"
                broken[$tool]=1
                after_run "$row"
                continue
            fi
            # The floor's time is the upload alone, which it prints; its
            # process also read the image from A first.
            if [[ $tool == floor ]]; then T_SEC=$(tail -n1 "$WORK/cmd.out"); fi
            record "$label" "$tool" "$T_SEC" "$T_RSS"
            after_run "$row"
        done
    done
    for tool in "${tools[@]}"; do
        if [[ -n ${broken[$tool]:-} ]]; then
            record "$label" "$tool" FAILED FAILED
        fi
    done
}

# ---------------------------------------------------------------- main
start_registry A; A="127.0.0.1:$REG_PORT"
start_registry B; B="127.0.0.1:$REG_PORT"
log "registry A on $A, registry B on $B, workdir $WORK"

make_image small $((20 * MiB))
make_image large $((40 * MiB)) $((40 * MiB)) $((40 * MiB)) $((40 * MiB)) $((40 * MiB))

bench_row reg-cold small "20 MiB, 1 layer: registry A → B, cold" floor
bench_row reg-noop small "20 MiB, 1 layer: registry A → B, no-op"
bench_row layout-cold small "20 MiB, 1 layer: registry A → OCI layout, cold"
bench_row reg-cold large "200 MiB, 5 layers: registry A → B, cold" floor
bench_row reg-noop large "200 MiB, 5 layers: registry A → B, no-op"
bench_row layout-cold large "200 MiB, 5 layers: registry A → OCI layout, cold"

if [[ $SKIP_1G != 1 ]]; then
    make_image huge $((1024 * MiB))
    # One run per tool: this row is about memory, not time.
    RUNS=1 WARMUP=0 bench_row reg-cold huge "1 GiB, 1 layer: registry A → B, cold (1 run)"
fi

# ---------------------------------------------------------------- report
python3 - "$RESULTS" "$RUNS" "${HOIST_NOTE}" "$(skopeo --version)" \
    "$(hoist_version)" <<'PY'
import statistics, sys
path, runs, hoist_note, skopeo_version, hoist_version = sys.argv[1:6]
rows, order = {}, []
for line in open(path):
    label, tool, sec, rss = line.rstrip("\n").split("\t")
    if label not in rows:
        rows[label] = {"hoist": [], "skopeo": [], "floor": []}; order.append(label)
    rows[label][tool].append((sec, rss))

def summary(samples):
    if not samples: return None, None, "-", "-"
    if any(s == "FAILED" for s, _ in samples): return None, None, "FAILED", "FAILED"
    secs = [float(s) for s, _ in samples]; rss = max(int(r) for _, r in samples)
    med = statistics.median(secs)
    return med, rss, f"{med:.3f}", f"{rss / 1024:.0f}"

print()
print(f"hoist copy vs skopeo copy — median of {runs} run(s) per cell, wall seconds; "
      "peak RSS is the maximum over the runs (GNU time %M).")
print()
print("| case | hoist s | skopeo s | floor s | hoist/skopeo | hoist/floor | hoist peak RSS MiB | skopeo peak RSS MiB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for label in order:
    hm, _, hs, hr = summary(rows[label]["hoist"])
    sm, _, ss, sr = summary(rows[label]["skopeo"])
    fm, _, fs, _ = summary(rows[label]["floor"])
    ratio = f"{hm / sm:.2f}" if hm is not None and sm else "-"
    floor_ratio = f"{hm / fm:.2f}" if hm is not None and fm else "-"
    print(f"| {label} | {hs} | {ss} | {fs} | {ratio} | {floor_ratio} | {hr} | {sr} |")
print()
print("Notes:")
print("- Registries are local docker-registry (distribution) instances on 127.0.0.1, filesystem storage; "
      "layers are gzip'd random data, so nothing compresses or deduplicates.")
print("- Cold rows: a new destination repository (or a fresh OCI layout directory) every run. "
      "skopeo's blob-info cache (blob-info-cache-v1.boltdb/.sqlite) is deleted before every cold skopeo run, "
      "so it cannot mount blobs it saw in earlier runs; no-op rows keep it.")
print("- No-op rows: the destination already holds the image (pre-copied by the same tool); "
      "the tool still checks every blob and the manifest.")
print("- floor: registry B's own ingest, timed inside benches/ingest-floor.rs — the image already in memory, "
      "every blob at once on its own connection (monolithic POST + PUT ?digest=), then the manifest PUT, "
      "into a new repository every run. hoist/floor is how far hoist's whole run is from it.")
if hoist_note: print(f"- {hoist_note}.")
print(f"- {skopeo_version}" + (f"; {hoist_version}" if hoist_version else ""))
PY
