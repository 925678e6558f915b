#!/usr/bin/env bash
# Benchmark the platform's paths through HTTP, beside crun, in one run.
#
# Starts `hoist serve` (the API and a worker in one process on its embedded
# defaults; the per-key rate limit lifted) on a fresh data directory with
# testkit's Python 3.11 base, then
# measures, with curl as the client:
#   (a) submission to image: POST /v1/functions of a hello function until
#       its build is `completed` — first on a fresh server (the base is
#       stored, bytecode compiled), then a code-only change, then new
#       requirements (`six`, resolved and fetched from PyPI);
#   (b) invocation latency: BENCH_RUNS sequential `POST .../invoke?wait=60
#       &cache=false` of the cached image, p50 and p99 of curl's total
#       time: in a warm sandbox (the worker's default), and after a restart
#       with `--warm 0` (a container per request); and with the result
#       cache on (identical inputs: answered without a run);
#   (c) throughput: BENCH_TASKS invocations (cache off) sent
#       BENCH_CONCURRENCY at a time, tasks per second;
#   (d) the peer: `crun run` of `python3 -c pass` from the same image
#       (umoci-unpacked from the server's layout, config adjusted to the
#       same sandbox), BENCH_RUNS times, p50 and p99;
#   (e) the seeds' approach, when Debian's docker.io is installed: a
#       private dockerd (no systemd needed) gets the same image through
#       skopeo, and `docker run --rm` with the seeds' flags (--network
#       none --read-only --tmpfs /tmp:size=512m --memory 2g --cpus 2
#       --cap-drop ALL, and a tmpfs /io) runs the function on one input
#       (written and read back with shell builtins: the image has no
#       coreutils), BENCH_RUNS times. BENCH_DOCKER=0 skips it.
# The design's goal for (b): p50 ≤ 50 ms and no slower than (d).
#
# Environment:
#   HOIST               hoist binary (default target/release/hoist, built if missing)
#   BENCH_PYTHON_BASE   oci:DIR:TAG of the base (default: testkit's)
#   BENCH_RUNS          sequential requests in (b) and runs in (d) (default 30)
#   BENCH_TASKS         invocations in (c) (default 60)
#   BENCH_CONCURRENCY   requests in flight in (c) (default 4)
#   BENCH_TMPDIR, BENCH_KEEP=1  as in the other scripts
#
# Needs: root, curl, jq, umoci, crun, unshare, python3; for (e) docker.io and skopeo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$ROOT/benches/lib.sh"
RUNS="${BENCH_RUNS:-30}"
TASKS="${BENCH_TASKS:-60}"
CONCURRENCY="${BENCH_CONCURRENCY:-4}"

require_tools curl jq umoci crun unshare python3
require_root "the sandbox and crun need it"
require_positive BENCH_RUNS "$RUNS"
require_positive BENCH_TASKS "$TASKS"
require_positive BENCH_CONCURRENCY "$CONCURRENCY"
BENCH_SKIP_HOIST=0 find_hoist serve "cannot benchmark the platform" "has no \`serve\` verb"
[[ -n $HOIST ]] || die "$HOIST_NOTE"
PYTHON_BASE="${BENCH_PYTHON_BASE:-$(base_image python)}"
find_crun

SERVER=""
DOCKERD=""
stop_all() {
    stop_server
    if [[ -n $DOCKERD ]]; then
        kill "$DOCKERD" 2>/dev/null || true
        wait "$DOCKERD" 2>/dev/null || true
    fi
}
stop_server() {
    if [[ -n $SERVER ]]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
        SERVER=""
    fi
    crun --root "$WORK/crun-state" delete -f bench-peer >/dev/null 2>&1 || true
}
setup_workspace hoist-bench-invoke stop_all

# start_server [FLAGS...]: (re)starts hoist serve on the one data directory
start_server() {
    stop_server
    : >"$WORK/serve.log"
    "$HOIST" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 --base "$PYTHON_BASE" \
        --prewarm 0 --rate 10000 --burst 10000 "$@" >"$WORK/serve.log" 2>&1 &
    SERVER=$!
    URL=""
    for _ in $(seq 200); do
        URL=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -n1 || true)
        [[ -n $URL ]] && break
        kill -0 "$SERVER" 2>/dev/null || die "hoist serve exited: $(tail -n 5 "$WORK/serve.log")"
        sleep 0.05
    done
    [[ -n $URL ]] || die "hoist serve did not start"
    KEY=$(cat "$WORK/data/api-key")
}
log "starting hoist serve"
start_server

# api METHOD PATH [CURL ARGS...] -> the body
api() {
    local method=$1 path=$2
    shift 2
    curl -sS --fail-with-body -X "$method" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' "$URL$path" "$@"
}

# submit VERSION CODE [REQUIREMENTS]: sets SUBMIT_SEC (seconds from POST to
# `completed`), FUNCTION and IMAGE
submit() {
    local body t0 build status
    body=$(jq -n --arg v "$1" --arg code "$2" --arg reqs "${3:-}" \
        '{name: "hello", version: $v, code: $code} + (if $reqs == "" then {} else {requirements: $reqs} end)')
    t0=$EPOCHREALTIME
    build=$(api POST /v1/functions -d "$body")
    FUNCTION=$(jq -r .function_id <<<"$build")
    while :; do
        status=$(api GET "/v1/builds/$(jq -r .build_id <<<"$build")")
        case $(jq -r .status <<<"$status") in
            completed) break ;;
            failed | cancelled) die "build: $status" ;;
        esac
        sleep 0.05
    done
    IMAGE=$(jq -r .image_url <<<"$status")
    SUBMIT_SEC=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
}

CODE='def handler(inputs):
    return {"hello": inputs.get("name", "world")}
'
log "(a) submission to image"
submit 1.0.0 "$CODE"
FIRST=$SUBMIT_SEC
submit 1.0.1 "${CODE}# a code-only change
"
SECOND=$SUBMIT_SEC
submit 1.0.2 "import six
${CODE}" "six==1.17.0"
THIRD=$SUBMIT_SEC
log "    first build ${FIRST} s, code-only change ${SECOND} s, new requirements ${THIRD} s"
submit 1.0.3 "$CODE"

# invoke_once CACHE NAME -> curl's total seconds; dies unless completed
invoke_once() {
    local out
    out=$(api POST "/v1/functions/$FUNCTION/invoke?wait=60&cache=$1" \
        -d "{\"inputs\": {\"name\": \"$2\"}}" -w '\n%{time_total}')
    jq -e '.status == "completed"' <<<"$(head -n1 <<<"$out")" >/dev/null ||
        die "invoke: $out"
    tail -n1 <<<"$out"
}

log "(b) invocation latency, $RUNS sequential requests, warm sandboxes"
invoke_once false warmup >/dev/null
: >"$WORK/run.txt"
for ((i = 0; i < RUNS; i++)); do invoke_once false "n$i" >>"$WORK/run.txt"; done
invoke_once true cached >/dev/null
: >"$WORK/cached.txt"
for ((i = 0; i < RUNS; i++)); do invoke_once true cached >>"$WORK/cached.txt"; done

log "(c) throughput: $TASKS invocations, $CONCURRENCY at a time"
export -f api invoke_once die log
export URL KEY FUNCTION
T0=$EPOCHREALTIME
seq "$TASKS" | xargs -P "$CONCURRENCY" -I{} bash -c 'invoke_once false t{} >/dev/null'
THROUGHPUT=$(awk -v a="$T0" -v b="$EPOCHREALTIME" -v n="$TASKS" 'BEGIN { printf "%.1f", n / (b - a) }')

log "(b) again after a restart with --warm 0: a container per request"
start_server --warm 0
invoke_once false warmup >/dev/null
: >"$WORK/cold.txt"
for ((i = 0; i < RUNS; i++)); do invoke_once false "c$i" >>"$WORK/cold.txt"; done
stop_server

log "(d) crun: python3 -c pass from the same image"
umoci unpack --image "${IMAGE#oci:}" "$WORK/bundle" >/dev/null
adjust_config "$WORK/bundle/config.json" "$WORK/bundle/config.adjusted" rootfs \
    '["python3", "-c", "pass"]'
mv "$WORK/bundle/config.adjusted" "$WORK/bundle/config.json"
: >"$WORK/crun.txt"
for ((i = 0; i <= RUNS; i++)); do
    timed "${CRUN[@]}" --root "$WORK/crun-state" run --bundle "$WORK/bundle" bench-peer ||
        die "crun failed"
    # The first run warms the page cache, as the warm-up request did.
    ((i > 0)) && echo "$T_SEC" >>"$WORK/crun.txt"
done

: >"$WORK/docker.txt"
if [[ ${BENCH_DOCKER:-1} == 1 ]] && command -v dockerd >/dev/null && command -v docker >/dev/null &&
    command -v skopeo >/dev/null; then
    log "(e) docker run of the function with the seeds' flags"
    DOCKER_HOST="unix://$WORK/docker.sock"
    export DOCKER_HOST
    dockerd --host "$DOCKER_HOST" --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" \
        --pidfile "$WORK/docker.pid" --iptables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
    DOCKERD=$!
    for _ in $(seq 300); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD" 2>/dev/null || die "dockerd exited: $(tail -n 5 "$WORK/dockerd.log")"
        sleep 0.1
    done
    docker info >/dev/null 2>&1 || die "dockerd did not start"
    skopeo copy -q --dest-daemon-host "$DOCKER_HOST" "$IMAGE" docker-daemon:hoist-bench/hello:v1 ||
        die "skopeo could not load the image into docker"
    DOCKER_RUN=(docker run --rm --network none --read-only --tmpfs /tmp:size=512m
        --tmpfs /io:size=64m --memory 2g --cpus 2 --cap-drop ALL hoist-bench/hello:v1
        sh -c 'echo "{\"name\": \"docker\"}" >/io/inputs.json && python3 /opt/hoist/runner.py &&
            { read -r out || true; } </io/output.json && echo "$out"')
    for ((i = 0; i <= RUNS; i++)); do
        timed "${DOCKER_RUN[@]}" || die "docker run failed"
        ((i > 0)) && echo "$T_SEC" >>"$WORK/docker.txt"
    done
    "${DOCKER_RUN[@]}" | grep -q '"hello": "docker"' || die "docker run gave no output"
fi

python3 - "$WORK" "$FIRST" "$SECOND" "$THIRD" "$THROUGHPUT" "$TASKS" "$CONCURRENCY" <<'EOF'
import statistics, sys
work, first, second, third, throughput, tasks, conc = sys.argv[1:]
def load(name):
    return sorted(float(x) * 1000 for x in open(f"{work}/{name}.txt").read().split())
def pct(v, p):
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]
run, cold, cached, crun = load("run"), load("cold"), load("cached"), load("crun")
print("| path | p50 ms | p99 ms |")
print("|---|---:|---:|")
print(f"| invoke through HTTP, warm sandbox | {statistics.median(run):.1f} | {pct(run, 99):.1f} |")
print(f"| invoke through HTTP, a container per request (--warm 0) | {statistics.median(cold):.1f} | {pct(cold, 99):.1f} |")
print(f"| invoke through HTTP, result cache hit | {statistics.median(cached):.1f} | {pct(cached, 99):.1f} |")
print(f"| crun run python3 -c pass, same image | {statistics.median(crun):.1f} | {pct(crun, 99):.1f} |")
docker = load("docker")
if docker:
    print(f"| docker run --rm of the function, the seeds' flags | {statistics.median(docker):.1f} | {pct(docker, 99):.1f} |")
print()
print(f"warm invoke p50 / crun p50: {statistics.median(run) / statistics.median(crun):.2f}")
print(f"cold invoke p50 / crun p50: {statistics.median(cold) / statistics.median(crun):.2f}")
if docker:
    print(f"warm invoke p50 / docker p50: {statistics.median(run) / statistics.median(docker):.3f}")
print(f"throughput: {throughput} tasks/s ({tasks} invocations, {conc} in flight, 2 cores)")
print(f"submission to image: first build {first} s, code-only change {second} s, new requirements {third} s")
EOF
