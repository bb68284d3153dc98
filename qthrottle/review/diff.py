"""qthrottle diff OLD NEW: what changed in the throttle between two versions.

OLD and NEW are QEMU trees, monitor.c files or case-study names; NEW may also
be a patch or a series (an mbox, a directory of .patch files: qthrottle.review.series),
applied in order with `patch -p1` to a temporary copy of OLD's monitor/ and
qapi/ (OLD must then be a tree); or, with a git checkout, two revisions
(qthrottle.review.revisions). The report, on one screen:
1. per event: rate and key members old -> new, and the queue function's
   decision compared by z3 for every valid event (proofs.decision_diff):
   "unchanged (proved)", or each change with its condition and a witness;
2. the list of throttle changes, one line each;
3. the invariants' status old -> new (z3 proofs; --stateful adds the
   stateful engine, slow);
4. a dynamic diff: both sanitized C drivers on the same generated timelines,
   the first divergence minimised and shown side by side (divergence.py);
5. the findings (qthrottle.review.findings): what NEW falsifies or cannot decide,
   and the lint warnings the change introduces or changes, each pointing at the
   patch line (or the line of NEW) that causes it.
"""
from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN, Status
from qthrottle.engines.bounds import DYNAMIC_DIFF, PROFILES, Profile
from qthrottle.engines.divergence import (
    Bounds,
    DynamicDiff,
    divergence_json,
    dynamic_diff,
    side_by_side,
)
from qthrottle.engines.stateful import SearchResult
from qthrottle.harness.driver import Crash
from qthrottle.harness.target import Target, resolve
from qthrottle.model.ghash import Record
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.policy import Policy
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
from qthrottle.proofs.engine import PROVEN_INVARIANTS, ProofReport, prove_target
from qthrottle.proofs.policy import DerivedPolicy
from qthrottle.proofs.report import AGAIN, took
from qthrottle.proofs.report import bounds as proof_bounds
from qthrottle.proofs.solve import DEFAULT_TIMEOUT_MS
from qthrottle.review.counterexample import sanitizer_text
from qthrottle.review.findings import CHANGE, FALSIFIED, LINT, UNKNOWN_FINDING, Finding, find
from qthrottle.review.lint import LintDelta, lint_delta, lint_extraction
from qthrottle.review.patches import (
    PATCH,
    PatchError,
    apply_sections,
    copy_throttle_dirs,
    is_patch,
)
from qthrottle.review.provenance import AppliedPatch, Lineage, placed
from qthrottle.review.render_findings import finding_json, finding_lines
from qthrottle.review.revisions import export, merge_base, resolve_revision, split_range
from qthrottle.review.series import Series, is_series, read_series
from qthrottle.review.target_policy import target_policy, verify_target
from qthrottle.review.timeline_view import Block, Page, Section
from qthrottle.review.views import divergence_timeline
from qthrottle.review.workers import worker_pool

# ---------------------------------------------------------------- the run

@dataclass(frozen=True)
class DiffOptions:
    """What to compare and within which bounds (the command line's arguments)."""

    old: str  # a tree, a monitor.c or a case study; a revision (or OLD..NEW) with git
    new: str  # the same, or a patch or series to OLD (a tree); "" with git and a range
    old_qapi_dir: Optional[str] = None
    new_qapi_dir: Optional[str] = None
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    seed: int = 0
    dynamic: Profile = DYNAMIC_DIFF  # runs 0: no dynamic diff
    stateful: bool = False  # also the stateful engine on both versions
    git: Optional[str] = None  # OLD and NEW are revisions of this git checkout

    def command(self) -> str:
        """The command line that reproduces this diff."""
        words = ["qthrottle", "diff"] + (["--git", self.git] if self.git else []) + \
            [self.old] + ([self.new] if self.new else [])
        for option, value in (("--old-qapi-dir", self.old_qapi_dir),
                              ("--new-qapi-dir", self.new_qapi_dir)):
            words += [option, value] if value else []
        return shlex.join(words + self.bound_words())

    def bound_words(self) -> List[str]:
        """The options that reproduce these bounds (the defaults left out)."""
        words = ["--seed", str(self.seed)]
        if self.timeout_ms != DEFAULT_TIMEOUT_MS:
            words += ["--timeout-ms", str(self.timeout_ms)]
        if self.dynamic != DYNAMIC_DIFF:
            words += ["--timelines", str(self.dynamic.runs), "--steps", str(self.dynamic.steps)]
        return words + (["--stateful"] if self.stateful else [])


@dataclass
class Version:
    """One side of the diff: the target, its schema and its invariants."""

    label: str
    target: Target
    catalog: Catalog
    derived: DerivedPolicy  # the policy its C implements (the lanes of the HTML timeline)
    proofs: ProofReport
    stateful: Optional[SearchResult] = None
    crashed: Dict[int, Crash] = field(default_factory=dict)  # seen by the dynamic diff

    def status(self, invariant: int) -> str:
        proved: Optional[str] = self.proofs.status(invariant) \
            if invariant in PROVEN_INVARIANTS else None
        run = self.stateful
        if invariant in self.crashed or (run is not None and invariant in run.falsified):
            return Status.FALSIFIED
        if run is not None and (run.unknown or invariant in run.undecided) \
                and proved != Status.FALSIFIED:
            return Status.UNKNOWN
        if proved is not None:
            return proved
        return Status.PASS if run is not None else "-"

    @property
    def policy(self) -> Policy:
        return self.derived.policy

    @property
    def falsified(self) -> List[int]:
        return [n for n in INVARIANTS if self.status(n) == Status.FALSIFIED]

    @property
    def unknown(self) -> bool:
        return any(self.status(n) == Status.UNKNOWN for n in INVARIANTS)


def analyse(label: str, target: Target, options: DiffOptions) -> Version:
    """One version through the proofs (and the stateful engine if asked). The proofs run
    in a fresh worker process, while the stateful engine runs here: z3's search depends
    on the terms its process built before (a bounded check that takes 0.8 s in a fresh
    process ran past the 10 s timeout after a review's earlier patches), so each tree is
    proved as `qthrottle prove TREE` proves it."""
    catalog = target.catalog("pass --old-qapi-dir/--new-qapi-dir")
    derived = target_policy(target, options.timeout_ms)
    with worker_pool(1) as pool:
        proving = pool.submit(prove_target, target, options.timeout_ms, False, derived)
        stateful = verify_target(target, PROFILES["quick"], options.seed, derived) \
            if options.stateful else None
        proofs = proving.result()
    return Version(label, target, catalog, derived, proofs, stateful)


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
    lint: LintDelta = field(default_factory=LintDelta)  # what the change does to the lint
    findings: List[Finding] = field(default_factory=list)
    series: Optional[Series] = None  # NEW was these patches applied to OLD
    lineages: Dict[str, Lineage] = field(default_factory=dict)  # "old"/"new": whose lines

    def shown(self, version: Version, path: object) -> str:
        """A file of @version as reports name it (a private copy's path is no name)."""
        lineage = self.lineages.get(version.label)
        return str(path) if lineage is None else lineage.rewrite(str(path))

    @property
    def code(self) -> int:
        """The exit code: NEW's status (see the command's description)."""
        if self.new.falsified:
            return EXIT_FALSIFIED
        if self.new.unknown or self.throttle.unknown or (
                self.dynamic is not None and self.dynamic.unknown):
            return EXIT_UNKNOWN
        return EXIT_HOLDS


def run_diff(options: DiffOptions) -> DiffRun:
    """Both versions through every engine; QthrottleError for a patch that does not apply,
    an unknown revision, a target that cannot be read."""
    with tempfile.TemporaryDirectory(prefix="qthrottle-diff-") as workdir:
        old, new, series = _sides(options, Path(workdir))
        run = compare(analyse("old", old.target, options), analyse("new", new.target, options),
                      options, [] if series is None else _skipped(series))
        run.series = series
        run.lineages = {"old": old.lineage, "new": new.lineage}
        run.findings = find(run, old.lineage, new.lineage)
    return run


def compare(old: Version, new: Version, options: DiffOptions,
            skipped: Sequence[str] = ()) -> DiffRun:
    """OLD and NEW (analysed) compared: decisions (z3), lint, the dynamic diff. No findings:
    those need to know where each tree's lines come from (findings.find)."""
    old_extraction, new_extraction = old.target.extract(), new.target.extract()
    throttle = diff_throttles(old_extraction, old.catalog, new_extraction, new.catalog,
                              options.timeout_ms, (old.derived, new.derived))
    dynamic = _dynamic(old, new, throttle, Bounds(options.dynamic, options.seed))
    if dynamic is not None:
        old = replace(old, crashed=dynamic.falsified("old"))
        new = replace(new, crashed=dynamic.falsified("new"))
    lint = lint_delta(*(lint_extraction(extraction, version.catalog, version.policy,
                                        version.derived.key_reads, version.derived.unknown)
                        for extraction, version in ((old_extraction, old),
                                                    (new_extraction, new))))
    return DiffRun(replace(old, label="old"), replace(new, label="new"), throttle, dynamic,
                   list(skipped), options.seed, options.timeout_ms, options.stateful, lint)


@dataclass(frozen=True)
class Side:
    """A version to analyse and where its lines come from."""

    target: Target
    lineage: Lineage


def user_side(target: Target) -> Side:
    """A tree, file or case study of the user's, analysed where it is."""
    root = target.monitor_c.parent
    if root.name == "monitor" and target.qapi_dir is not None \
            and target.qapi_dir.parent == root.parent:
        root = root.parent
    return Side(target, Lineage(root, f"{root}/"))


def _skipped(series: Series) -> List[str]:
    return list(dict.fromkeys(f for p in series.patches for f in p.other_files))


def _sides(options: DiffOptions, workdir: Path) -> Tuple[Side, Side, Optional[Series]]:
    old_qapi = Path(options.old_qapi_dir) if options.old_qapi_dir else None
    new_qapi = Path(options.new_qapi_dir) if options.new_qapi_dir else None
    if options.git is not None:
        return _revisions(options, workdir, old_qapi, new_qapi) + (None,)
    if is_patch(Path(options.old)):
        raise PatchError(f"{options.old} is a patch: give the tree first, the patch second")
    old = user_side(resolve(options.old, old_qapi))
    path = Path(options.new)
    if not is_series(path):
        return old, user_side(resolve(options.new, new_qapi)), None
    series = read_series(path)
    tree = Path(options.old)
    copy = copy_throttle_dirs(tree, workdir / "tree")
    applied = apply_series(copy, series, PATCH, str(tree))
    if not applied:
        raise PatchError(f"{path}: the patch changes nothing under monitor/ or qapi/"
                         + (f" (it changes {', '.join(_skipped(series))})"
                            if _skipped(series) else ""))
    patched = resolve(str(copy), new_qapi)
    new = Side(replace(patched, name=f"{options.old} + {path.name}"),
               Lineage(copy, "", tuple(applied)))
    return old, new, series


def apply_series(copy: Path, series: Series, method: str, onto: str) -> List[AppliedPatch]:
    """Every patch of @series in order on the private tree @copy (throttle code only);
    each patch that changed something, placed where it applied."""
    applied = []
    for patch in series.patches:
        kept = [s for s in patch.sections if s.throttle_code]
        if not kept:
            continue
        what = str(series.path) if len(series.patches) == 1 else \
            f"{series.path} {patch.label} ({patch.title})"
        apply_sections(copy, kept, method, what, onto)
        applied.append(placed(patch.label, kept, copy))
    return applied


def _revisions(options: DiffOptions, workdir: Path, old_qapi: Optional[Path],
               new_qapi: Optional[Path]) -> Tuple[Side, Side]:
    assert options.git is not None
    repository = Path(options.git)
    first, second, from_base = split_range(options.old, options.new)
    old_rev = resolve_revision(repository, first)
    new_rev = resolve_revision(repository, second)
    if from_base:
        old_rev = merge_base(old_rev, new_rev)
    sides = []
    for label, revision, qapi in (("old", old_rev, old_qapi), ("new", new_rev, new_qapi)):
        tree = export(revision, workdir / label)
        target = replace(resolve(str(tree), qapi), name=revision.describe())
        sides.append(Side(target, Lineage(tree, f"{revision.name}:")))
    return sides[0], sides[1]


def _dynamic(old: Version, new: Version, throttle: ThrottleDiff,
             bounds: Bounds) -> Optional[DynamicDiff]:
    if bounds.profile.runs <= 0:
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
        lines.append(f"  {version.label}: {run.shown(version, version.target.monitor_c)} "
                     f"(schema {run.shown(version, version.target.qapi_dir)}, "
                     f"{len(version.catalog.events)} events)")
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
    located = {f.summary: f.where for f in run.findings if f.kind == CHANGE}
    for change in changes:
        lines.append(f"  {change.text}")
        lines += [f"    at {where.describe()}" for where in located.get(change.text, [])[:2]]
    lines += [] if changes else ["  none"]
    lines += [f"  UNKNOWN: {u}" for u in throttle.unknown]
    lines += [""] + _invariant_lines(run)
    lines += _finding_lines(run)
    lines += [""] + _dynamic_lines(run.dynamic, old, new)
    lines += ["", _verdict(run)]
    return lines


def _verdict(run: DiffRun) -> str:
    meaning = {EXIT_HOLDS: "no invariant falsified in NEW, nothing unknown",
               EXIT_FALSIFIED: "NEW falsifies invariant(s) "
                               + ", ".join(str(n) for n in run.new.falsified),
               EXIT_UNKNOWN: "nothing falsified in NEW, but something is UNKNOWN"}
    return f"exit {run.code}: {meaning[run.code]}"


def _invariant_lines(run: DiffRun) -> List[str]:
    old, new = run.old, run.new
    engines = f"z3 proofs in {old.proofs.seconds:.1f} s and {new.proofs.seconds:.1f} s"
    if old.proofs.cached or new.proofs.cached:
        engines = "z3 proofs: " + ", ".join(
            f"{v.label.upper()} {took(v.proofs)}" for v in (old, new)) + f" ({AGAIN})"
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


def _finding_lines(run: DiffRun) -> List[str]:
    """What NEW falsifies or cannot decide, and the lint the change introduces or changes,
    each with the line that causes it (the table above has the statuses)."""
    shown = [f for f in run.findings if f.kind in (FALSIFIED, UNKNOWN_FINDING, LINT)]
    if not shown:
        return []
    lines = ["", "findings (each with the line that causes it):"]
    for finding in shown:
        lines += finding_lines(finding)
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
        return {"target": v.target.name, "monitor_c": run.shown(v, v.target.monitor_c),
                "schema": run.shown(v, v.target.qapi_dir), "events": len(v.catalog.events)}

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
        "findings": [finding_json(f) for f in run.findings],
        "exit": run.code,
    }
    if dynamic is not None:
        report["dynamic"] = {
            "seed": dynamic.bounds.seed, "timelines": dynamic.bounds.profile.runs,
            "steps": dynamic.bounds.profile.steps, "tried": dynamic.tried, "events": dynamic.events,
            "unknown": dynamic.unknown,
            "crashes": {side: crash.summary() for side, crash in dynamic.crashes.items()},
            "divergence": divergence_json(dynamic.divergence) if dynamic.divergence else None}
    return report


# ------------------------------------------------------------ HTML report

def html_section(run: DiffRun, anchor: str = "dynamic-diff") -> Section:
    """The diff as a page section: the throttle changes, the invariants old -> new, and
    the first divergence of the dynamic diff as a timeline, OLD against NEW."""
    old, new, dynamic = run.old, run.new, run.dynamic
    facts = [f"throttle change: {c.text}" for c in run.throttle.changes] or [
        "throttle changes: none (z3, every valid event)"]
    facts += [f"UNKNOWN: {u}" for u in run.throttle.unknown]
    facts += [f"invariant {n} ({INVARIANTS[n]}): {_arrow(old.status(n), new.status(n))}"
              for n in INVARIANTS if old.status(n) != new.status(n)]
    timeline = None
    blocks: List[Block] = []
    if dynamic is None:
        facts.append("dynamic diff: not run (--timelines 0)")
    else:
        facts.append(f"dynamic diff: {dynamic.bounds.describe()}, {dynamic.tried} timeline(s) "
                     f"tried, {dynamic.seconds:.1f} s; events queued: {listed(dynamic.events)}")
        if dynamic.unknown:
            facts.append(f"UNKNOWN: {dynamic.unknown}")
        divergence = dynamic.divergence
        if divergence is None:
            facts.append(f"no divergence in {dynamic.tried} timelines")
        else:
            facts.append(f"first divergence in timeline {divergence.timeline}, minimised to "
                         f"{len(divergence.operations)} operation(s), at step "
                         f"{divergence.step + 1}")
            timeline = divergence_timeline(divergence, old.policy, new.policy,
                                           old.target.name, new.target.name)
            for label, operations, result in (("old", divergence.old_operations, divergence.old),
                                              ("new", divergence.new_operations, divergence.new)):
                blocks.append(Block(f"replay {label.upper()} (qthrottle.harness.driver."
                                    "Driver.run)", repr(operations)))
                if result.crash is not None:
                    blocks.append(Block(f"sanitizer / shim report ({label.upper()})",
                                        "\n".join(sanitizer_text(result.crash))))
    return Section(anchor, f"{old.target.name} -> {new.target.name}", _verdict(run),
                   tuple(facts), timeline, tuple(blocks))


def html_page(run: DiffRun) -> Page:
    """qthrottle diff --html: one section, and the invariants old -> new as a table."""
    rows = tuple((f"{n} {name}", run.old.status(n), run.new.status(n))
                 for n, name in INVARIANTS.items())
    facts = tuple(f"{v.label.upper()}: {v.target.name} ({v.target.monitor_c})"
                  for v in (run.old, run.new))
    dynamic = run.dynamic
    seed = f"seed {run.seed}: rerun with --seed {run.seed} to reproduce"
    facts += (proof_bounds(run.timeout_ms), seed if dynamic is not None else "")
    return Page(f"qthrottle diff {run.old.target.name} -> {run.new.target.name}",
                tuple(f for f in facts if f), (("invariant", "old", "new"), *rows),
                (html_section(run),), _verdict(run))
