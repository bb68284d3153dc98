"""qthrottle extract TARGET: what qthrottle finds in a monitor.c, and its driver."""
from __future__ import annotations

import argparse
import json
from typing import Any

from qthrottle.cli.options import TARGET_HELP, add_target, target_from
from qthrottle.core import EXIT_HOLDS
from qthrottle.harness.build import compiled_rates
from qthrottle.harness.target import describe
from qthrottle.model.timeline import format_ns
from qthrottle.review.target_policy import target_policy


def cmd_extract(args: argparse.Namespace) -> int:
    """Show what qthrottle finds in a monitor.c, and optionally build its driver."""
    target = target_from(args.target, args.qapi_dir)
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


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "extract", help="show the throttle code found in a monitor.c and build its driver",
        description=f"TARGET is {TARGET_HELP}.")
    add_target(command)
    command.add_argument("--build", action="store_true",
                         help="also compile the sanitized driver (cached)")
    command.add_argument("--source", action="store_true",
                         help="print the extracted C with #line provenance")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.set_defaults(func=cmd_extract)
