"""Run the conformance suite and print a report.

::

    python -m tests.conformance                       # fast cases, both roles
    python -m tests.conformance --role server --category 6
    python -m tests.conformance --slow                # also 16 MiB and big deflate cases
    python -m tests.conformance --case 6.4 --case 7.1.6

The exit status is 1 if any case FAILED, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time

from .cases import all_cases
from .harness import ImplHarness
from .model import ROLES, Outcome, Result, Role
from .runner import format_report, run_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance",
        description="trio_ws against a fuzzing peer, case by case (Autobahn-style grading).",
    )
    parser.add_argument("--role", choices=("server", "client", "both"), default="both")
    parser.add_argument(
        "--category", type=int, action="append", help="only this category (repeatable)"
    )
    parser.add_argument(
        "--case", action="append", help="only case ids equal to or under this prefix (repeatable)"
    )
    parser.add_argument("--slow", action="store_true", help="include the slow cases")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per case")
    args = parser.parse_args(argv)

    cases = [case for case in all_cases() if args.slow or not case.slow]
    if args.category:
        cases = [case for case in cases if case.category in args.category]
    if args.case:
        cases = [
            case
            for case in cases
            if any(case.id == prefix or case.id.startswith(prefix + ".") for prefix in args.case)
        ]
    roles: tuple[Role, ...] = ROLES if args.role == "both" else (args.role,)
    if not cases:
        print("no case matches", file=sys.stderr)
        return 2

    def progress(result: Result) -> None:
        if args.verbose:
            duration = result.observation.duration
            print(
                f"[{result.role}] {result.case.id:<10} {result.outcome.label:<14} {duration:.3f}s"
            )

    started = time.monotonic()
    with ImplHarness() as harness:
        results = run_cases(harness, cases, roles, progress)
    print(format_report(results))
    print(f"\n{len(results)} cases in {time.monotonic() - started:.1f} s")
    return 1 if any(result.outcome is Outcome.FAILED for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
