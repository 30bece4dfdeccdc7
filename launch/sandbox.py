"""``aletheia-sandbox``: probe the isolation, or run a JSONL file of submissions.

    aletheia-sandbox probe [--slot N] [--isolation auto|bwrap|none] [--allow-unisolated]
    aletheia-sandbox run --input SUBMISSIONS.jsonl --output RESULTS.jsonl
        [--backend local|sandboxfusion --url URL] [--workers N] [--slot-base N]

Input rows: {"id", "language", "code", one of "tests" (+"checker") | "test_program" |
"entry_point"+"inputs"(+"expected"|"reference")(+"atol"), optional "time_limit_s",
"memory_limit_mb"}. Output rows (same order): {"id", "status", "pass_rate", "tests":
[{"status", "time_s", "detail"}], "compile": {...}, "isolation", "detail"}. A malformed row gives
an InfraError row whose detail names the line and field; the run goes on. Progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from typing import Iterator, Optional, Sequence

from tqdm import tqdm

from aletheia_ray.sandbox.executor import Executor
from aletheia_ray.sandbox.parallel import run_local
from aletheia_ray.sandbox.types import SANDBOX_BACKENDS
from aletheia_ray.sandbox.submissions import submission_from_row
from aletheia_ray.sandbox.types import Status, Submission, SubmissionResult


def cmd_probe(args: argparse.Namespace) -> int:
    with Executor(isolation=args.isolation, allow_unisolated=args.allow_unisolated,
                  slot=args.slot) as ex:
        report = ex.probe()
        tests = ("one sandbox per submission, a fresh process per test (supervisor built)"
                 if ex.supervisor else "one sandbox per test (no C compiler for the supervisor)")
    print(f"isolation level: {report.level}")
    for name, text in report.layers.items():
        print(f"  {name:15s} {text}")
    print(f"  {'stdio tests':15s} {tests}")
    return 0 if report.level == "full" else 1


def read_jobs(path: str) -> Iterator[Submission | SubmissionResult]:
    """Submissions, or ready InfraError rows for lines that are not valid submissions."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            row_id = f"line{lineno}"
            try:
                row = json.loads(line)
                if isinstance(row, dict) and isinstance(row.get("id"), (str, int)):
                    row_id = str(row["id"])
                yield submission_from_row(row)
            except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError too
                yield SubmissionResult(row_id, Status.INFRA, None, isolation="",
                                       detail=f"{path}:{lineno}: malformed row: {exc}")


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with open(args.input, encoding="utf-8") as fh:
        total = sum(1 for line in fh if line.strip())
    make_runner = None
    level = None
    if args.backend == "sandboxfusion":
        if not args.url:
            raise ValueError("--backend sandboxfusion needs --url")
        from aletheia_ray.sandbox.remote import SandboxFusionBackend

        backend = SandboxFusionBackend(args.url, max_concurrency=args.workers,
                                       retries=args.retries, timeout_s=args.timeout_s)
        make_runner = lambda slot: backend.run  # noqa: E731 - one shared client, N threads
    else:
        with Executor(slot=args.slot_base, allow_unisolated=args.allow_unisolated,
                      isolation=args.isolation) as ex:
            level = ex.probe().level
        print(f"aletheia-sandbox: isolation level {level}", file=sys.stderr)
    counts: Counter[str] = Counter()
    with open(args.output, "w", encoding="utf-8") as out, \
            tqdm(total=total, desc="sandbox", unit="sub", file=sys.stderr) as bar:
        for res in run_local(read_jobs(args.input), workers=args.workers,
                             slot_base=args.slot_base, isolation=args.isolation,
                             allow_unisolated=args.allow_unisolated, make_runner=make_runner):
            row = res.to_row()
            out.write(json.dumps(row) + "\n")
            out.flush()
            counts[row["status"]] += 1
            bar.update(1)
            bar.set_postfix(dict(counts))
    print("aletheia-sandbox: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
          file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aletheia-sandbox", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, help_text in (("probe", cmd_probe, "print the isolation level and layers"),
                                  ("run", cmd_run, "run a JSONL file of submissions")):
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        p.add_argument("--isolation", choices=["auto", "bwrap", "none"], default="auto")
        p.add_argument("--allow-unisolated", action="store_true",
                       help="permit running untrusted code without namespaces (loudly logged)")
        if name == "probe":
            p.add_argument("--slot", type=int, default=0)
            continue
        p.add_argument("--input", required=True)
        p.add_argument("--output", required=True)
        p.add_argument("--backend", choices=SANDBOX_BACKENDS, default="local")
        p.add_argument("--url", default=None, help="SandboxFusion base URL (sandboxfusion)")
        p.add_argument("--workers", type=int, default=1)
        p.add_argument("--slot-base", type=int, default=0,
                       help="worker k uses sandbox slot slot_base + k (uid and cgroup)")
        p.add_argument("--retries", type=int, default=3, help="sandboxfusion: HTTP retries")
        p.add_argument("--timeout-s", type=float, default=None,
                       help="sandboxfusion: HTTP timeout per request")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        parser.exit(2, f"aletheia-sandbox {args.command}: error: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
