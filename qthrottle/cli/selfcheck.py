"""qthrottle selfcheck: CrossHair checks the reference model's own contracts."""
from __future__ import annotations

import argparse
import json
from typing import Any

from qthrottle.cli.options import positive
from qthrottle.engines import selfcheck
from qthrottle.engines.selfcheck import DEFAULT_JOBS, DEFAULT_TIMEOUT_S, format_report


def cmd_selfcheck(args: argparse.Namespace) -> int:
    report = selfcheck.run_selfcheck(args.per_condition_timeout, args.jobs)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print("\n".join(format_report(report)))
    return report.exit_code


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "selfcheck", help="CrossHair checks the reference model's own contracts",
        description="CrossHair checks every contract of the reference model (model/) in a "
        "tiny world, then checks that it finds each seeded bug (engines/seeded/). Each "
        "condition is PROVED (confirmed over all paths), COUNTEREXAMPLE or BUDGET EXHAUSTED "
        "(unknown, never a pass). Exit: 0 every model condition proved and every seeded bug "
        "caught; 1 a counterexample in model/, or a seeded bug missed (the checker failed to "
        "fail); 2 CrossHair could not run or crashed; 3 no counterexample, every seeded bug "
        "caught, but some model condition only exhausted its budget.")
    command.add_argument("--per-condition-timeout", type=positive(float, "number of seconds"),
                         default=DEFAULT_TIMEOUT_S, metavar="S",
                         help=f"CrossHair's CPU seconds per condition (default "
                         f"{DEFAULT_TIMEOUT_S:g})")
    command.add_argument("--jobs", type=positive(int, "whole number"), default=DEFAULT_JOBS,
                         metavar="N", help=f"CrossHair processes at once (default {DEFAULT_JOBS})")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.set_defaults(func=cmd_selfcheck)
