"""qthrottle e2e: the reference model against a real qemu-system binary under qtest."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

from qthrottle.cli.options import add_seed, positive, seed_of
from qthrottle.cli.terminal import Painter, Phases
from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN, QthrottleError
from qthrottle.engines.bounds import E2E, Profile, clock_steps
from qthrottle.engines.e2e import (
    Result,
    Subject,
    format_run,
    format_transcript,
    open_subject,
    report_lines,
    search,
)
from qthrottle.harness.qemu_build import cached_build
from qthrottle.harness.qemu_process import QemuError
from qthrottle.harness.qemu_sources import is_qemu_tree
from qthrottle.harness.target import resolve
from qthrottle.model.timeline import format_ns
from qthrottle.review.target_policy import target_policy


def _source_of(binary: Path) -> Optional[Path]:
    """The QEMU tree a build directory was configured from (meson-info), if it says."""
    info = binary.resolve().parent / "meson-info" / "meson-info.json"
    try:
        source = Path(json.loads(info.read_text(encoding="utf-8"))["directories"]["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source if is_qemu_tree(source) else None


def _binary_and_tree(args: argparse.Namespace) -> Tuple[Path, Path, str]:
    """The binary, the tree whose monitor.c it runs, and how to name it."""
    if args.qemu is None:
        build = cached_build()
        if build is None:
            raise QthrottleError("no qtest-capable QEMU built yet: run `qthrottle fetch-qemu "
                                 "--build` (minutes, once), or pass --qemu BINARY")
        built = Path(args.tree) if args.tree else build.tree
        return build.binary, built, f"QEMU {build.version} (built by qthrottle fetch-qemu --build)"
    binary = Path(args.qemu)
    if not binary.is_file():
        raise QthrottleError(f"--qemu {args.qemu}: no such file")
    tree = Path(args.tree) if args.tree else _source_of(binary)
    if tree is None:
        raise QthrottleError(f"--qemu {args.qemu}: cannot tell which QEMU source it was built "
                             "from (no meson-info/meson-info.json beside it): pass --tree DIR")
    return binary, tree, "your QEMU build"


def _header(subject: Subject, name: str, bounds: Profile, seed_value: int) -> List[str]:
    machine = subject.machine
    disks = "; ".join(f"{d.id} werror={d.werror} rerror={d.rerror}" for d in machine.disks)
    steps = ", ".join(format_ns(ns) for ns in clock_steps(subject.policy.rates.values()))
    lines = [
        f"qthrottle e2e: {name}: {subject.binary}",
        f"  harness driver and model: {subject.target.monitor_c}",
        "  events: " + "; ".join(filter(None, [
            "RTC_CHANGE (the guest sets the CMOS clock)" if "RTC_CHANGE" in subject.kinds
            else "",
            f"BLOCK_IO_ERROR (ide-hd over blkdebug, EIO: {disks})",
            f"QUORUM_REPORT_BAD (reads of {machine.quorum}, one child failing: "
            f"{', '.join(machine.quorum_children)})",
            "STOP and RESUME (around each stop)"])),
        f"  seed {seed_value}; {bounds.describe()}; clock steps {steps}, and to the next "
        "deadline; then every timer until none is pending",
    ]
    if "RTC_CHANGE" not in subject.kinds:
        lines.append("  RTC_CHANGE left out: libfaketime not found or not effective in QEMU "
                     "(Debian package libfaketime): its offset follows the host's clock")
    return lines


def _report(result: Result) -> Tuple[List[str], int]:
    lines: List[str] = []
    if result.mismatch is not None:
        run = result.mismatch
        index = run.mismatch or 0
        lines += [f"FALSIFIED: QEMU, the harness driver and the model disagree at step "
                  f"{index + 1} of a timeline ({_timelines(result.runs)} run; shrunk):",
                  *report_lines(run)]
        code = EXIT_FALSIFIED
    elif result.undecided is not None:
        lines.append(f"UNKNOWN: after {_timelines(result.runs)}, the run could not be "
                     f"decided: {result.undecided}")
        if result.undecided_run is not None:
            lines += [*format_run(result.undecided_run),
                      "  qtest/QMP transcript (> sent to QEMU, < received):",
                      *format_transcript(result.undecided_run)]
        code = EXIT_UNKNOWN
    else:
        lines.append(f"PASS: {_timelines(result.runs)}, 0 mismatches: QEMU, the harness driver "
                     "and the model agree on every step (events, data, virtual times to the "
                     "nanosecond, timer deadlines)")
        code = EXIT_HOLDS
    lines += ["  coverage (QEMU's side):", *result.coverage.lines(),
              f"(seed {result.seed}: rerun with --seed {result.seed} to reproduce; "
              f"{result.seconds:.1f} s)"]
    return lines, code


def _timelines(count: int) -> str:
    return f"{count} timeline" + ("" if count == 1 else "s")


def cmd_e2e(args: argparse.Namespace) -> int:
    binary, tree, name = _binary_and_tree(args)
    target = resolve(str(tree))
    seed_value = seed_of(args)
    bounds = Profile(E2E.name, args.runs, args.steps)
    paint, phases = Painter(sys.stdout), Phases(sys.stderr)
    derived = target_policy(target)
    if derived.unknown:  # the model would run with a guessed key: no verdict to give
        print(f"UNKNOWN: the throttle policy of {target.monitor_c} could not be derived "
              "from the C: " + "; ".join(f"the key of {event}: {why}"
                                         for event, why in derived.unknown.items()))
        return EXIT_UNKNOWN
    try:
        with open_subject(binary, target, bounds.steps, derived.policy) as subject:
            print("\n".join(_header(subject, name, bounds, seed_value)), flush=True)
            with phases.phase(f"{bounds.describe()} on QEMU, the harness driver and the model"):
                result = search(subject, bounds, seed_value)
    except QemuError as error:
        raise QthrottleError(f"{binary}: {' '.join(str(error).split())}") from None
    lines, code = _report(result)
    print("\n".join(paint(line) for line in lines))
    return code


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "e2e", help="the reference model against a real qemu-system binary under qtest",
        description="Runs generated timelines (RTC_CHANGE, BLOCK_IO_ERROR with report, ignore "
        "and stop on four disks, QUORUM_REPORT_BAD; clock steps around window ends) on a "
        "qemu-system-x86_64 under qtest, on the harness driver of the same monitor.c and on "
        "the reference model, and compares the QMP events: event, data and virtual time to "
        "the nanosecond. A disagreement is shown as a timeline with the QEMU command line and "
        "the qtest/QMP transcript. Exit: 0 all agree, 1 a disagreement, 2 input or tool "
        "error, 3 QEMU or the harness could not be driven (unknown).")
    command.add_argument("--qemu", metavar="BINARY",
                         help="a qtest-capable qemu-system-x86_64 of yours (default: the one "
                         "`qthrottle fetch-qemu --build` made)")
    command.add_argument("--tree", metavar="DIR",
                         help="the QEMU source BINARY was built from (default: the build's; "
                         "for --qemu, read from meson-info beside it)")
    add_seed(command)
    command.add_argument("--runs", type=positive(int, "whole number"), default=E2E.runs,
                         metavar="N", help=f"timelines (default {E2E.runs})")
    command.add_argument("--steps", type=positive(int, "whole number"), default=E2E.steps,
                         metavar="N", help=f"steps per timeline, at most (default {E2E.steps})")
    command.set_defaults(func=cmd_e2e)
