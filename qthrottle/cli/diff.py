"""qthrottle diff OLD NEW: what changed in the throttle between two versions (or a patch)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qthrottle.cli.options import (
    TARGET_HELP,
    add_diff_options,
    add_html,
    check_writable,
    seed_of,
)
from qthrottle.core import QthrottleError
from qthrottle.engines.bounds import DYNAMIC_DIFF, Profile
from qthrottle.review import html
from qthrottle.review.diff import DiffOptions, html_page, report_text, run_diff
from qthrottle.review.review_report import (
    FORMATS,
    as_review,
    diff_json,
    review_email,
    review_markdown,
)

DESCRIPTION = """\
OLD and NEW: {targets}.
NEW may also be a patch or a series (a unified diff, a mail, an mbox, a
directory of .patch files), applied in order with `patch -p1` to a temporary
copy of OLD's monitor/ and qapi/ (OLD must then be a QEMU tree; files outside
those directories are listed, not applied). `qthrottle review` gives a
verdict per patch of a series.
With --git QEMU_GIT_DIR, OLD and NEW are revisions (or OLD is a range A..B, or
A...B from their merge base), read with git archive: the checkout is not changed.

Reports, per event, the rate and key members old -> new and the queue function's
decision compared by z3 for every valid event (each change with its condition and
a witness); the invariants old -> new (z3 proofs; --stateful adds the
stateful engine on both, slow); what NEW falsifies or cannot decide and the lint
warnings the change introduces or changes, each at the line (the patch line)
that causes it; and a dynamic diff: both sanitized C drivers on the same
generated timelines, the first divergence minimised, side by side.

Exit codes reflect NEW, so that CI fails on a patch that breaks something (the
differences themselves are information):
  0  no invariant falsified in NEW, nothing UNKNOWN
  1  NEW falsifies an invariant (z3 proofs, --stateful, or a crash of NEW's C
     in the dynamic diff)
  2  input or tool error (e.g. a patch that does not apply, an unknown revision)
  3  nothing falsified in NEW, but something UNKNOWN (NEW's proofs, a question
     of the diff, the harness)
"""


def cmd_diff(args: argparse.Namespace) -> int:
    check_writable("--html", args.html)
    if args.new is None and args.git is None:
        raise QthrottleError("give OLD and NEW (a single OLD..NEW range needs --git)")
    options = DiffOptions(args.old, args.new or "", args.old_qapi_dir, args.new_qapi_dir,
                          args.timeout_ms, seed_of(args),
                          Profile(DYNAMIC_DIFF.name, args.timelines, args.steps),
                          args.stateful, args.git)
    run = run_diff(options)
    form = "json" if args.json else args.format
    if form == "json":
        print(json.dumps(diff_json(run), indent=2))
    elif form == "text":
        print("\n".join(report_text(run)))
    else:
        render = review_markdown if form == "markdown" else review_email
        print("\n".join(render(as_review(run, options.command()))))
    if args.html:
        html.write(Path(args.html), html_page(run))
    return run.code


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "diff", help="what changed in the throttle between two versions (or a patch)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION.format(targets=TARGET_HELP))
    command.add_argument("old", metavar="OLD")
    command.add_argument("new", metavar="NEW", nargs="?")
    command.add_argument("--git", metavar="QEMU_GIT_DIR",
                         help="OLD and NEW are revisions of this git checkout")
    command.add_argument("--old-qapi-dir", metavar="DIR",
                         help="OLD's QAPI schema directory (default: its tree's qapi/)")
    command.add_argument("--new-qapi-dir", metavar="DIR",
                         help="NEW's QAPI schema directory (default: its tree's qapi/)")
    add_diff_options(command, "dynamic diff", "both versions")
    command.add_argument("--format", choices=FORMATS, default="text",
                         help="text (default), markdown (a merge request comment), email "
                         "(a reply for the list) or json")
    command.add_argument("--json", action="store_true", help="the same as --format json")
    add_html(command)
    command.set_defaults(func=cmd_diff)
