"""Runs a hoist function: /io/inputs.json -> handler(inputs) -> /io/output.json.

On success output.json holds the handler's result (a JSON object). On any
failure (unreadable inputs, import error, exception, a result that is not a
JSON-serialisable dict) it holds {"error": {"type", "message", "traceback"}},
the same error goes to stderr, and the exit status is 1. output.json is
written to a temporary file in /io and renamed, so a reader never sees half
of it.
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


def run():
    with open(INPUTS, encoding="utf-8") as f:
        inputs = json.load(f)
    if not isinstance(inputs, dict):
        raise TypeError("inputs.json must hold a JSON object, not %s" % type(inputs).__name__)
    # addsitedir (not only PYTHONPATH) so that .pth files of installed
    # packages are honoured.
    site.addsitedir(SITE_PACKAGES)
    sys.path.insert(0, FUNCTION_DIR)
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


if __name__ == "__main__":
    sys.exit(main())
