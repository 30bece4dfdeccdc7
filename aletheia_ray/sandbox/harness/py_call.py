"""Sandbox driver for call tests: call ``entry_point`` on each input, stream tagged results.

stdin: one JSON object {"entry_point": str, "inputs": [[args...], ...]}. Each result is one JSON
line on the original stdout: {"i", "ok", "value"} or {"i", "ok": false, "error"}; the program's
own prints go to stderr. Values are tagged by exact type so the host compares them (an object
with an always-true __eq__ comes back as "other" and cannot match a plain value).
"""
import copy
import json
import os
import sys
import time
import traceback

MAX_INT_DIGITS = 4000


def encode(value, depth=0):
    if depth > 200:
        raise RecursionError("value nested deeper than 200 levels")
    kind = type(value)
    if value is None:
        return ["none"]
    if kind is bool:
        return ["bool", value]
    if kind is int:
        return ["int", value] if value.bit_length() < MAX_INT_DIGITS * 3 else ["bigint", hex(value)]
    if kind is float:
        return ["float", repr(value)]
    if kind is complex:
        return ["complex", repr(value.real), repr(value.imag)]
    if kind is str:
        return ["str", value]
    if kind is bytes:
        return ["bytes", value.hex()]
    if kind in (list, tuple, set, frozenset):
        items = [encode(item, depth + 1) for item in value]
        return [kind.__name__, items]
    if kind is dict:
        return ["dict", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    try:
        text = repr(value)[:200]
    except BaseException:  # noqa: BLE001
        text = "<repr failed>"
    return ["other", f"{kind.__module__}.{kind.__qualname__}", text]


def main() -> None:
    job = json.loads(sys.stdin.buffer.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    results = os.dup(1)
    os.dup2(2, 1)
    write, dumps, clock = os.write, json.dumps, time.perf_counter

    def emit(record):
        write(results, (dumps(record) + "\n").encode())

    path = sys.argv[1]
    sys.argv = [path]
    sys.path[0] = os.path.dirname(path)
    namespace = {"__name__": "__aletheia_solution__", "__file__": path,
                 "__builtins__": __builtins__}
    try:
        with open(path, "rb") as fh:
            exec(compile(fh.read(), path, "exec"), namespace)
        func = namespace[job["entry_point"]]
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc()
        emit({"i": -1, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]})
        os._exit(0)
    for i, args in enumerate(job["inputs"]):
        start = clock()
        try:
            value = func(*copy.deepcopy(args))
            record = {"i": i, "ok": True, "value": encode(value)}
        except BaseException as exc:  # noqa: BLE001 - SystemExit inside the call is a failure too
            record = {"i": i, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        record["time_s"] = clock() - start
        try:
            emit(record)
        except (ValueError, TypeError) as exc:
            emit({"i": i, "ok": False, "error": f"unserializable result: {exc}"[:500]})
    os._exit(0)


main()
