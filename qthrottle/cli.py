"""The qthrottle command line.

Exit codes (a public interface; scripts and CI depend on them):
0 everything holds, 1 something falsified, 2 input or tool error,
3 nothing falsified but something UNKNOWN.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import List, Optional

from qthrottle import diff, explore, mutate, selfcheck
from qthrottle.common import (
    EXIT_ERROR,
    EXIT_FALSIFIED,
    EXIT_HOLDS,
    EXIT_UNKNOWN,
    add_qapi_dir,
    add_timeout,
    target_from,
)
from qthrottle.explain import explain_lines
from qthrottle.harness.build import BuildError, compiled_rates
from qthrottle.harness.extract import ExtractionError
from qthrottle.harness.qemu_sources import add_fetch_command
from qthrottle.harness.target import Target, bundled_cases, describe
from qthrottle.model.lint import lint_extraction
from qthrottle.model.timeline import format_ns
from qthrottle.proofs.engine import prove_target
from qthrottle.proofs.report import bounds, details, summary
from qthrottle.reports import VerifyReport, target_lines, target_result, to_json, to_junit
from qthrottle.selfcheck import DEFAULT_TIMEOUT_S as SELFCHECK_TIMEOUT_S
from qthrottle.selfcheck import SelfcheckError, SelfcheckReport, positive, run_selfcheck
from qthrottle.stateful import PROFILES
from qthrottle.target_policy import target_policy, verify_target
from qthrottle.terminal import Painter, Phases


def _target(args: argparse.Namespace) -> Target:
    return target_from(args.target, args.qapi_dir)


def cmd_extract(args: argparse.Namespace) -> int:
    """Show what qthrottle finds in a monitor.c, and optionally build its driver."""
    target = _target(args)
    extraction = target.extract()
    events = target.schema_events()
    if args.source:
        print(extraction.c_source(), end="")
        return EXIT_HOLDS
    table = compiled_rates(extraction, events)
    rates = {e: table[e] for e in [*extraction.rate_entries, *table] if table.get(e)}
    derived = target_policy(target) if target.qapi_dir is not None else None
    report = {
        "target": target.name,
        "monitor_c": str(extraction.path),
        "schema": str(target.qapi_dir) if target.qapi_dir else None,
        "schema_events": len(events),
        "functions": describe(extraction),
        "helpers": {name: extraction.location(name) for name in extraction.helpers},
        "record_type": extraction.record_type,
        "table": extraction.table_variable,
        "rates_ns": rates,
        "keys": None if derived is None else {
            event: None if event in derived.unknown else list(derived.policy.keys.get(event, ()))
            for event in rates if event in derived.policy.rates},
        "policy_assumptions": [] if derived is None else list(derived.assumptions),
        "policy_unknown": {} if derived is None else derived.unknown,
    }
    if args.build:
        built = target.build()
        report["driver"] = str(built.binary)
        report["driver_cached"] = built.cached
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_HOLDS
    print(f"target:  {target.name}")
    print(f"source:  {extraction.path}")
    print(f"schema:  {target.qapi_dir or '(none: events from the code only)'}"
          + (f" ({len(events)} events)" if events else ""))
    for role, where in describe(extraction).items():
        print(f"  {role:<8} {where}")
    for name in extraction.helpers:
        print(f"  helper   {name} at {extraction.location(name)}")
    print(f"rate table {extraction.rate_table_name} ({len(rates)} throttled events, as the "
          "compiler evaluates it), and each event's key, derived from the C:")
    for event, rate in rates.items():
        key = derived.key_text(event) if derived is not None else "(no schema: not derived)"
        print(f"  {event:<28} {format_ns(rate):<6} {key}")
    for note in derived.assumptions if derived is not None else ():
        print(f"  assumed: {note}")
    for event, reason in derived.unknown.items() if derived is not None else ():
        print(f"  key of {event} UNKNOWN: {reason}")
    if args.build:
        print(f"driver:  {report['driver']}" + (" (cached)" if report["driver_cached"] else ""))
    return EXIT_HOLDS


def _unwritable(args: argparse.Namespace) -> Optional[str]:
    """Why a --json or --junit file could not be written, checked before the long run."""
    for option, name in (("--json", args.json), ("--junit", args.junit)):
        if name is not None and not Path(name).resolve().parent.is_dir():
            return f"{option} {name}: no such directory {Path(name).resolve().parent}"
        if name is not None and Path(name).is_dir():
            return f"{option} {name}: is a directory"
    return None


def _write_reports(args: argparse.Namespace, report: VerifyReport) -> Optional[str]:
    try:
        if args.json is not None:
            with open(args.json, "w", encoding="utf-8") as stream:
                json.dump(to_json(report), stream, indent=2)
                stream.write("\n")
        if args.junit is not None:
            to_junit(report).write(args.junit, encoding="utf-8", xml_declaration=True)
    except OSError as error:
        return f"cannot write the report: {error}"
    return None


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the invariants of one target, or of every bundled case against its expectation."""
    problem = _unwritable(args)
    if problem is not None:
        print(f"qthrottle: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    profile = PROFILES[args.profile]
    seed_value = args.seed if args.seed is not None else random.randrange(1 << 30)
    targets = [_target(args)] if args.target else bundled_cases()
    paint, phases = Painter(sys.stdout), Phases(sys.stderr)
    report = VerifyReport(seed_value, profile, args.timeout_ms, bundled=not args.target,
                          strict=args.strict)
    start = time.perf_counter()
    crosshair: Optional[SelfcheckReport] = None
    if args.explain:  # CrossHair checks the model, the same for every target: once
        with phases.phase("CrossHair on the reference model's contracts (qthrottle selfcheck)"):
            try:
                crosshair = run_selfcheck(args.crosshair_timeout)
            except SelfcheckError as error:
                print(f"qthrottle: error: CrossHair: {error}", file=sys.stderr)
                return EXIT_ERROR
    print(f"qthrottle verify: seed {seed_value}; stateful engine, {profile.describe()}")
    print(f"                  and z3 proofs, {bounds(args.timeout_ms)}")
    for index, target in enumerate(targets, 1):
        print(f"\n== {target.name} ({target.monitor_c})", flush=True)
        step = f"[{index}/{len(targets)}] {target.name}"
        with phases.phase(f"{step}: the throttle policy, derived from the C"):
            derived = target_policy(target, args.timeout_ms)
        with phases.phase(f"{step}: stateful search, {profile.describe()}"):
            search = verify_target(target, profile, seed_value, derived)
        with phases.phase(f"{step}: z3 proofs"):
            proofs = prove_target(target, args.timeout_ms, derived=derived)
        lint = lint_extraction(target.extract(), target.catalog(), derived.policy,
                               derived.key_reads, derived.unknown)
        # Either engine's counterexample breaks an invariant; either's UNKNOWN is no pass.
        result = target_result(report, target, search, proofs, lint, derived)
        print("\n".join(paint(line) for line in target_lines(result)), flush=True)
        if args.explain:
            print("\n" + "\n".join(explain_lines(report, result, crosshair)), flush=True)
    report.seconds = time.perf_counter() - start
    print(f"\n(seed {seed_value}: rerun with --seed {seed_value} to reproduce)")
    if args.strict and report.warnings:
        print(f"--strict: {report.warnings} policy lint warning(s) count as a failure")
    problem = _write_reports(args, report)
    if problem is not None:
        print(f"qthrottle: error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    # The bundled demo passes when every case gets the verdict it is meant to get.
    return report.exit_code


def cmd_prove(args: argparse.Namespace) -> int:
    """Prove invariants 1-7 of one target with z3, replaying counterexamples."""
    target = _target(args)
    print(f"qthrottle prove: {bounds(args.timeout_ms)}")
    print(f"\n== {target.name} ({target.monitor_c})")
    report = prove_target(target, args.timeout_ms)
    print("\n".join(summary(report) + details(report)))
    if report.falsified:
        return EXIT_FALSIFIED
    return EXIT_UNKNOWN if report.unknown else EXIT_HOLDS


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="qthrottle",
        description="Verification suite for QEMU's QAPI event throttle (monitor/monitor.c).")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    extract = sub.add_parser(
        "extract", help="show the throttle code found in a monitor.c and build its driver",
        description="TARGET is a case-study name, a QEMU tree or a monitor.c file.")
    extract.add_argument("target", metavar="TARGET")
    add_qapi_dir(extract)
    extract.add_argument("--build", action="store_true",
                         help="also compile the sanitized driver (cached)")
    extract.add_argument("--source", action="store_true",
                         help="print the extracted C with #line provenance")
    extract.add_argument("--json", action="store_true", help="machine-readable output")
    extract.set_defaults(func=cmd_extract)

    verify = sub.add_parser(
        "verify", help="check the throttle's invariants against the real C (stateful "
        "engine and z3 proofs)",
        description="TARGET is a QEMU tree, a monitor.c file or a case-study name; "
        "without TARGET, every bundled case is checked against the verdict it is meant "
        "to get. Policy lint warnings are printed and reported; they fail the run only "
        "with --strict. Exit: 0 holds, 1 falsified (or a lint warning under --strict), "
        "2 input or tool error, 3 unknown.")
    verify.add_argument("target", metavar="TARGET", nargs="?")
    add_qapi_dir(verify)
    verify.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    verify.add_argument("--seed", type=int, help="seed of the search (printed when not given)")
    add_timeout(verify)
    verify.add_argument("--explain", action="store_true",
                        help="also print, per target, the invariant x engine table: which "
                        "engines check each invariant, on what bound, with what result "
                        "(runs CrossHair on the reference model once; its result does not "
                        "change the exit code: see qthrottle selfcheck)")
    verify.add_argument("--crosshair-timeout", type=positive(float), default=SELFCHECK_TIMEOUT_S,
                        metavar="S", help="with --explain: CrossHair's CPU seconds per "
                        f"condition (default {SELFCHECK_TIMEOUT_S:g})")
    verify.add_argument("--strict", action="store_true",
                        help="policy lint warnings fail the run (exit 1) when nothing else did")
    verify.add_argument("--json", metavar="FILE",
                        help="also write the report as JSON (docs/report.schema.json)")
    verify.add_argument("--junit", metavar="FILE",
                        help="also write JUnit XML: a testcase per target x invariant")
    verify.set_defaults(func=cmd_verify)

    prove = sub.add_parser(
        "prove", help="prove invariants 1-7 of the extracted C with z3",
        description="TARGET is a QEMU tree, a monitor.c file or a case-study name. Proves "
        "invariants 1, 2, 3, 4 and 7 for every valid event, and 3, 4, 5 and 6 for every "
        "timeline (k-induction over one key's throttle, built from the queue function and "
        "the timer handler), replaying each counterexample against the C. Exit: 0 proved, "
        "1 falsified, 2 input or tool error, 3 unknown.")
    prove.add_argument("target", metavar="TARGET")
    add_qapi_dir(prove)
    add_timeout(prove)
    prove.set_defaults(func=cmd_prove)

    add_fetch_command(sub)
    for module in (diff, explore, mutate, selfcheck):
        module.add_command(sub)
    return top


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ExtractionError, BuildError) as error:
        lines = str(error).splitlines()
        print(f"qthrottle: error: {lines[0]}", file=sys.stderr)
        for line in lines[1:]:
            print(f"  {line}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
