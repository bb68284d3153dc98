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
from pathlib import Path
from typing import List, Optional

from qthrottle.cases import MAY_ALSO_BREAK, verdict_as_expected
from qthrottle.harness.build import BuildError
from qthrottle.harness.extract import ExtractionError
from qthrottle.harness.qemu_sources import add_fetch_command
from qthrottle.harness.target import Target, bundled_cases, describe, resolve
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.timeline import format_ns
from qthrottle.proofs.engine import DEFAULT_TIMEOUT_MS, prove_target
from qthrottle.proofs.report import bounds, details, summary
from qthrottle.stateful import (
    PROFILES,
    CompareKeys,
    SearchResult,
    format_timeline,
    verify_target,
)

EXIT_HOLDS, EXIT_FALSIFIED, EXIT_ERROR, EXIT_UNKNOWN = 0, 1, 2, 3


def _target(args: argparse.Namespace) -> Target:
    return resolve(args.target, Path(args.qapi_dir) if args.qapi_dir else None)


def cmd_extract(args: argparse.Namespace) -> int:
    """Show what qthrottle finds in a monitor.c, and optionally build its driver."""
    target = _target(args)
    extraction = target.extract()
    events = target.schema_events()
    if args.source:
        print(extraction.c_source(), end="")
        return EXIT_HOLDS
    report = {
        "target": target.name,
        "monitor_c": str(extraction.path),
        "schema": str(target.qapi_dir) if target.qapi_dir else None,
        "schema_events": len(events),
        "functions": describe(extraction),
        "helpers": {name: extraction.location(name) for name in extraction.helpers},
        "record_type": extraction.record_type,
        "table": extraction.table_variable,
        "rates_ns": extraction.rates,
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
    print(f"rate table {extraction.rate_table_name} ({len(extraction.rates)} throttled events):")
    for event, rate in extraction.rates.items():
        print(f"  {event:<28} {format_ns(rate)}")
    if args.build:
        print(f"driver:  {report['driver']}" + (" (cached)" if report["driver_cached"] else ""))
    return EXIT_HOLDS


def _print_result(target: Target, result: SearchResult) -> None:
    for number, name in INVARIANTS.items():
        if number in result.falsified:
            status = "FALSIFIED"
        elif result.unknown:
            status = "UNKNOWN"
        else:
            status = "PASS"
        print(f"  {number}  {name:<62} {status}")
    if result.unknown:
        print(f"  UNKNOWN: {result.unknown}")
    for number, example in sorted(result.falsified.items()):
        print(f"\n  invariant {number} FALSIFIED ({len(example.steps)} operation(s)): "
              f"{example.message}")
        print("\n".join(format_timeline(example)))
        timeline = [op for op in example.operations if not isinstance(op, CompareKeys)]
        if timeline:
            print(f"    replay (qthrottle.harness.driver.Driver.run): {timeline!r}")
        if example.crash is not None:
            print("    sanitizer / shim report:")
            print("\n".join("      " + line for line in
                            example.crash.report.strip().splitlines()[:12]))


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the invariants of one target, or of every bundled case against its expectation."""
    profile = PROFILES[args.profile]
    seed_value = args.seed if args.seed is not None else random.randrange(1 << 30)
    targets = [_target(args)] if args.target else bundled_cases()
    print(f"qthrottle verify: seed {seed_value}; stateful engine, {profile.describe()}")
    print(f"                  and z3 proofs, {bounds(args.timeout_ms)}")
    falsified = unknown = unexpected = False
    for target in targets:
        print(f"\n== {target.name} ({target.monitor_c})")
        result = verify_target(target, profile, seed_value)
        print(f"   {result.searches} search(es) in {result.seconds:.1f} s")
        _print_result(target, result)
        proofs = prove_target(target, args.timeout_ms)
        print("\n" + "\n".join(summary(proofs) + details(proofs)))
        # Either engine's counterexample breaks an invariant; either's UNKNOWN is no pass.
        broken = frozenset(result.falsified) | proofs.falsified
        falsified |= bool(broken)
        undecided = result.unknown is not None or proofs.unknown
        unknown |= undecided
        if target.expected_broken is not None and not args.target:
            ok = verdict_as_expected(target.name, broken) and not undecided
            unexpected |= not ok
            meant = f"{sorted(target.expected_broken) or 'none'}"
            if target.name in MAY_ALSO_BREAK:
                meant += f" (may also break {sorted(MAY_ALSO_BREAK[target.name])})"
            print(f"   meant to break: {meant}; broke: {sorted(broken) or 'none'} -> "
                  + ("as expected" if ok else "NOT AS EXPECTED"))
    print(f"\n(seed {seed_value}: rerun with --seed {seed_value} to reproduce)")
    if not args.target:  # the bundled demo: every case gets the verdict it is meant to get
        return EXIT_FALSIFIED if unexpected else EXIT_HOLDS
    if falsified:
        return EXIT_FALSIFIED
    return EXIT_UNKNOWN if unknown else EXIT_HOLDS


def cmd_prove(args: argparse.Namespace) -> int:
    """Prove the callback invariants of one target with z3, replaying counterexamples."""
    target = _target(args)
    print(f"qthrottle prove: {bounds(args.timeout_ms)}")
    print(f"\n== {target.name} ({target.monitor_c})")
    report = prove_target(target, args.timeout_ms)
    print("\n".join(summary(report) + details(report)))
    if report.falsified:
        return EXIT_FALSIFIED
    return EXIT_UNKNOWN if report.unknown else EXIT_HOLDS


def _timeout_ms(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of milliseconds")
    return value


def _add_timeout(command: argparse.ArgumentParser) -> None:
    command.add_argument("--timeout-ms", type=_timeout_ms, default=DEFAULT_TIMEOUT_MS,
                         metavar="N",
                         help=f"z3 timeout per solver query (default {DEFAULT_TIMEOUT_MS})")


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
    extract.add_argument("--qapi-dir", metavar="DIR",
                         help="QAPI schema directory (default: the tree's qapi/)")
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
        "to get. Exit: 0 holds, 1 falsified, 2 input or tool error, 3 unknown.")
    verify.add_argument("target", metavar="TARGET", nargs="?")
    verify.add_argument("--qapi-dir", metavar="DIR",
                        help="QAPI schema directory (default: the tree's qapi/)")
    verify.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    verify.add_argument("--seed", type=int, help="seed of the search (printed when not given)")
    _add_timeout(verify)
    verify.set_defaults(func=cmd_verify)

    prove = sub.add_parser(
        "prove", help="prove the callback invariants of the extracted C with z3",
        description="TARGET is a QEMU tree, a monitor.c file or a case-study name. Proves "
        "invariants 1, 2, 3, 4 and 7 for every valid event, replaying each counterexample "
        "against the C. Exit: 0 proved, 1 falsified, 2 input or tool error, 3 unknown.")
    prove.add_argument("target", metavar="TARGET")
    prove.add_argument("--qapi-dir", metavar="DIR",
                       help="QAPI schema directory (default: the tree's qapi/)")
    _add_timeout(prove)
    prove.set_defaults(func=cmd_prove)

    add_fetch_command(sub)
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
