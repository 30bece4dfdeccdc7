"""Sandbox driver for test-program style: run the program as __main__, then print the token.

The host sends a one-line random token on stdin and checks it is the last stdout line. The token
is printed only when the program ran to its end: SystemExit (any code), os._exit, a crash or a
signal before the last assert all leave it out. The token never appears in argv, env or files.
"""
import os
import sys
import traceback


def main() -> None:
    token = sys.stdin.buffer.readline().strip()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    path = sys.argv[1]
    with open(path, "rb") as fh:
        source = fh.read()
    sys.argv = [path]
    sys.path[0] = os.path.dirname(path)
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    write, exit_now, flush_out, flush_err = os.write, os._exit, sys.stdout.flush, sys.stderr.flush
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
    write(1, b"\n" + token + b"\n")
    exit_now(0)


main()
