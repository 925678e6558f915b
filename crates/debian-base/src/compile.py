"""Byte-compiles a Debian base image's Python modules at build time.

Run by the image's own interpreter in the sandbox, over the image's root:
python3 -S -B -c <this> JOBS DIR... Every *.py under each DIR (links to
directories not followed, __pycache__ skipped) gets a hash-based .pyc
(PEP 552, unchecked: timestamps play no part) where the runtime imports it.
The work is split over JOBS forked workers; the bytes of a .pyc depend only
on its source, its path and the interpreter, not on the order.

A source the interpreter refuses (Python 2 test data in the standard
library) is left without bytecode, as py3compile leaves it. Anything else
(a full disk) is fatal: exit status 1.
"""

import os
import py_compile
import sys

MODE = py_compile.PycInvalidationMode.UNCHECKED_HASH


def sources(roots):
    found = []
    for root in roots:
        for top, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found.extend(os.path.join(top, n) for n in sorted(names) if n.endswith(".py"))
    return found


def work(paths):
    try:
        for path in paths:
            try:
                py_compile.compile(path, doraise=True, invalidation_mode=MODE)
            except py_compile.PyCompileError:
                pass
    except BaseException as e:  # noqa: BLE001 - any other failure fails the build
        sys.stderr.write("%s: %s\n" % (type(e).__name__, e))
        return 1
    return 0


def main():
    if sys.flags.hash_randomization:
        sys.exit("PYTHONHASHSEED must be 0: set literals would be written in a random order")
    jobs, roots = int(sys.argv[1]), sys.argv[2:]
    paths = sources(roots)
    jobs = max(1, min(jobs, len(paths)))
    workers = []
    for i in range(1, jobs):
        pid = os.fork()
        if pid == 0:
            os._exit(work(paths[i::jobs]))
        workers.append(pid)
    status = work(paths[0::jobs])
    for pid in workers:
        if os.waitpid(pid, 0)[1] != 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
