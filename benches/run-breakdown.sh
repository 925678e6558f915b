#!/usr/bin/env bash
# Where the time of a cached `hoist run` goes: runs it under
# `strace --seccomp-bpf` (only a handful of system calls stop the process),
# cuts each run at marker calls and prints the median of every phase.
#
#   benches/run-breakdown.sh IMAGE [CMD [ARGS...]]     (default CMD: /bin/true)
#
# IMAGE is what `hoist run` takes (a reference by digest, or oci:DIR[:TAG]);
# one untimed run first puts it in the cache.
#
# Phases and the calls that end them:
#   start        exec, dynamic loading, arguments, runtime: the cache lock
#   cache        cache open and image lookup: the cache lock released
#   sandbox      sweep, runtime spec, request: the launcher's vfork
#   launcher     launcher exec and request read: its unshare
#   bundle       launcher namespaces, overlay root, libcontainer's state
#                and config: libcontainer's first clone
#   container    libcontainer's processes, cgroups, namespaces and mounts:
#                the command's execve
#   command      the command itself: its exit_group
#   cleanup      reaping the init, cgroups, umounts, directories: the report
#   after        what the caller does after the report (waiting for the
#                launcher, releasing the image's pins): its exit_group
# The traced total is longer than an untraced run; the phases' shares are
# what this is for.
#
# Environment:
#   HOIST              hoist binary (default target/release/hoist)
#   HOIST_ARGS         extra global arguments for hoist
#   BENCH_CACHE_DIR    the --cache-dir (default: a temp dir, removed on exit)
#   BENCH_BREAKDOWN_RUNS  traced runs (default 20)
#   BENCH_KEEP=1       keep the temp dir (one strace log per run) on exit
#
# Needs: root (hoist run), strace 5.3 or later, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HOIST="${HOIST:-$ROOT/target/release/hoist}"
RUNS="${BENCH_BREAKDOWN_RUNS:-20}"
read -r -a HOIST_EXTRA <<<"${HOIST_ARGS:-}"

[[ $# -ge 1 ]] || { echo "usage: $0 IMAGE [CMD [ARGS...]]" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "run as root (hoist run needs it)" >&2; exit 1; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_BREAKDOWN_RUNS must be a positive integer" >&2; exit 1; }
command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }
[[ -x $HOIST ]] || { echo "no hoist binary at $HOIST (cargo build --release --bin hoist)" >&2; exit 1; }

IMAGE=$1
shift
CMD=("$@")
((${#CMD[@]})) || CMD=(/bin/true)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hoist-breakdown.XXXXXX")
trap '[[ -n ${BENCH_KEEP:-} ]] || rm -rf "$WORK"' EXIT
CACHE="${BENCH_CACHE_DIR:-$WORK/cache}"

run() { "$HOIST" ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} run "$IMAGE" --cache-dir "$CACHE" -- "${CMD[@]}"; }
run >/dev/null || { echo "the warm-up run failed" >&2; exit 1; }
for ((i = 0; i < RUNS; i++)); do
    strace --seccomp-bpf -f -ttt -qq -e signal=none \
        -e trace=execve,clone3,flock,unshare,write,exit_group \
        -o "$WORK/trace-$i" "$HOIST" ${HOIST_EXTRA[@]+"${HOIST_EXTRA[@]}"} \
        run "$IMAGE" --cache-dir "$CACHE" -- "${CMD[@]}" >/dev/null
done

python3 - "$WORK" "$RUNS" "$HOIST" <<'PY'
import re, statistics, sys
work, runs, hoist = sys.argv[1], int(sys.argv[2]), sys.argv[3]
PHASES = ["start", "cache", "sandbox", "launcher", "bundle", "container",
          "command", "cleanup", "after"]

def marks(path):
    events = []
    for line in open(path):
        m = re.match(r"(\d+)\s+(\d+\.\d+) (.*)", line)
        if m:
            events.append((int(m[1]), float(m[2]), m[3]))
    main, t0 = events[0][0], events[0][1]
    found = {}
    def first(name, test, after=0.0):
        for pid, t, call in events:
            if t >= after and test(pid, call):
                found[name] = t
                return t
        raise ValueError(f"no marker for {name}")
    t = first("start", lambda p, c: c.startswith("flock(") and "LOCK_EX" in c)
    t = first("cache", lambda p, c: c.startswith("flock(") and "LOCK_UN" in c, t)
    t = first("sandbox", lambda p, c: c.startswith("clone3(") and "CLONE_VFORK" in c, t)
    launcher = next(p for p, _, c in events if c.startswith("execve(") and "__sandbox-launch" in c)
    t = first("launcher", lambda p, c: p == launcher and c.startswith("unshare("), t)
    t = first("bundle", lambda p, c: p == launcher and c.startswith("clone3("), t)
    cmd_pid = [p for p, _, c in events if c.startswith("execve(") and hoist not in c.split(",")[0]][-1]
    t = first("container", lambda p, c: p == cmd_pid and c.startswith("execve("), t)
    t = first("command", lambda p, c: p == cmd_pid and c.startswith("exit_group("), t)
    t = first("cleanup", lambda p, c: p == launcher and c.startswith("write(") and '{\\"' in c, t)
    first("after", lambda p, c: p == main and c.startswith("exit_group("), t)
    out, prev = {}, t0
    for name in PHASES:
        out[name] = (found[name] - prev) * 1000
        prev = found[name]
    out["total"] = (prev - t0) * 1000
    return out

samples = []
for i in range(runs):
    try:
        samples.append(marks(f"{work}/trace-{i}"))
    except (ValueError, IndexError, StopIteration) as e:
        print(f"run {i}: {e}", file=sys.stderr)
if not samples:
    sys.exit("no run could be cut into phases")
print(f"hoist run phases, median ms of {len(samples)} traced runs:")
print()
print("| phase | ms |")
print("|---|---:|")
for name in PHASES + ["total"]:
    print(f"| {name} | {statistics.median(s[name] for s in samples):.2f} |")
PY
