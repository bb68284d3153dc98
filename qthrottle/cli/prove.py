"""qthrottle prove TARGET: the z3 proofs of the extracted C alone."""
from __future__ import annotations

import argparse
from typing import Any

from qthrottle.cli.options import TARGET_HELP, add_target, add_timeout, target_from
from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN
from qthrottle.proofs.engine import prove_target
from qthrottle.proofs.report import bounds, details, summary


def cmd_prove(args: argparse.Namespace) -> int:
    """Prove invariants 1-7 of one target with z3, replaying counterexamples."""
    target = target_from(args.target, args.qapi_dir)
    print(f"qthrottle prove: {bounds(args.timeout_ms)}")
    print(f"\n== {target.name} ({target.monitor_c})")
    report = prove_target(target, args.timeout_ms)
    print("\n".join(summary(report) + details(report)))
    if report.falsified:
        return EXIT_FALSIFIED
    return EXIT_UNKNOWN if report.unknown else EXIT_HOLDS


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "prove", help="prove invariants 1-7 of the extracted C with z3",
        description=f"TARGET is {TARGET_HELP}. Proves invariants 1, 2, 3, 4 and 7 for every "
        "valid event, and 3, 4, 5 and 6 for every timeline (k-induction over one key's "
        "throttle, built from the queue function and the timer handler), replaying each "
        "counterexample against the C. Exit: 0 proved, 1 falsified, 2 input or tool error, "
        "3 unknown.")
    add_target(command)
    add_timeout(command)
    command.set_defaults(func=cmd_prove)
