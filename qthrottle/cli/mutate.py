"""qthrottle mutate TARGET: how many seeded faults in the throttle do the engines catch?"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from qthrottle.cli.options import (
    PERCENT,
    TARGET_HELP,
    add_engine_options,
    add_target,
    check_writable,
    positive,
    target_from,
)
from qthrottle.core import Interrupted, QthrottleError
from qthrottle.engines.bounds import PROFILES
from qthrottle.harness.mutation import MUTATED_ROLES, OPERATORS
from qthrottle.proofs.report import bounds
from qthrottle.review.mutate import DEFAULT_SEED, run
from qthrottle.review.mutation_report import (
    DEFAULT_MIN_SCORE,
    MutationReport,
    Outcome,
    exit_code,
    format_report,
    to_json,
)


def cmd_mutate(args: argparse.Namespace) -> int:
    check_writable("--json", args.json)
    target = target_from(args.target, args.qapi_dir)
    profile = PROFILES[args.profile]
    unknown_operators = [o for o in args.operator or () if o not in OPERATORS]
    if unknown_operators:
        raise QthrottleError(f"no mutation operator {unknown_operators[0]!r} "
                             f"(one of: {', '.join(OPERATORS)})")
    print(f"qthrottle mutate: {target.name} ({target.monitor_c})")
    print(f"  seed {args.seed}; stateful engine, {profile.describe()}; z3 proofs, "
          f"{bounds(args.timeout_ms)}; {args.jobs} job(s)")
    print(f"  functions mutated: {', '.join(MUTATED_ROLES)} and the rate table", flush=True)

    def progress(outcome: Outcome, done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r  {done}/{total} mutants analysed", end="", file=sys.stderr, flush=True)

    try:
        report = run(target, profile, args.seed, args.timeout_ms, args.jobs, args.operator,
                     progress)
    except Interrupted as stop:  # the mutants analysed so far, before the exit
        if isinstance(stop.partial, MutationReport):
            print(f"\ninterrupted: {len(stop.partial.outcomes)} mutant(s) analysed so far")
            print("\n".join(format_report(stop.partial, args.min_score)), flush=True)
        raise
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print()
    print("\n".join(format_report(report, args.min_score)))
    print(f"time: {report.seconds:.1f} s on {report.jobs} job(s) "
          f"(rerun with --seed {args.seed} to reproduce)")
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(to_json(report, args.min_score), indent=2)
                                       + "\n")
        except OSError as error:
            raise QthrottleError(f"cannot write {args.json}: {error.strerror}") from None
    return exit_code(report, args.min_score)


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "mutate", help="mutation analysis: seed faults in the throttle, count those the "
        "engines catch",
        description=f"TARGET is {TARGET_HELP}. Each mutant of the throttle functions and the "
        "rate table goes through the z3 proofs (a kill counts once the mutant's C confirms "
        "it), then the stateful engine; equivalent and stillborn mutants, and z3 kills the C "
        "does not confirm, are listed apart. Exit: 0 score >= --min-score, 1 below, "
        "2 input or tool error, 3 below only because some mutants ended unknown or "
        "unconfirmed.")
    add_target(command)
    add_engine_options(command, DEFAULT_SEED)
    command.add_argument("--jobs", type=positive(int, "whole number"),
                         default=os.cpu_count() or 1, metavar="N",
                         help="mutants analysed in parallel (default: the number of cores)")
    command.add_argument("--min-score", type=PERCENT, default=DEFAULT_MIN_SCORE, metavar="P",
                         help=f"score to reach, in %% (default {DEFAULT_MIN_SCORE:g})")
    command.add_argument("--operator", action="append", metavar="NAME",
                         help="only this mutation operator (repeatable), e.g. "
                         "'change a rate'")
    command.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    command.set_defaults(func=cmd_mutate)
