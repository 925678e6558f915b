"""Byte-compiles the modules of an image at build time (function images'
code and dependencies, Debian base images' standard library).

Run by the image's own interpreter in the sandbox, over the image's
layers: python3 -S -B -c <this> JOBS DIR... Every *.py under each DIR (links
not followed, __pycache__ skipped) gets a hash-based .pyc (PEP 552,
unchecked: timestamps play no part) in its __pycache__, as the runtime
imports it. The work is split over JOBS forked workers; the bytes of a .pyc
depend only on its source, its path and the interpreter, not on the order.

A source the interpreter refuses (a syntax error, a module for another
Python version, Python 2 test data in a standard library) is left without
bytecode, as pip, compileall and py3compile leave it.
Anything else (a full disk, an unreadable file) is fatal: exit status 1.

The compile itself is what py_compile.compile does, with the importlib
internals it calls (present since 3.7, which brought hash-based .pyc):
those are loaded at every start, while importing py_compile (enum,
traceback, re...) would cost more than compiling a small function. A
Python without them uses py_compile.
"""

import os
import sys

try:
    import _imp
    from importlib._bootstrap_external import (
        _RAW_MAGIC_NUMBER,
        SourceFileLoader,
        _calc_mode,
        _code_to_hash_pyc,
        _write_atomic,
        cache_from_source,
    )

    def compile_one(path):
        loader = SourceFileLoader("<hoist>", path)
        source = loader.get_data(path)
        try:
            code = loader.source_to_code(source, path)
        except Exception:  # noqa: BLE001 - what py_compile turns into PyCompileError
            return
        data = _code_to_hash_pyc(code, _imp.source_hash(_RAW_MAGIC_NUMBER, source), False)
        cfile = cache_from_source(path)
        os.makedirs(os.path.dirname(cfile), exist_ok=True)
        _write_atomic(cfile, data, _calc_mode(path))

except ImportError:
    import py_compile

    def compile_one(path):
        mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
        try:
            py_compile.compile(path, doraise=True, invalidation_mode=mode)
        except py_compile.PyCompileError:
            pass


def sources(roots):
    found = []
    for root in roots:
        for top, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found.extend(os.path.join(top, n) for n in sorted(names) if n.endswith(".py"))
    return found


def work(paths):
    """Compiles `paths`; returns the exit status."""
    try:
        for path in paths:
            compile_one(path)
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
