"""Sandbox driver for test-program style: run the program as __main__, then print the token.

The host sends a one-line random token on stdin and checks it is the last stdout line. The token
is printed only when the program ran to its end: SystemExit (any code), os._exit, a crash or a
signal before the last assert all leave it out. The token never appears in argv, env or files.

Against code that hunts for the token in this process: it lives only in the closure of an audit
hook (PEP 578; hooks cannot be removed), never in a frame the program can walk to; the hook prints
it only when raised from ``_finished`` called by this module's own top-level code, and, while the
program runs, ends the process (exit 4, no token) on the ways to read another object's memory:
gc object lists, ctypes, tracing/profiling hooks, other threads' frames, /proc/*/mem. The process
is made non-dumpable, so a child that execs a fresh interpreter cannot read it either. The hook
never raises: a traceback would hold its frame.
"""
import os
import re
import sys
import traceback

DENIED_EVENTS = ("gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.settrace",
                 "sys.setprofile", "sys._current_frames", "sys.addaudithook")
PROC_MEMORY = re.compile(r"^/proc/[^/]+/(task/[^/]+/)?(mem|map_files)")


def _make_non_dumpable() -> None:
    import ctypes  # before the hook is armed; every later ctypes.* event is denied

    ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def _install_guard(module_code, finished_code) -> None:
    token = sys.stdin.buffer.readline().strip()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    write, exit_now, getframe = os.write, os._exit, sys._getframe
    armed = [True]

    def deny(what: str) -> None:
        write(2, f"\naletheia: {what} is not allowed in a test program\n".encode())
        exit_now(4)

    def hook(event, args):
        if not armed[0]:
            return
        if event == "aletheia.finished":
            armed[0] = False
            caller = getframe(1)  # the frame that raised the event
            if caller.f_code is finished_code and caller.f_back.f_code is module_code:
                write(1, b"\n" + token + b"\n")
                exit_now(0)
            deny("raising aletheia.finished")
        elif event in DENIED_EVENTS or event.startswith("ctypes."):
            armed[0] = False
            deny(event)
        elif event == "open" and isinstance(args[0], (str, bytes)):
            path = os.fsdecode(args[0])
            if PROC_MEMORY.match(os.path.normpath(path)):
                armed[0] = False
                deny(f"opening {path}")

    sys.addaudithook(hook)


def _finished() -> None:
    audit("aletheia.finished")


audit, flush_out, flush_err, exit_now = sys.audit, sys.stdout.flush, sys.stderr.flush, os._exit
_make_non_dumpable()
_install_guard(sys._getframe(0).f_code, _finished.__code__)
path = sys.argv[1]
with open(path, "rb") as fh:
    source = fh.read()
sys.argv = [path]
sys.path[0] = os.path.dirname(path)
namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
try:
    exec(compile(source, path, "exec"), namespace)
except SystemExit as exc:
    sys.stderr.write(f"\naletheia: SystemExit({exc.code!r}) before the end of the program\n")
    flush_err()
    exit_now(3)
except BaseException:  # noqa: BLE001 - report any failure of the untrusted program
    traceback.print_exc()
    flush_err()
    exit_now(1)
flush_out()
flush_err()
_finished()
exit_now(5)  # unreachable unless the program disarmed the guard (e.g. replaced sys.audit's hook)
