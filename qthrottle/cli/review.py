"""qthrottle review SERIES: a verdict per patch of a series, then for the series as a whole."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qthrottle.cli.options import add_diff_options, add_html, check_writable, seed_of
from qthrottle.cli.terminal import Phases
from qthrottle.core import QthrottleError
from qthrottle.engines.bounds import DYNAMIC_DIFF, Profile
from qthrottle.review import html
from qthrottle.review.review import ReviewOptions, default_base, run_review
from qthrottle.review.review_report import (
    FORMATS,
    review_email,
    review_html,
    review_json,
    review_markdown,
    review_text,
)

DESCRIPTION = """\
SERIES: an mbox (git format-patch --stdout, git send-email, a list archive's
export, b4 am's .mbx), a directory of .patch files (git format-patch -o), or one
patch. The cover letter (0/N), replies (Re:) and messages without a diff are
skipped; patches are ordered by their number ([PATCH v2 3/5]); MIME encodings
(quoted-printable, base64, 8-bit) are decoded.

The base: --tree QEMU_TREE, or --git QEMU_GIT_DIR at --base REV (default HEAD;
read with git archive, the checkout is not changed). Neither: the current
directory (as a git checkout if it is one). The patches are applied in order
(git apply on a git base, patch -p1 otherwise) to a private copy of monitor/
and qapi/; files elsewhere are not throttle code, listed and skipped.

Every patch that changes throttle code gets the `qthrottle diff` analysis of
the tree before it against the tree after it, with findings that point at its
own lines; then the series as a whole. A patch that leaves an invariant
falsified before the end of the series is a bisectability finding.

--format: text (default), markdown (a GitLab merge request comment), email
(replies for the list, quoting the offending hunk lines; an mbox), json
(docs/report.schema.json).

Exit codes: the last patch's (the tree the series ends in):
  0  no invariant falsified, nothing UNKNOWN
  1  an invariant is falsified
  2  input or tool error (not a series, no patch touches throttle code, a patch
     that does not apply, an unknown revision)
  3  nothing falsified, but something UNKNOWN
"""

RENDER = {"text": review_text, "markdown": review_markdown, "email": review_email}


def cmd_review(args: argparse.Namespace) -> int:
    check_writable("--html", args.html)
    tree, git = args.tree, args.git
    if tree is None and git is None:
        tree, git = default_base(Path.cwd())
    if args.base is not None and git is None:
        raise QthrottleError("--base REV needs a git checkout (--git QEMU_GIT_DIR)")
    options = ReviewOptions(args.series, tree, git, args.base or "HEAD", args.timeout_ms,
                            seed_of(args), Profile(DYNAMIC_DIFF.name, args.timelines,
                                                   args.steps), args.stateful)
    run = run_review(options, Phases(sys.stderr).phase)
    if args.format == "json":
        print(json.dumps(review_json(run), indent=2))
    else:
        print("\n".join(RENDER[args.format](run)))
    if args.html:
        html.write(Path(args.html), review_html(run))
    return run.code


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "review", help="a verdict per patch of a series (mbox, .patch files), for review",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=DESCRIPTION)
    command.add_argument("series", metavar="SERIES")
    base = command.add_mutually_exclusive_group()
    base.add_argument("--tree", metavar="QEMU_TREE", help="the QEMU tree to apply the series to")
    base.add_argument("--git", metavar="QEMU_GIT_DIR",
                      help="a QEMU git checkout: apply the series to --base REV")
    command.add_argument("--base", metavar="REV", help="with --git: the revision the series "
                         "applies to (default HEAD)")
    command.add_argument("--format", choices=FORMATS, default="text",
                         help="text (default), markdown, email or json")
    add_diff_options(command, "dynamic diff of each patch", "every tree")
    add_html(command)
    command.set_defaults(func=cmd_review)
