"""qthrottle diff OLD NEW: what changed in the throttle between two versions (or a patch)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qthrottle.cli.options import (
    COUNT,
    TARGET_HELP,
    add_html,
    add_seed,
    add_timeout,
    check_writable,
    seed_of,
)
from qthrottle.core import QthrottleError
from qthrottle.engines.bounds import DYNAMIC_DIFF, Profile
from qthrottle.review import html
from qthrottle.review.diff import DiffOptions, html_page, report_json, report_text, run_diff

DESCRIPTION = """\
OLD and NEW: {targets}.
NEW may also be a patch (unified diff), applied with `patch -p1` to a temporary
copy of OLD's monitor/ and qapi/ (OLD must then be a QEMU tree; files outside
those directories are listed, not applied).

Reports, per event, the rate and key members old -> new and the queue function's
decision compared by z3 for every valid event (each change with its condition and
a witness event); the invariants old -> new (z3 proofs; --stateful adds the
stateful engine on both, slow); and a dynamic diff: both sanitized C drivers on
the same generated timelines, the first divergence minimised, side by side.

Exit codes reflect NEW, so that CI fails on a patch that breaks something (the
differences themselves are information):
  0  no invariant falsified in NEW, nothing UNKNOWN
  1  NEW falsifies an invariant (z3 proofs, --stateful, or a crash of NEW's C
     in the dynamic diff)
  2  input or tool error (e.g. a patch that does not apply)
  3  nothing falsified in NEW, but something UNKNOWN (NEW's proofs, a question
     of the diff, the harness)
"""



def cmd_diff(args: argparse.Namespace) -> int:
    check_writable("--html", args.html)
    options = DiffOptions(args.old, args.new, args.old_qapi_dir, args.new_qapi_dir,
                          args.timeout_ms, seed_of(args),
                          Profile(DYNAMIC_DIFF.name, args.timelines, args.steps),
                          args.stateful)
    run = run_diff(options)
    if args.json:
        print(json.dumps(report_json(run), indent=2))
    else:
        print("\n".join(report_text(run)))
    if args.html:
        try:
            html.write(Path(args.html), html_page(run))
        except OSError as error:
            raise QthrottleError(f"cannot write --html {args.html}: {error}") from None
    return run.code


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "diff", help="what changed in the throttle between two versions (or a patch)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION.format(targets=TARGET_HELP))
    command.add_argument("old", metavar="OLD")
    command.add_argument("new", metavar="NEW")
    command.add_argument("--old-qapi-dir", metavar="DIR",
                         help="OLD's QAPI schema directory (default: its tree's qapi/)")
    command.add_argument("--new-qapi-dir", metavar="DIR",
                         help="NEW's QAPI schema directory (default: its tree's qapi/)")
    add_timeout(command)
    add_seed(command)
    command.add_argument("--timelines", type=COUNT, default=DYNAMIC_DIFF.runs, metavar="N",
                         help=f"dynamic diff: timelines to try, at most (default "
                         f"{DYNAMIC_DIFF.runs}; 0 skips the dynamic diff)")
    command.add_argument("--steps", type=COUNT, default=DYNAMIC_DIFF.steps, metavar="N",
                         help=f"dynamic diff: operations per timeline, at most (default "
                         f"{DYNAMIC_DIFF.steps})")
    command.add_argument("--stateful", action="store_true",
                         help="also run the stateful engine on both versions (slow)")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    add_html(command)
    command.set_defaults(func=cmd_diff)
