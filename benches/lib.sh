# shellcheck shell=bash
# Helpers shared by the benchmark scripts in this directory. Sourced, not run:
# it defines functions and constants only. The caller sets ROOT (the
# repository) and runs under `set -euo pipefail`.
#
# Globals the helpers set for the caller: HOIST, HOIST_NOTE (find_hoist);
# CRUN, CRUN_WRAPPER (find_crun);
# WORK, RESULTS (setup_workspace); REG_PORT, REG_LOG (start_registry);
# T_SEC, T_RSS (timed).
# shellcheck disable=SC2034  # those globals are read by the sourcing script

# Accept header for manifest requests: OCI and Docker manifests and indexes.
MANIFEST_ACCEPT='application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json'
# skopeo copy between loopback registries and layouts (plain HTTP, no policy).
SKOPEO=(skopeo --insecure-policy copy --quiet --src-tls-verify=false --dest-tls-verify=false)
# skopeo's blob-info cache (root's and the user's): it lets skopeo mount blobs
# it has seen in other repositories of a registry instead of uploading them.
SKOPEO_CACHES=(
    /var/lib/containers/cache/blob-info-cache-v1.boltdb
    /var/lib/containers/cache/blob-info-cache-v1.sqlite
    "${XDG_DATA_HOME:-$HOME/.local/share}/containers/cache/blob-info-cache-v1.boltdb"
    "${XDG_DATA_HOME:-$HOME/.local/share}/containers/cache/blob-info-cache-v1.sqlite"
)
REG_PIDS=()

# log MESSAGE...: a timestamped line on stderr
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# die MESSAGE...: log an error and exit 1
die() { log "error: $*"; exit 1; }

# require_tools TOOL...: die unless every TOOL is on PATH
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool not found (scripts/install-test-deps installs most tools)"
    done
}
# require_root WHY: die unless running as root; WHY says what needs it
require_root() { [[ $(id -u) == 0 ]] || die "run as root ($1)"; }
# require_positive KNOB VALUE: die unless VALUE is a positive integer
require_positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer"; }
# require_count KNOB VALUE: die unless VALUE is a non-negative integer
require_count() { [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer"; }

# find_hoist VERB FALLBACK NOTE: set HOIST (from $HOIST, else the release build, built if missing; empty with BENCH_SKIP_HOIST=1 or when `hoist VERB --help` fails) and HOIST_NOTE
find_hoist() {
    local verb=$1 fallback=$2 note=$3
    HOIST_NOTE=""
    if [[ ${BENCH_SKIP_HOIST:-0} == 1 ]]; then
        HOIST=""
        HOIST_NOTE="hoist skipped (BENCH_SKIP_HOIST=1)"
        return 0
    fi
    if [[ -z ${HOIST:-} ]]; then
        HOIST="${CARGO_TARGET_DIR:-$ROOT/target}/release/hoist"
        if [[ ! -x $HOIST ]]; then
            log "building hoist: cargo build --release --bins"
            (cd "$ROOT" && cargo build --release --bins) >&2 || die "cargo build failed"
        fi
    fi
    [[ -x $HOIST ]] || die "HOIST=$HOIST is not executable"
    if ! "$HOIST" "$verb" --help >/dev/null 2>&1; then
        log "warning: '$HOIST $verb --help' fails; $fallback"
        HOIST_NOTE="hoist at $HOIST $note"
        HOIST=""
    fi
}
# hoist_version -> hoist's version line, or nothing without a hoist
hoist_version() {
    if [[ -n $HOIST ]]; then "$HOIST" --version 2>/dev/null | head -n1 || true; fi
}

# base_image KIND -> oci:DIR:TAG of testkit's KIND base image (built once per machine)
base_image() {
    (cd "$ROOT" && cargo run -q --release -p testkit --example base-image -- "$1") ||
        die "could not build the $1 base image"
}

# setup_workspace PREFIX [HOOK]: make WORK (temp dir PREFIX.XXXXXX in BENCH_TMPDIR) with an empty RESULTS file; on exit run HOOK, stop the registries, remove WORK unless BENCH_KEEP=1
setup_workspace() {
    BENCH_CLEANUP_HOOK=${2:-}
    WORK="$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/$1.XXXXXX")"
    trap cleanup_workspace EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    RESULTS="$WORK/results.tsv"
    : >"$RESULTS"
}
# cleanup_workspace: the EXIT trap of setup_workspace
cleanup_workspace() {
    local pid
    if [[ -n $BENCH_CLEANUP_HOOK ]]; then "$BENCH_CLEANUP_HOOK"; fi
    for pid in ${REG_PIDS[@]+"${REG_PIDS[@]}"}; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in ${REG_PIDS[@]+"${REG_PIDS[@]}"}; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}

# drop_skopeo_cache: delete skopeo's blob-info cache, so it cannot mount blobs it saw earlier
drop_skopeo_cache() { rm -f "${SKOPEO_CACHES[@]}"; }

# free_port -> a TCP port on 127.0.0.1 that is free right now
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_registry NAME [ACCESS_LOG]: start a docker-registry on 127.0.0.1 with storage in $WORK/registry-NAME, its access log on with ACCESS_LOG=on (default off); sets REG_PORT and REG_LOG (its log file)
start_registry() {
    local name=$1 access_disabled=true port dir i pid _
    [[ ${2:-off} == on ]] && access_disabled=false
    dir="$WORK/registry-$name"
    mkdir -p "$dir/storage"
    for i in 1 2 3 4 5; do
        port=$(free_port)
        cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: $access_disabled
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
EOF
        docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
        pid=$!
        REG_PIDS+=("$pid")
        for _ in $(seq 1 100); do
            if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
                REG_PORT=$port
                REG_LOG="$dir/log"
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null || true
        log "registry $name did not come up on port $port (attempt $i); log:"
        tail -n 5 "$dir/log" >&2 || true
    done
    die "could not start registry $name"
}

# get_manifest HOST:PORT REPO REF -> the manifest JSON (fails if there is none)
get_manifest() {
    curl -fsS -H "Accept: $MANIFEST_ACCEPT" "http://$1/v2/$2/manifests/$3"
}
# manifest_digest HOST:PORT REPO TAG -> digest of the manifest, or nothing
manifest_digest() {
    curl -fsS -I -H "Accept: $MANIFEST_ACCEPT" "http://$1/v2/$2/manifests/$3" 2>/dev/null |
        tr -d '\r' | awk 'tolower($1)=="docker-content-digest:" {print $2}'
}
# check_registry_copy HOST:PORT REPO TAG WANT_DIGEST: the tag names WANT_DIGEST and every blob it refers to is there
check_registry_copy() {
    local got d
    got=$(manifest_digest "$1" "$2" "$3")
    [[ $got == "$4" ]] || { log "check: $1/$2:$3 has manifest '${got:-none}', want $4"; return 1; }
    for d in $(get_manifest "$1" "$2" "$4" | jq -r '.config.digest, .layers[].digest'); do
        curl -fsS -I -o /dev/null "http://$1/v2/$2/blobs/$d" ||
            { log "check: blob $d missing in $1/$2"; return 1; }
    done
}

# timed CMD...: run CMD (a command or a function) with its output in $WORK/cmd.out, set T_SEC (wall seconds); with TIMED_RSS=1 also T_RSS (peak KiB, via GNU time at $GNU_TIME); logs the output's tail on failure
timed() {
    local t0 t1 rc=0
    t0=$EPOCHREALTIME
    if [[ ${TIMED_RSS:-0} == 1 ]]; then
        "$GNU_TIME" -f %M -o "$WORK/rss" "$@" >"$WORK/cmd.out" 2>&1 || rc=$?
    else
        "$@" >"$WORK/cmd.out" 2>&1 || rc=$?
    fi
    t1=$EPOCHREALTIME
    T_SEC=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    if [[ ${TIMED_RSS:-0} == 1 ]]; then T_RSS=$(tail -n1 "$WORK/rss"); fi
    if ((rc != 0)); then
        log "command failed (exit $rc): $*"
        sed 's/^/    /' "$WORK/cmd.out" | tail -n 20 >&2
        return "$rc"
    fi
}

# record ROW TOOL VALUE...: append a tab-separated line to $RESULTS
record() {
    local IFS=$'\t'
    printf '%s\n' "$*" >>"$RESULTS"
}

# find_crun: set CRUN, the command that runs crun here, and CRUN_WRAPPER, the
# same wrapper running `true` (its own cost), empty when none is needed.
# crun cannot use a hybrid cgroup hierarchy: the v2 mount is hidden from it.
find_crun() {
    if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
        CRUN=(unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; exec crun "$@"' sh)
        CRUN_WRAPPER=(unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; exec true' sh)
    else
        CRUN=(crun)
        CRUN_WRAPPER=()
    fi
}

# adjust_config IN OUT ROOTFS ARGS_JSON [IO_DIR]: the bundle config for the
# sandbox hoist makes: uid/gid 1000, no capabilities, no new privileges,
# Docker's seccomp profile, masked /proc paths, read-only root, a 512m /tmp,
# its own network namespace, 2g memory, 2 CPUs, 256 pids. ARGS_JSON `null`
# keeps the image's command, working directory and environment (as `hoist
# invoke` runs it); IO_DIR, when given, is bind-mounted as /io.
adjust_config() {
    jq --arg rootfs "$3" --argjson args "$4" --arg io "${5:-}" \
        --slurpfile seccomp "$ROOT/crates/sandbox-run/src/seccomp.json" '
        .process.terminal = false
        | .process.noNewPrivileges = true
        | .linux.seccomp = $seccomp[0]
        | .linux.maskedPaths = ["/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore",
            "/proc/keys", "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi",
            "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware"]
        | .linux.readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        | if $args == null then . else
            .process.args = $args
            | .process.cwd = "/"
            | .process.env = ([.process.env[] | select(startswith("HOME=") | not)] + ["HOME=/tmp"])
          end
        | .process.user = {uid: 1000, gid: 1000}
        | .process.capabilities = {}
        | .root = {path: $rootfs, readonly: true}
        | .mounts = ([.mounts[] | select(.destination != "/tmp")]
            + [{destination: "/tmp", type: "tmpfs", source: "tmpfs",
                options: ["nosuid", "nodev", "mode=1777", "size=512m"]}]
            + (if $io == "" then [] else [{destination: "/io", type: "bind", source: $io,
                options: ["rbind", "rw", "nosuid", "nodev", "noexec"]}] end))
        | .linux.namespaces = ([.linux.namespaces[] | select(.type != "network")] + [{type: "network"}])
        | .linux.resources.memory = {limit: 2147483648}
        | .linux.resources.cpu = {quota: 200000, period: 100000}
        | .linux.resources.pids = {limit: 256}' "$1" >"$2"
}

# setup_buildah BASE_REF: buildah with private storage in $WORK (the
# machine's images are untouched) that has pulled BASE_REF; sets BUILDAH
# (the command), DRIVER (BUILDAH_DRIVER, default overlay; vfs when that
# cannot pull) and BASE_ID. Register drop_buildah_storage as the cleanup.
BUILDAH=()
setup_buildah() {
    local driver
    DRIVER="${BUILDAH_DRIVER:-overlay}"
    for driver in "$DRIVER" vfs; do
        BUILDAH=(buildah --root "$WORK/buildah-$driver/root" --runroot "$WORK/buildah-$driver/run" --storage-driver "$driver")
        if "${BUILDAH[@]}" pull --quiet --tls-verify=false "$1" >"$WORK/base-id" 2>"$WORK/pull.err"; then
            DRIVER=$driver
            break
        fi
        log "buildah with the $driver driver cannot pull the base:"
        sed 's/^/    /' "$WORK/pull.err" >&2
        [[ $driver == vfs ]] && die "buildah does not work here"
    done
    BASE_ID=$(tail -n1 "$WORK/base-id")
    log "buildah storage driver: $DRIVER (base image $BASE_ID)"
}
# drop_buildah_images: every image but the base, and every working container
drop_buildah_images() {
    local id
    "${BUILDAH[@]}" rm --all >/dev/null
    for id in $("${BUILDAH[@]}" images --all --noheading --no-trunc --quiet); do
        [[ ${id#sha256:} == "${BASE_ID#sha256:}" ]] && continue
        "${BUILDAH[@]}" rmi --force "$id" >/dev/null 2>&1 || true
    done
}
# drop_buildah_storage: remove the containers and images of the private
# storage (unmounts what it mounted)
drop_buildah_storage() {
    if ((${#BUILDAH[@]})); then
        "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
        "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
    fi
}
