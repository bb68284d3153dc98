"""What one change (a patch, two trees, two revisions) did, as findings that point at lines.

A `DiffRun` says what changed between OLD and NEW; the findings say it the way a
reviewer acts on it, each with the lines it points at (`provenance.Location`: the
patch, hunk and added line, or a line of the base):

* an invariant NEW falsifies and OLD did not (`FALSIFIED`): its counterexample
  (the witness events), the shortest timeline replayed on NEW's sanitized C, and
  the patch lines of the functions the invariant depends on (or the line the
  engine names, for totality and crashes);
* an invariant both falsify (`STILL_FALSIFIED`), one NEW repairs (`FIXED`);
* each UNKNOWN of NEW, grouped by reason, with the C construct and its line;
* each throttle change (rate, key, decision, key relation, event added or
  removed), with its witness event and the lines that made it;
* each lint warning the change introduces or changes.

Pointing is a reading aid, not a verdict: the verdicts are the engines'.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, List, Optional, Sequence

from qthrottle.core import QthrottleError, Status
from qthrottle.harness.extract import Extraction
from qthrottle.model.ghash import Record
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.qapi_schema import Catalog
from qthrottle.proofs.decision_diff import ThrottleDiff
from qthrottle.proofs.engine import ProofResult
from qthrottle.review.counterexample import (
    Counterexample,
    Replay,
    from_proof,
    from_search,
    replay,
    sanitizer_text,
)
from qthrottle.review.lint import LintWarning, rate_entries
from qthrottle.review.provenance import Lineage, Location
from qthrottle.review.target_policy import open_subject

if TYPE_CHECKING:  # diff.py computes the findings of its runs: no import cycle at run time
    from qthrottle.review.diff import DiffRun, Version

FALSIFIED, STILL_FALSIFIED, FIXED = "FALSIFIED", "STILL FALSIFIED", "FIXED"
UNKNOWN_FINDING, CHANGE, LINT, BISECT = "UNKNOWN", "CHANGE", "LINT", "BISECT"
# The functions (extraction roles) each invariant depends on.
INVARIANT_ROLES = {1: ("equal",), 2: ("hash", "equal"), 3: ("hash", "equal", "handler"),
                   4: ("queue", "hash", "equal"), 5: ("queue", "handler"), 6: ("queue",),
                   7: ("queue", "hash", "equal"), 8: ("queue", "handler", "hash", "equal")}
CHANGE_ROLES = {"key": ("hash", "equal"), "key relation": ("equal",), "decision": ("queue",)}
_CONSTRUCT = re.compile(r"unsupported C construct: (.*)")


@dataclass
class Finding:
    """One thing a reviewer should know about a change, and the lines it points at."""

    kind: str  # FALSIFIED, STILL_FALSIFIED, FIXED, UNKNOWN_FINDING, CHANGE, LINT or BISECT
    summary: str  # one line, files named as reports name them
    invariant: Optional[int] = None
    details: List[str] = field(default_factory=list)
    where: List[Location] = field(default_factory=list)
    witness: Dict[str, Record] = field(default_factory=dict)  # name -> QMP event
    example: Optional[Counterexample] = None  # FALSIFIED: the counterexample's timeline
    replayed: Optional[Replay] = None  # ... replayed on the C of the tree it breaks
    construct: str = ""  # UNKNOWN: the C construct the proofs do not translate
    engine: str = ""  # z3, stateful, dynamic diff, lint


@dataclass(frozen=True)
class _Span:
    file: str
    first: int
    last: int


class _Code:
    """NEW's throttle functions, rate table and schema events, as spans of its tree."""

    def __init__(self, extraction: Extraction, catalog: Catalog, lineage: Lineage,
                 change: Sequence[str]) -> None:
        self.extraction, self.catalog, self.lineage = extraction, catalog, lineage
        self.change = change  # the patches that make the change under review
        self.file = lineage.relative(str(extraction.path)) or extraction.path.name
        self.spans: Dict[str, _Span] = {
            chunk.name: _Span(self.file, chunk.line, chunk.line + chunk.text.count("\n"))
            for chunk in extraction.chunks}

    def roles(self, roles: Iterable[str]) -> List[_Span]:
        names = [self.extraction.roles[r] for r in roles if r in self.extraction.roles]
        if "queue" in roles:
            names += list(self.extraction.helpers)
        return [self.spans[n] for n in dict.fromkeys(names) if n in self.spans]

    def rate_table(self) -> List[_Span]:
        name = self.extraction.rate_table_name
        return [self.spans[name]] if name in self.spans else []

    def schema(self, event: str) -> List[_Span]:
        """The event's definition with its documentation block."""
        found = self.catalog.events.get(event)
        if found is None:
            return []
        path, _, line = found.source.rpartition(":")
        file = self.lineage.relative(path)
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
            at = int(line)
        except (OSError, ValueError):
            return []
        if file is None:
            return []
        first = at
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1
        last = at
        while last < len(lines) and not lines[last].lstrip().startswith("##"):
            last += 1
        return [_Span(file, first, last)]

    def changed(self, spans: Sequence[_Span]) -> List[Location]:
        """The change's lines within @spans: statements first, braces and comments only
        when the change has nothing else there."""
        found: List[Location] = []
        for span in spans:
            found += [loc for loc in self.lineage.changed(span.file, span.first, span.last,
                                                          self.change) if loc not in found]
        statements = [loc for loc in found if not _trivial(loc)] or found
        return sorted(statements, key=lambda loc: (loc.kind != "added line", loc.line))

    def any_change(self, limit: int = 8) -> List[Location]:
        """The change's lines anywhere (when nothing narrower points)."""
        files = dict.fromkeys(file for patch in self.lineage.patches
                              if patch.label in self.change for file in patch.hunks)
        return self.changed([_Span(file, 1, 1 << 30) for file in files])[:limit]

    def made(self, location: Location) -> bool:
        """Did the change under review make this line?"""
        return location.patch in self.change


def _trivial(location: Location) -> bool:
    """A line that says nothing by itself: blank, a brace, a C comment."""
    text = location.text.strip()
    return text in ("", "{", "}", "};", "#") or text.startswith(("/*", "* ", "*/", "//")) \
        or text == "*"


def find(run: DiffRun, old: Lineage, new: Lineage) -> List[Finding]:
    """Every finding of @run; @old and @new say where the lines of each tree come from.

    Runs while both trees exist: reads NEW's schema files and replays counterexamples on
    NEW's C.
    """
    old_patches = {patch.label for patch in old.patches}
    change = [patch.label for patch in new.patches if patch.label not in old_patches]
    code = _Code(run.new.target.extract(), run.new.catalog, new, change)
    findings = _invariants(run, code, new)
    findings += _unknowns(run, old, new)
    findings += _changes(run.throttle, code, new)
    findings += _lint(run, new)
    return findings


# ------------------------------------------------------------------ invariants

def _first(results: Sequence[ProofResult], invariant: int, status: str
           ) -> Optional[ProofResult]:
    return next((r for r in results if r.invariant == invariant and r.status == status), None)


def _invariants(run: DiffRun, code: _Code, new: Lineage) -> List[Finding]:
    findings: List[Finding] = []
    for number, name in INVARIANTS.items():
        before, after = run.old.status(number), run.new.status(number)
        roles = code.changed(code.roles(INVARIANT_ROLES[number]))
        if after == Status.FALSIFIED:
            still = before == Status.FALSIFIED
            finding = _falsified(run.new, number, new, "still FALSIFIED" if still
                                 else "FALSIFIED")
            finding.kind = STILL_FALSIFIED if still else FALSIFIED
            if not still and not any(code.made(loc) for loc in finding.where):
                # No line the engine names is the change's: its lines in the functions the
                # invariant depends on, else in the witness events' schema, else all.
                finding.where += roles or code.changed(
                    [s for e in _events(finding.witness) for s in code.schema(e)]) \
                    or code.any_change()
            findings.append(finding)
        elif before == Status.FALSIFIED:
            findings.append(Finding(
                FIXED, f"invariant {number} ({name}) no longer falsified: "
                       f"{before} -> {after}", number, where=roles or code.any_change()))
    _replay(run.new, [f for f in findings if f.kind == FALSIFIED and f.example is not None])
    return findings


def _events(witness: Dict[str, Record]) -> List[str]:
    return list(dict.fromkeys(event for event, _ in witness.values()))


def _falsified(version: Version, number: int, lineage: Lineage, verb: str) -> Finding:
    """What falsified invariant @number of @version: z3 (which names the events, and
    for totality the line), else the stateful engine, else a crash in the dynamic diff."""
    name = INVARIANTS[number]
    crash = version.crashed.get(number)
    crashed = [] if crash is None else [
        f"The C crashed in the dynamic diff too: {lineage.rewrite(crash.summary())}."]
    result = _first(version.proofs.results, number, Status.FALSIFIED)
    if result is not None:
        text = "\n".join([result.reason, *result.findings])
        return Finding(FALSIFIED, f"invariant {number} ({name}) {verb} by z3 ({result.law}): "
                                  f"{lineage.rewrite(result.reason)}", number,
                       [lineage.rewrite(line) for line in result.findings[1:]]
                       + [f"z3: {fact}" for fact in result.facts] + crashed,
                       lineage.places(text), dict(result.events), from_proof(result),
                       engine="z3")
    searched = version.stateful.falsified.get(number) if version.stateful else None
    if searched is not None:
        return Finding(FALSIFIED, f"invariant {number} ({name}) {verb} by the stateful "
                                  f"engine: {lineage.rewrite(searched.message)}", number,
                       crashed, lineage.places(searched.message),
                       example=from_search(searched), engine="stateful")
    assert crash is not None  # status() says FALSIFIED: one of the three engines did
    report = "\n".join(sanitizer_text(crash))
    return Finding(FALSIFIED, f"invariant {number} ({name}) {verb}: the C crashed in the "
                              f"dynamic diff: {lineage.rewrite(crash.summary())}", number,
                   [lineage.rewrite(line) for line in sanitizer_text(crash)],
                   lineage.places(report), engine="dynamic diff",
                   example=Counterexample(number, crash.summary(), tuple(crash.operations),
                                          "dynamic diff"))


def _replay(version: Version, findings: Sequence[Finding]) -> None:
    """Each counterexample replayed on @version's sanitized C: the timeline reviewers see."""
    if not findings:
        return
    try:
        with open_subject(version.target, version.derived) as subject:
            for finding in findings:
                assert finding.example is not None and finding.invariant is not None
                finding.replayed = replay(subject, finding.invariant, finding.example.timeline)
    except QthrottleError as error:  # the C does not build: the proof's word stands
        for finding in findings:
            finding.details.append(f"not replayed on the C: {str(error).splitlines()[0]}")


# ------------------------------------------------------------------ unknowns

def _normal(reason: str, lineage: Lineage) -> str:
    """A reason without its line numbers, to tell a new UNKNOWN from an old one."""
    return re.sub(r":\d+", "", lineage.rewrite(reason))


def _unknown_reasons(version: Version) -> Dict[str, List[str]]:
    """reason -> what it leaves open, for one side's proofs (and the diff's, for NEW)."""
    reasons: Dict[str, List[str]] = {}
    for result in version.proofs.results:
        if result.status == Status.UNKNOWN:
            reasons.setdefault(result.reason, []).append(
                f"invariant {result.invariant} ({result.law})")
    if version.stateful is not None and version.stateful.unknown:
        reasons.setdefault(version.stateful.unknown, []).append("the stateful engine")
    return reasons


def _unknowns(run: DiffRun, old: Lineage, new: Lineage) -> List[Finding]:
    reasons = _unknown_reasons(run.new)
    for event in run.throttle.events:
        for what, reason in event.unknowns():
            reasons.setdefault(reason, []).append(f"the {what} of {event.event}")
    if run.dynamic is not None and run.dynamic.unknown:
        reasons.setdefault(run.dynamic.unknown, []).append("the dynamic diff")
    before = {_normal(r, old) for r in _unknown_reasons(run.old)}
    findings = []
    for reason, open_questions in reasons.items():
        construct = _CONSTRUCT.search(reason)
        shown = ", ".join(dict.fromkeys(open_questions))
        details = [] if _normal(reason, new) not in before else [
            "the same reason leaves OLD UNKNOWN too"]
        findings.append(Finding(
            UNKNOWN_FINDING, f"UNKNOWN: {shown}: {new.rewrite(reason)}", details=details,
            where=new.places(reason), construct=construct.group(1) if construct else ""))
    return findings


# ------------------------------------------------------------------ changes

def _changes(throttle: ThrottleDiff, code: _Code, new: Lineage) -> List[Finding]:
    findings = []
    rates = rate_entries(code.extraction)
    for event in throttle.events:
        decisions = iter(event.changes)  # one "decision" change each, in this order
        entry = [w for w in new.places(rates.get(event.event, "")) if code.made(w)] \
            or code.changed(code.rate_table())  # the change's lines in the rate table
        rate_changed = event.rate_old != event.rate_new
        for change in event.throttle_changes():
            witness: Dict[str, Record] = {}
            if change.kind == "rate" or (rate_changed and change.kind in CHANGE_ROLES):
                where = entry  # a new rate makes the key and the decision change too
            elif change.kind in CHANGE_ROLES:  # the functions, else the schema
                where = code.changed(code.roles(CHANGE_ROLES[change.kind])) \
                    or code.changed(code.schema(event.event))
            else:  # an event added to or removed from the schema
                where = code.changed(code.schema(event.event) + code.rate_table())
            if change.kind == "decision":
                decision = next(decisions)
                witness = {"event": decision.witness["new"]} if decision.witness else {}
            relation = event.key_relation
            if change.kind == "key relation" and relation is not None:
                witness = dict(relation.witness)
            findings.append(Finding(CHANGE, change.text, where=where, witness=witness,
                                    engine="z3"))
    return findings


# ------------------------------------------------------------------ lint

def _lint_places(warning: LintWarning, lineage: Lineage) -> List[Location]:
    return [loc for place in (warning.key_read, warning.rate_table, warning.schema) if place
            for loc in lineage.places(place)]


def _lint(run: DiffRun, new: Lineage) -> List[Finding]:
    findings = [Finding(LINT, f"lint (new, {w.rule}): {w.explanation}",
                        where=_lint_places(w, new), engine="lint") for w in run.lint.introduced]
    findings += [Finding(LINT, f"lint (changed, {after.rule}): {after.explanation}",
                         details=[f"before: {before.explanation}"],
                         where=_lint_places(after, new), engine="lint")
                 for before, after in run.lint.changed]
    findings += [Finding(LINT, f"lint (resolved, {w.rule}): {w.explanation}", engine="lint")
                 for w in run.lint.resolved]
    return findings
