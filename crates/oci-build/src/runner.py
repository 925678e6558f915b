"""Runs a hoist function: /io/inputs.json -> handler(inputs) -> /io/output.json.

On success output.json holds the handler's result (a JSON object). On any
failure (unreadable inputs, import error, exception, a result that is not a
JSON-serialisable dict) it holds {"error": {"type", "message", "traceback"}},
the same error goes to stderr, and the exit status is 1. output.json is
written to a temporary file in /io and renamed, so a reader never sees half
of it.

With --serve it is a warm sandbox's server (see hoist's sandbox-run, `Warm`):
standard input is a SOCK_SEQPACKET socket to the host. It imports the
function once (its module-level code runs once per sandbox, as on other
function platforms), says "ready", then for every "run" message, which
carries the task's standard output and error, forks a child that runs the
task as above; when the child ends it kills every other process of the
container (it is pid 1 of the container's pid namespace), reaps them, and
answers "exit CODE" or "signal NUMBER". The host gives each task a fresh
/io and an empty /tmp, and checks that nothing but this server is left.
"""

import json
import os
import site
import sys
import tempfile
import traceback

IO_DIR = "/io"
INPUTS = os.path.join(IO_DIR, "inputs.json")
OUTPUT = os.path.join(IO_DIR, "output.json")
FUNCTION_DIR = "/opt/hoist/function"
SITE_PACKAGES = "/opt/hoist/site-packages"


def write_output(payload):
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=".output-", suffix=".json", dir=IO_DIR)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, OUTPUT)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load_paths():
    # addsitedir (not only PYTHONPATH) so that .pth files of installed
    # packages are honoured.
    if FUNCTION_DIR not in sys.path:
        site.addsitedir(SITE_PACKAGES)
        sys.path.insert(0, FUNCTION_DIR)


def run():
    with open(INPUTS, encoding="utf-8") as f:
        inputs = json.load(f)
    if not isinstance(inputs, dict):
        raise TypeError("inputs.json must hold a JSON object, not %s" % type(inputs).__name__)
    load_paths()
    import user_function

    handler = getattr(user_function, "handler", None)
    if not callable(handler):
        raise TypeError("user_function.py defines no callable handler(inputs)")
    result = handler(inputs)
    if not isinstance(result, dict):
        raise TypeError("handler must return a dict, not %s" % type(result).__name__)
    # Serialise before writing so a bad result becomes a structured error.
    json.dumps(result, allow_nan=False)
    write_output(result)


def main():
    try:
        run()
    except BaseException as e:  # noqa: BLE001 - every failure is reported
        error = {
            "type": type(e).__name__,
            "message": str(e),
            "traceback": traceback.format_exc(),
        }
        sys.stderr.write(json.dumps({"error": error}) + "\n")
        try:
            write_output({"error": error})
        except BaseException as write_error:  # noqa: BLE001
            sys.stderr.write("cannot write %s: %s\n" % (OUTPUT, write_error))
        return 1
    return 0


def run_task(ctl, fds):
    """The child's side of one task: never returns."""
    code = 1
    try:
        ctl.detach()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in [null] + list(fds):
            os.close(fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = main()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - the task is over either way
                pass
        os._exit(code)


def end_task(pid):
    """Waits for the task's child, kills and reaps everything else."""
    _, status = os.waitpid(pid, 0)
    # kill(-1) spares only the caller when the caller is a pid namespace's
    # init: anywhere else it would reach every process of the user.
    if os.getpid() == 1:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    if os.WIFSIGNALED(status):
        return b"signal %d" % os.WTERMSIG(status)
    return b"exit %d" % os.waitstatus_to_exitcode(status)


def serve():
    ctl = socket.socket(fileno=0)
    load_paths()
    try:
        import user_function  # noqa: F401 - imported once, used by every task
    except BaseException:  # noqa: BLE001 - each task imports it again and reports why
        pass
    ctl.send(b"ready")
    while True:
        msg, fds, _, _ = socket.recv_fds(ctl, 64, 2)
        if not msg:
            return 0
        if msg != b"run" or len(fds) != 2:
            return 1
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            run_task(ctl, fds)
        for fd in fds:
            os.close(fd)
        ctl.send(end_task(pid))


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        import signal
        import socket

        sys.exit(serve())
    sys.exit(main())
