"""qthrottle diff OLD NEW: what changed in the throttle between two versions.

OLD and NEW are QEMU trees, monitor.c files or case-study names; NEW may also
be a patch, applied with `patch -p1` to a temporary copy of OLD's monitor/ and
qapi/ (OLD must then be a tree). The report, on one screen:
1. per event: rate and key members old -> new, and the queue function's
   decision compared by z3 for every valid event (proofs.decision_diff):
   "unchanged (proved)", or each change with its condition and a witness;
2. the list of throttle changes, one line each;
3. the invariants' status old -> new (z3 proofs; --stateful adds the
   stateful engine, slow);
4. a dynamic diff: both sanitized C drivers on the same generated timelines,
   the first divergence minimised and shown side by side (divergence.py).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from qthrottle.common import EXIT_ERROR, EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN, TARGET_HELP
from qthrottle.divergence import (
    DEFAULT_STEPS,
    DEFAULT_TIMELINES,
    Bounds,
    DynamicDiff,
    divergence_json,
    dynamic_diff,
    side_by_side,
)
from qthrottle.harness.driver import Crash
from qthrottle.harness.target import Target, resolve
from qthrottle.model.ghash import Record
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.qapi_schema import Catalog
from qthrottle.proofs.decision_diff import (
    CHANGED,
    UNKNOWN,
    EventDiff,
    ThrottleDiff,
    describe_outcomes,
    diff_throttles,
    key_text,
    listed,
    rate_text,
)
from qthrottle.proofs.engine import DEFAULT_TIMEOUT_MS, PROVEN_INVARIANTS, ProofReport, prove_target
from qthrottle.proofs.report import bounds as proof_bounds
from qthrottle.stateful import PROFILES, SearchResult
from qthrottle.target_policy import verify_target

PATCHED_DIRS = ("monitor/", "qapi/")  # what qthrottle reads of a tree
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


class PatchError(Exception):
    """The patch cannot be read or does not apply: an input error (exit 2)."""


# ------------------------------------------------------------------ patches

_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


@dataclass
class FilePatch:
    path: str  # inside the tree (one leading component stripped, as -p1)
    text: str


def is_patch(path: Path) -> bool:
    """A file holding a unified diff (not a monitor.c)."""
    if not path.is_file():
        return False
    text = path.read_text(errors="replace")
    return bool(re.search(r"^\+\+\+ ", text, re.M) and re.search(r"^@@ -\d", text, re.M))


def _patch_path(header: str) -> str:
    name = header[4:].split("\t")[0].strip()
    return name.split("/", 1)[1] if "/" in name else name


def split_patch(text: str) -> List[FilePatch]:
    """The file sections of a unified diff, hunks counted so '--- ' lines inside stay put."""
    lines = text.splitlines(keepends=True)
    sections: List[FilePatch] = []
    start = 0  # first line of the current section's header ("diff --git ...")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff "):
            start = i
        if not (line.startswith("--- ") and i + 1 < len(lines)
                and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        header_start = start if start <= i and not any(
            lines[j].startswith(("--- ", "@@")) for j in range(start, i)) else i
        target = lines[i + 1] if not lines[i + 1].startswith("+++ /dev/null") else line
        i += 2
        while i < len(lines) and (match := _HUNK.match(lines[i])):
            old_count = int(match.group(1) or 1)
            new_count = int(match.group(2) or 1)
            i += 1
            while i < len(lines) and (old_count > 0 or new_count > 0):
                kind = lines[i][:1]
                if kind in (" ", "\n", "\r"):
                    old_count, new_count = old_count - 1, new_count - 1
                elif kind == "-":
                    old_count -= 1
                elif kind == "+":
                    new_count -= 1
                elif kind != "\\":
                    break  # a truncated hunk: patch reports it
                i += 1
            while i < len(lines) and lines[i].startswith("\\"):
                i += 1
        sections.append(FilePatch(_patch_path(target), "".join(lines[header_start:i])))
        start = i
    return sections


def apply_patch(tree: Path, patch: Path, workdir: Path) -> Tuple[Path, List[str]]:
    """A copy of @tree's monitor/ and qapi/ with @patch applied; the files it skipped."""
    if not (tree / "monitor" / "monitor.c").is_file():
        raise PatchError(f"{tree}: a patch applies to a QEMU tree (a directory with "
                         "monitor/monitor.c and qapi/), not to this")
    patch_program = shutil.which("patch")
    if patch_program is None:
        raise PatchError("the 'patch' program is needed to apply a patch "
                         "(Debian package patch)")
    try:
        sections = split_patch(patch.read_text())
    except (OSError, UnicodeDecodeError) as error:
        raise PatchError(f"{patch}: cannot read the patch: {error}") from None
    kept = [s for s in sections if s.path.startswith(PATCHED_DIRS)]
    skipped = [s.path for s in sections if not s.path.startswith(PATCHED_DIRS)]
    if not kept:
        raise PatchError(f"{patch}: the patch changes nothing under monitor/ or qapi/"
                         + (f" (it changes {', '.join(skipped)})" if skipped else ""))
    copy = workdir / "tree"
    for directory in ("monitor", "qapi"):
        if (tree / directory).is_dir():
            shutil.copytree(tree / directory, copy / directory)
    filtered = workdir / "monitor-qapi.patch"
    filtered.write_text("".join(s.text for s in kept))
    command = [patch_program, "-p1", "--batch", "--forward", "--no-backup-if-mismatch",
               "-d", str(copy), "-i", str(filtered)]
    # A dry run first, so that a failing patch leaves nothing half applied behind.
    for run in ([*command, "--dry-run"], command):
        result = subprocess.run(run, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise PatchError(f"{patch} does not apply to {tree}: "
                             f"{_patch_failure(result.stdout + result.stderr)}")
    return copy, skipped


def _patch_failure(output: str) -> str:
    """The failing file and hunk(s) from patch's output, in one line."""
    current = "?"
    problems: List[str] = []
    for line in output.splitlines():
        found = re.match(r"(?:checking|patching) file (.+)", line)
        if found:
            current = found.group(1).strip("'\"")
        elif ("FAILED" in line and " out of " not in line) or "malformed" in line \
                or "Reversed" in line or "can't find file" in line or "No such file" in line:
            problems.append(f"{current}: {line.strip().rstrip('.')}")
    return "; ".join(problems) or " ".join(output.split())[:200] or "patch failed"


# ---------------------------------------------------------------- the run

@dataclass
class Version:
    """One side of the diff: the target, its schema and its invariants."""

    label: str
    target: Target
    catalog: Catalog
    proofs: ProofReport
    stateful: Optional[SearchResult] = None
    crashed: Dict[int, Crash] = field(default_factory=dict)  # seen by the dynamic diff

    def status(self, invariant: int) -> str:
        proved: Optional[str] = self.proofs.status(invariant) \
            if invariant in PROVEN_INVARIANTS else None
        run = self.stateful
        if invariant in self.crashed or (run is not None and invariant in run.falsified):
            return "FALSIFIED"
        if run is not None and run.unknown and proved != "FALSIFIED":
            return "UNKNOWN"
        if proved is not None:
            return proved
        return "PASS" if run is not None else "-"

    @property
    def falsified(self) -> List[int]:
        return [n for n in INVARIANTS if self.status(n) == "FALSIFIED"]

    @property
    def unknown(self) -> bool:
        return any(self.status(n) == "UNKNOWN" for n in INVARIANTS)


def _version(label: str, target: Target, args: argparse.Namespace, seed: int) -> Version:
    catalog = target.catalog("pass --old-qapi-dir/--new-qapi-dir")
    proofs = prove_target(target, args.timeout_ms, replay_in_c=False)
    stateful = verify_target(target, PROFILES["quick"], seed) if args.stateful else None
    return Version(label, target, catalog, proofs, stateful)


@dataclass
class DiffRun:
    """Everything `qthrottle diff` found, before it is printed."""

    old: Version
    new: Version
    throttle: ThrottleDiff
    dynamic: Optional[DynamicDiff]
    skipped: List[str]  # patch files outside monitor/ and qapi/
    seed: int
    timeout_ms: int
    stateful: bool

    @property
    def code(self) -> int:
        """The exit code: NEW's status (see DESCRIPTION)."""
        if self.new.falsified:
            return EXIT_FALSIFIED
        if self.new.unknown or self.throttle.unknown or (
                self.dynamic is not None and self.dynamic.unknown):
            return EXIT_UNKNOWN
        return EXIT_HOLDS


def run_diff(args: argparse.Namespace) -> DiffRun:
    """Both versions through every engine; PatchError if NEW is a patch that does not apply."""
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    with tempfile.TemporaryDirectory(prefix="qthrottle-diff-") as workdir:
        old_target, new_target, skipped = _targets(args, Path(workdir))
        old = _version("old", old_target, args, seed)
        new = _version("new", new_target, args, seed)
        throttle = diff_throttles(old_target.extract(), old.catalog, new_target.extract(),
                                  new.catalog, args.timeout_ms)
        dynamic = _dynamic(old, new, throttle, Bounds(args.timelines, args.steps, seed))
    if dynamic is not None:
        old.crashed, new.crashed = dynamic.falsified("old"), dynamic.falsified("new")
    return DiffRun(old, new, throttle, dynamic, skipped, seed, args.timeout_ms, args.stateful)


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        run = run_diff(args)
    except PatchError as error:
        print(f"qthrottle: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report_json(run), indent=2))
    else:
        print("\n".join(report_text(run)))
    return run.code


def _targets(args: argparse.Namespace, workdir: Path) -> Tuple[Target, Target, List[str]]:
    old_qapi = Path(args.old_qapi_dir) if args.old_qapi_dir else None
    new_qapi = Path(args.new_qapi_dir) if args.new_qapi_dir else None
    if is_patch(Path(args.old)):
        raise PatchError(f"{args.old} is a patch: give the tree first, the patch second")
    old = resolve(args.old, old_qapi)
    patch = Path(args.new)
    if not is_patch(patch):
        return old, resolve(args.new, new_qapi), []
    tree, skipped = apply_patch(Path(args.old), patch, workdir)
    patched = resolve(str(tree), new_qapi)
    return old, replace(patched, name=f"{args.old} + {patch.name}"), skipped


def _dynamic(old: Version, new: Version, throttle: ThrottleDiff,
             bounds: Bounds) -> Optional[DynamicDiff]:
    if bounds.timelines <= 0:
        return None
    rates = [e.rate_old for e in throttle.events] + [e.rate_new for e in throttle.events]
    throttled = [e.event for e in throttle.events if e.rate_old or e.rate_new]
    focus = list(dict.fromkeys(c.event for c in throttle.changes))
    return dynamic_diff(old.target, new.target, old.catalog, new.catalog, rates,
                        throttled, focus, bounds)


# ------------------------------------------------------------ text report

def _qmp(record: Record) -> str:
    event, data = record
    return json.dumps({"event": event} if data is None else {"event": event, "data": data})


def _arrow(old: str, new: str) -> str:
    return old if old == new else f"{old} -> {new}"


def _decision_text(e: EventDiff) -> str:
    relation = e.key_relation
    if e.decision == UNKNOWN or (relation is not None and relation.status == UNKNOWN):
        return "UNKNOWN (see below)"
    if not (e.in_old and e.in_new):
        where = "new event" if e.in_new else "removed event"
        return f"{where}: {describe_outcomes(e.outcomes)}"
    if e.decision == CHANGED or (relation is not None and relation.status == CHANGED):
        return "CHANGED"
    return "unchanged (proved)"


def _event_lines(e: EventDiff) -> List[str]:
    rate = _arrow(rate_text(e.rate_old), rate_text(e.rate_new)) if e.in_old and e.in_new \
        else rate_text(e.rate_new if e.in_new else e.rate_old)
    old_key, new_key = key_text(e.key_old, e.key_unknown[0]), key_text(e.key_new,
                                                                        e.key_unknown[1])
    key = _arrow(old_key, new_key) if e.in_old and e.in_new \
        else (new_key if e.in_new else old_key)
    lines = [f"  {e.event:<30} {rate:<14} {key:<22} {_decision_text(e)}"]
    for change in e.changes:
        lines.append(f"      {change.describe(e.event)}")
        witness = change.witness
        if witness:
            lines.append(f"        witness: {_qmp(witness['new'])}")
            if witness["old"] != witness["new"]:
                lines.append(f"        (old schema: {_qmp(witness['old'])})")
    relation = e.key_relation
    if relation is not None and relation.status == CHANGED:
        lines.append(f"      key relation: {relation.describe(e.event)}")
        for name, record in relation.witness.items():
            lines.append(f"        {name} = {_qmp(record)}")
    return lines


def _collapsible(e: EventDiff) -> bool:
    """In both versions, rate none in both, no change: one line shared with its kind."""
    return (e.in_old and e.in_new and not e.rate_old and not e.rate_new
            and e.decision != CHANGED)


def report_text(run: DiffRun) -> List[str]:
    """The report for people: one screen."""
    old, new, throttle, skipped = run.old, run.new, run.throttle, run.skipped
    lines = [f"qthrottle diff: {old.target.name} -> {new.target.name}"]
    for version in (old, new):
        lines.append(f"  {version.label}: {version.target.monitor_c} (schema "
                     f"{version.target.qapi_dir}, {len(version.catalog.events)} events)")
    if skipped:
        lines.append(f"  patch: not applied (outside monitor/ and qapi/): {listed(skipped)}")
    lines.append(f"  {proof_bounds(run.timeout_ms)}")
    lines += ["", f"per event: rate, key members, decision of the queue function "
                  f"(z3, every valid event; {throttle.seconds:.1f} s):",
              f"  {'EVENT':<30} {'RATE':<14} {'KEY':<22} DECISION"]
    collapsed: Dict[str, List[str]] = {}
    for e in throttle.events:
        if _collapsible(e):
            collapsed.setdefault(_decision_text(e), []).append(e.event)
        elif e.in_old and e.in_new or e.throttled_somewhere:
            lines += _event_lines(e)
    for decision, names in collapsed.items():
        lines.append(f"  {len(names)} other events ({listed(names)}): rate none in both, "
                     f"decision {decision}")
    for in_new, what in ((True, "added"), (False, "removed")):
        names = throttle.schema_only(in_new)
        if names:
            lines.append(f"  schema: {len(names)} event(s) {what}, never throttled: "
                         f"{listed(names)}")
    changes = throttle.changes
    lines += ["", f"throttle changes ({len(changes)}):"]
    lines += [f"  {c.text}" for c in changes] or ["  none"]
    lines += [f"  UNKNOWN: {u}" for u in throttle.unknown]
    lines += [""] + _invariant_lines(run)
    lines += [""] + _dynamic_lines(run.dynamic, old, new)
    meaning = {EXIT_HOLDS: "no invariant falsified in NEW, nothing unknown",
               EXIT_FALSIFIED: "NEW falsifies invariant(s) "
                               + ", ".join(str(n) for n in new.falsified),
               EXIT_UNKNOWN: "nothing falsified in NEW, but something is UNKNOWN"}
    lines += ["", f"exit {run.code}: {meaning[run.code]}"]
    return lines


def _invariant_lines(run: DiffRun) -> List[str]:
    old, new = run.old, run.new
    engines = f"z3 proofs in {old.proofs.seconds:.1f} s and {new.proofs.seconds:.1f} s"
    if run.stateful:
        engines += f", stateful engine ({PROFILES['quick'].describe()}, seed {run.seed})"
    else:
        engines += "; 8 is a property of runs: add --stateful; a crash in the " \
            "dynamic diff counts for 7 or 8"
    lines = [f"invariants, old -> new ({engines}):"]
    for number, name in INVARIANTS.items():
        before, after = old.status(number), new.status(number)
        mark = "   (changed)" if before != after else ""
        lines.append(f"  {number}  {name:<62} {_arrow(before, after)}{mark}")
    for version in (old, new):
        for number, crash in version.crashed.items():
            lines.append(f"  {version.label.upper()} crashed in the dynamic diff: "
                         f"{crash.summary()} (invariant {number}; qthrottle verify "
                         "gives a minimal timeline)")
    return lines


def _dynamic_lines(dynamic: Optional[DynamicDiff], old: Version, new: Version) -> List[str]:
    if dynamic is None:
        return ["dynamic diff: not run (--timelines 0)"]
    lines = [f"dynamic diff (both sanitized C drivers on the same timelines; "
             f"{dynamic.bounds.describe()}; {dynamic.seconds:.1f} s):",
             f"  events queued: {listed(dynamic.events)}"]
    if dynamic.unknown:
        lines.append(f"  UNKNOWN: {dynamic.unknown}")
    divergence = dynamic.divergence
    if divergence is None:
        if not dynamic.unknown:
            lines.append(f"  no divergence in {dynamic.tried} timelines")
    else:
        lines.append(f"  first divergence in timeline {divergence.timeline}, minimised to "
                     f"{len(divergence.operations)} operation(s) ({divergence.replays} "
                     f"replays), at step {divergence.step + 1}:")
        lines += side_by_side(divergence, old.catalog, new.catalog)
        if divergence.old_operations == divergence.new_operations:
            lines.append(f"  replay (Driver.run): {divergence.new_operations!r}")
        else:
            lines.append(f"  replay old (Driver.run): {divergence.old_operations!r}")
            lines.append(f"  replay new (Driver.run): {divergence.new_operations!r}")
    lines.append(f"  (seed {dynamic.bounds.seed}: rerun with --seed {dynamic.bounds.seed} "
                 "to reproduce)")
    return lines


# ------------------------------------------------------------ JSON report

def _event_json(e: EventDiff) -> Dict[str, Any]:
    relation = e.key_relation
    return {
        "event": e.event, "in_old": e.in_old, "in_new": e.in_new,
        "rate_ns": {"old": e.rate_old, "new": e.rate_new},
        "key": {"old": None if e.key_old is None else list(e.key_old),
                "new": None if e.key_new is None else list(e.key_new)},
        "key_unknown": {"old": e.key_unknown[0] or None, "new": e.key_unknown[1] or None},
        "decision": e.decision if e.in_old and e.in_new else None,
        "reason": e.reason,
        "changes": [{"old": c.old, "new": c.new, "condition": c.condition, "exact": c.exact,
                     "text": c.describe(e.event),
                     "witness": {side: {"event": r[0], "data": r[1]}
                                 for side, r in c.witness.items()}} for c in e.changes],
        "outcomes": [{"outcome": o, "condition": c} for o, c in e.outcomes],
        "key_relation": None if relation is None else {
            "status": relation.status, "reason": relation.reason,
            "condition": relation.condition, "equal_old": relation.equal_old,
            "equal_new": relation.equal_new,
            "witness": {n: {"event": r[0], "data": r[1]} for n, r in relation.witness.items()}},
    }


def report_json(run: DiffRun) -> Dict[str, Any]:
    """The report for scripts (--json)."""
    old, new, throttle, dynamic = run.old, run.new, run.throttle, run.dynamic

    def version(v: Version) -> Dict[str, Any]:
        return {"target": v.target.name, "monitor_c": str(v.target.monitor_c),
                "schema": str(v.target.qapi_dir), "events": len(v.catalog.events)}

    report: Dict[str, Any] = {
        "old": version(old), "new": version(new), "patch_skipped": run.skipped,
        "timeout_ms": run.timeout_ms,
        "events": [_event_json(e) for e in throttle.events],
        "changes": [{"event": c.event, "kind": c.kind, "text": c.text}
                    for c in throttle.changes],
        "schema": {"added": throttle.schema_only(True),
                   "removed": throttle.schema_only(False)},
        "unknown": throttle.unknown,
        "invariants": {str(n): {"old": old.status(n), "new": new.status(n)}
                       for n in INVARIANTS},
        "stateful": run.stateful,
        "seed": run.seed,
        "dynamic": None,
        "exit": run.code,
    }
    if dynamic is not None:
        report["dynamic"] = {
            "seed": dynamic.bounds.seed, "timelines": dynamic.bounds.timelines,
            "steps": dynamic.bounds.steps, "tried": dynamic.tried, "events": dynamic.events,
            "unknown": dynamic.unknown,
            "crashes": {side: crash.summary() for side, crash in dynamic.crashes.items()},
            "divergence": divergence_json(dynamic.divergence) if dynamic.divergence else None}
    return report


# ------------------------------------------------------------------- parser

def _positive_ms(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of milliseconds")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


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
    command.add_argument("--timeout-ms", type=_positive_ms, default=DEFAULT_TIMEOUT_MS,
                         metavar="N",
                         help=f"z3 timeout per solver query (default {DEFAULT_TIMEOUT_MS})")
    command.add_argument("--seed", type=int, help="seed of the timelines (printed when "
                         "not given)")
    command.add_argument("--timelines", type=_count, default=DEFAULT_TIMELINES, metavar="N",
                         help=f"dynamic diff: timelines to try, at most (default "
                         f"{DEFAULT_TIMELINES}; 0 skips the dynamic diff)")
    command.add_argument("--steps", type=_count, default=DEFAULT_STEPS, metavar="N",
                         help=f"dynamic diff: operations per timeline, at most (default "
                         f"{DEFAULT_STEPS})")
    command.add_argument("--stateful", action="store_true",
                         help="also run the stateful engine on both versions (slow)")
    command.add_argument("--json", action="store_true", help="machine-readable output")
    command.set_defaults(func=cmd_diff)
