"""qthrottle explore TARGET: each falsified invariant as a replayed timeline and a pytest file."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qthrottle.cli.options import (
    TARGET_HELP,
    add_engine_options,
    add_html,
    add_target,
    check_writable,
    directory_problem,
    seed_of,
)
from qthrottle.core import warn
from qthrottle.engines.bounds import PROFILES
from qthrottle.model.invariants import INVARIANTS
from qthrottle.review.explore import DEFAULT_OUTPUT, explore


def cmd_explore(args: argparse.Namespace) -> int:
    wanted = frozenset([args.invariant] if args.invariant else INVARIANTS)
    check_writable("--html", args.html)
    # Said at once; the run goes on, since its findings are printed (exit 2 at the end).
    unwritable = directory_problem(args.output)
    if unwritable:
        warn(f"--output {args.output}: {unwritable}: no reproducer will be written")
    return explore(args.target, args.qapi_dir, wanted, PROFILES[args.profile], seed_of(args),
                   args.timeout_ms, Path(args.output), Path(args.html) if args.html else None,
                   unwritable)


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "explore", help="show each falsified invariant as a replayed timeline and write "
        "a pytest reproducer",
        description=f"TARGET is {TARGET_HELP}. The z3 proofs run first, then the stateful "
        "engine for what they cannot falsify. Each counterexample is replayed against the "
        "sanitized C and the reference model and written as a standalone pytest file. "
        "Exit: 0 nothing falsified, 1 falsified, 2 input or tool error, 3 unknown.")
    add_target(command)
    command.add_argument("--invariant", type=int, choices=sorted(INVARIANTS), metavar="N",
                         help="explore invariant N only (1-8)")
    add_engine_options(command)
    command.add_argument("--output", metavar="DIR", default=DEFAULT_OUTPUT,
                         help=f"where the reproducers go (default ./{DEFAULT_OUTPUT}/)")
    add_html(command)
    command.set_defaults(func=cmd_explore)
