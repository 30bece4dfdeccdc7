"""A testbed ``Runner`` wrapper that simulates a build crashing part-way (shared by the
resumable-execution tests)."""
from __future__ import annotations

from contextlib import closing


class Crash(Exception):
    pass


def crash_after(runner, after, seen=None):
    """Wrap a runner: record what it was asked to run (into ``seen``), raise ``Crash`` after
    ``after`` results."""
    def run(subs):
        if seen is not None:
            seen.extend(s.code for s in subs)
        with closing(runner(subs)) as results:
            for n, item in enumerate(results):
                if n == after:
                    raise Crash(f"simulated crash after {after} results")
                yield item
    return run
