"""qthrottle verify [TARGET]: both engines on one target, or every bundled case against
the verdict it is meant to get."""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import Future
from contextlib import nullcontext
from typing import Any, List, Optional

from qthrottle.cli.options import (
    TARGET_HELP,
    add_engine_options,
    add_target,
    check_writable,
    positive,
    seed_of,
    target_from,
)
from qthrottle.cli.terminal import Painter, Phases
from qthrottle.core import Interrupted, QthrottleError
from qthrottle.engines.bounds import PROFILES
from qthrottle.engines.selfcheck import DEFAULT_TIMEOUT_S as SELFCHECK_TIMEOUT_S
from qthrottle.engines.selfcheck import SelfcheckReport, run_selfcheck
from qthrottle.engines.stateful import SearchResult
from qthrottle.harness.target import bundled_cases
from qthrottle.proofs.engine import ProofReport, prove_target
from qthrottle.proofs.policy import DerivedPolicy
from qthrottle.proofs.report import bounds
from qthrottle.review.explain import explain_lines
from qthrottle.review.lint import lint_extraction
from qthrottle.review.reports import (
    VerifyReport,
    interrupted_lines,
    target_lines,
    target_result,
    to_json,
    to_junit,
)
from qthrottle.review.target_policy import target_policy, verify_target
from qthrottle.review.workers import cores, worker_pool


def _write_reports(args: argparse.Namespace, report: VerifyReport) -> None:
    try:
        if args.json is not None:
            with open(args.json, "w", encoding="utf-8") as stream:
                json.dump(to_json(report), stream, indent=2)
                stream.write("\n")
        if args.junit is not None:
            to_junit(report).write(args.junit, encoding="utf-8", xml_declaration=True)
    except OSError as error:
        raise QthrottleError(f"cannot write the report: {error}") from None


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the invariants of one target, or of every bundled case against its expectation."""
    check_writable("--json", args.json)
    check_writable("--junit", args.junit)
    profile = PROFILES[args.profile]
    seed_value = seed_of(args)
    targets = [target_from(args.target, args.qapi_dir)] if args.target else bundled_cases()
    paint, phases = Painter(sys.stdout), Phases(sys.stderr)
    report = VerifyReport(seed_value, profile, args.timeout_ms, bundled=not args.target,
                          strict=args.strict)
    start = time.perf_counter()
    crosshair: Optional[SelfcheckReport] = None
    if args.explain:  # CrossHair checks the model, the same for every target: once
        with phases.phase("CrossHair on the reference model's contracts (qthrottle selfcheck)"):
            crosshair = run_selfcheck(args.crosshair_timeout)
    print(f"qthrottle verify: seed {seed_value}; stateful engine, {profile.describe()}")
    print(f"                  and z3 proofs, {bounds(args.timeout_ms)}")
    # Several targets: each target's policy is derived here first, then its proofs go to a
    # worker process, one per core, while the stateful searches run here, one target after
    # another (their C drivers are processes of their own, mostly waiting on this one).
    with worker_pool(min(len(targets), cores())) if len(targets) > 1 \
            else nullcontext() as pool:
        policies: List[DerivedPolicy] = []
        proving: List[Optional[Future[ProofReport]]] = []
        for index, target in enumerate(targets, 1):
            with phases.phase(f"[{index}/{len(targets)}] {target.name}: the throttle policy, "
                              "derived from the C"):
                policies.append(target_policy(target, args.timeout_ms))
            proving.append(pool.submit(prove_target, target, args.timeout_ms,
                                       derived=policies[-1]) if pool else None)
        for index, (target, derived, proved) in enumerate(zip(targets, policies, proving), 1):
            print(f"\n== {target.name} ({target.monitor_c})", flush=True)
            step = f"[{index}/{len(targets)}] {target.name}"
            search: Optional[SearchResult] = None
            try:
                with phases.phase(f"{step}: stateful search, {profile.describe()}"):
                    search = verify_target(target, profile, seed_value, derived)
                with phases.phase(f"{step}: z3 proofs"):
                    proofs = (proved.result() if proved is not None
                              else prove_target(target, args.timeout_ms, derived=derived))
            except Interrupted as stop:  # what this target had found, before the exit
                found = search or stop.partial
                if isinstance(found, SearchResult):
                    print("\n".join(paint(line) for line in interrupted_lines(found)),
                          flush=True)
                raise
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
    _write_reports(args, report)
    # The bundled demo passes when every case gets the verdict it is meant to get.
    return report.exit_code


def add_command(sub: argparse._SubParsersAction[Any]) -> None:
    command = sub.add_parser(
        "verify", help="check the throttle's invariants against the real C (stateful "
        "engine and z3 proofs)",
        description=f"TARGET is {TARGET_HELP}; without TARGET, every bundled case is "
        "checked against the verdict it is meant to get. Policy lint warnings are printed "
        "and reported; they fail the run only with --strict. Exit: 0 holds, 1 falsified "
        "(or a lint warning under --strict), 2 input or tool error, 3 unknown.")
    add_target(command, optional=True)
    add_engine_options(command)
    command.add_argument("--explain", action="store_true",
                         help="also print, per target, the invariant x engine table: which "
                         "engines check each invariant, on what bound, with what result "
                         "(runs CrossHair on the reference model once; its result does not "
                         "change the exit code: see qthrottle selfcheck)")
    command.add_argument("--crosshair-timeout", type=positive(float, "number of seconds"),
                         default=SELFCHECK_TIMEOUT_S, metavar="S",
                         help="with --explain: CrossHair's CPU seconds per condition "
                         f"(default {SELFCHECK_TIMEOUT_S:g})")
    command.add_argument("--strict", action="store_true",
                         help="policy lint warnings fail the run (exit 1) when nothing else did")
    command.add_argument("--json", metavar="FILE",
                         help="also write the report as JSON (docs/report.schema.json)")
    command.add_argument("--junit", metavar="FILE",
                         help="also write JUnit XML: a testcase per target x invariant")
    command.set_defaults(func=cmd_verify)
