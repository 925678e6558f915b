"""Byte-compiles the modules of a hoist function image at build time.

Run by the base image's own interpreter in the sandbox, over the image's
layers: python3 -S -B -c <this> JOBS DIR... Every *.py under each DIR (links
not followed, __pycache__ skipped) gets a hash-based .pyc (PEP 552,
unchecked: timestamps play no part) in its __pycache__, as the runtime
imports it. The work is split over JOBS forked workers; the bytes of a .pyc
depend only on its source, its path and the interpreter, not on the order.

A source the interpreter refuses (a syntax error, a module for another
Python version) is left without bytecode, as pip and compileall leave it.
Anything else (a full disk, an unreadable file) is fatal: exit status 1.
"""

import os
import py_compile
import sys
import traceback


def sources(roots):
    found = []
    for root in roots:
        for top, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found.extend(os.path.join(top, n) for n in sorted(names) if n.endswith(".py"))
    return found


def compile_all(paths):
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    for path in paths:
        try:
            py_compile.compile(path, doraise=True, invalidation_mode=mode)
        except py_compile.PyCompileError:
            pass


def main():
    if sys.flags.hash_randomization:
        sys.exit("PYTHONHASHSEED must be 0: set literals would be written in a random order")
    jobs, roots = int(sys.argv[1]), sys.argv[2:]
    paths = sources(roots)
    workers = []
    for i in range(1, jobs):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                compile_all(paths[i::jobs])
            except BaseException:  # noqa: BLE001 - any failure fails the build
                traceback.print_exc()
                status = 1
            os._exit(status)
        workers.append(pid)
    status = 0
    try:
        compile_all(paths[0::jobs])
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        status = 1
    for pid in workers:
        _, code = os.waitpid(pid, 0)
        if code != 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
