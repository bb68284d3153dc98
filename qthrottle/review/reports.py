"""What `qthrottle verify` concluded, as data: per target, per invariant, per engine.

``cmd_verify`` collects one ``TargetResult`` per target into a ``VerifyReport``,
then prints it (``target_lines``), writes it as JSON (``to_json``; its schema is
docs/report.schema.json) and as JUnit XML (``to_junit``). The exit code comes
from the report too (``VerifyReport.exit_code``), so every output agrees with it.

Per invariant, each engine says what it concluded and within which bounds:
the stateful engine PASS / FALSIFIED / UNKNOWN (bounds: profile, runs, steps,
seed), z3 PROVED / FALSIFIED / UNKNOWN or NOT_APPLICABLE for invariants that are
properties of runs (bounds: solver version, timeout per query). An invariant
FALSIFIED by either engine is FALSIFIED; else UNKNOWN if either engine is
UNKNOWN (never a pass); else it HOLDS.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional

import z3

from qthrottle.cases import MAY_ALSO_BREAK, verdict_as_expected
from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN, Status
from qthrottle.engines.bounds import Profile
from qthrottle.engines.stateful import CompareKeys, Counterexample, SearchResult, format_timeline
from qthrottle.harness.target import Target
from qthrottle.model.invariants import INVARIANTS
from qthrottle.proofs.engine import PROVEN_INVARIANTS, ProofReport
from qthrottle.proofs.policy import DerivedPolicy
from qthrottle.proofs.report import NOT_PROVEN, bounds, details, summary
from qthrottle.review.lint import LintWarning

SCHEMA_VERSION = 1
STATEFUL, Z3 = "stateful", "z3"
PASS, PROVED, FALSIFIED, UNKNOWN = Status.PASS, Status.PROVED, Status.FALSIFIED, Status.UNKNOWN
NOT_APPLICABLE, HOLDS = Status.NOT_APPLICABLE, Status.HOLDS
# What a bundled case is meant to do with one invariant.
MUST_BREAK, MAY_BREAK, MUST_HOLD = "break", "may-break", "hold"
LINT_TESTCASE = "policy lint"


@dataclass
class Law:
    """One z3 theorem of an invariant (invariant 1 has three: reflexive, symmetric, ...)."""

    law: str
    status: str  # PROVED, FALSIFIED or UNKNOWN
    reason: str
    seconds: float
    confirmed: Optional[bool]  # did the C replay confirm the counterexample


@dataclass
class EngineCheck:
    """What one engine concluded about one invariant of one target, within which bounds."""

    engine: str  # STATEFUL or Z3
    status: str  # stateful: PASS/FALSIFIED/UNKNOWN; z3: PROVED/FALSIFIED/UNKNOWN/NOT_APPLICABLE
    bounds: Dict[str, Any]
    reason: Optional[str] = None  # FALSIFIED: what broke; UNKNOWN, NOT_APPLICABLE: why
    counterexample: Optional[str] = None  # the timeline (stateful), the events and replay (z3)
    steps: Optional[int] = None  # stateful FALSIFIED: operations in the shrunk timeline
    seconds: Optional[float] = None  # z3 only: the stateful search is timed per target
    laws: List[Law] = field(default_factory=list)  # z3 only

    @property
    def checked(self) -> bool:
        return self.status != NOT_APPLICABLE


@dataclass
class InvariantResult:
    number: int
    name: str
    checks: List[EngineCheck]
    expected: Optional[str] = None  # bundled demo only: MUST_BREAK, MAY_BREAK or MUST_HOLD

    @property
    def title(self) -> str:
        return f"invariant {self.number}: {self.name}"

    @property
    def status(self) -> str:
        statuses = {check.status for check in self.checks}
        return next((s for s in (FALSIFIED, UNKNOWN) if s in statuses), HOLDS)

    def check(self, engine: str) -> EngineCheck:
        return next(c for c in self.checks if c.engine == engine)

    @property
    def as_expected(self) -> Optional[bool]:
        if self.expected is None:
            return None
        if self.status == UNKNOWN:
            return False
        if self.status == FALSIFIED:
            return self.expected in (MUST_BREAK, MAY_BREAK)
        return self.expected in (MUST_HOLD, MAY_BREAK)


@dataclass
class TargetResult:
    name: str
    monitor_c: str
    qapi_dir: Optional[str]
    invariants: List[InvariantResult]
    lint: List[LintWarning]
    searches: int  # stateful searches run (one more after each invariant found broken)
    stateful_events: str  # the events the search queued (a bound)
    stateful_seconds: float
    stateful_unknown: Optional[str]  # why the stateful search could not finish
    proof_seconds: float
    proof_lines: List[str]  # the z3 engine's own table and details, as printed
    policy: DerivedPolicy  # the throttle policy the code implements, judging 5 and 6
    must_break: Optional[FrozenSet[int]] = None  # bundled demo only
    may_also_break: FrozenSet[int] = frozenset()

    @property
    def broken(self) -> FrozenSet[int]:
        return frozenset(i.number for i in self.invariants if i.status == FALSIFIED)

    @property
    def undecided(self) -> bool:
        return self.stateful_unknown is not None or any(
            i.status == UNKNOWN for i in self.invariants)

    @property
    def as_expected(self) -> Optional[bool]:
        if self.must_break is None:
            return None
        return verdict_as_expected(self.name, self.broken) and not self.undecided

    def invariant(self, number: int) -> InvariantResult:
        return next(i for i in self.invariants if i.number == number)


@dataclass
class VerifyReport:
    seed: int
    profile: Profile
    timeout_ms: int
    bundled: bool  # no TARGET: every bundled case against the verdict it is meant to get
    strict: bool
    targets: List[TargetResult] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.timezone.utc).isoformat(timespec="seconds"))
    seconds: float = 0.0

    @property
    def stateful_bounds(self) -> Dict[str, Any]:
        return {"profile": self.profile.name, "runs": self.profile.runs,
                "steps": self.profile.steps, "seed": self.seed}

    @property
    def z3_bounds(self) -> Dict[str, Any]:
        return {"solver": f"z3 {z3.get_version_string()}", "timeout_ms": self.timeout_ms}

    @property
    def warnings(self) -> int:
        return sum(len(t.lint) for t in self.targets)

    @property
    def exit_code(self) -> int:
        """0 holds, 1 falsified (or not as expected; or a warning under --strict), 3 unknown."""
        if self.bundled:
            failed = any(not t.as_expected for t in self.targets)
        else:
            failed = any(t.broken for t in self.targets)
        if failed or (self.strict and self.warnings):
            return EXIT_FALSIFIED
        if not self.bundled and any(t.undecided for t in self.targets):
            return EXIT_UNKNOWN
        return EXIT_HOLDS


# ------------------------------------------------------------ building


def target_result(report: VerifyReport, target: Target, search: SearchResult,
                  proofs: ProofReport, lint: List[LintWarning],
                  policy: DerivedPolicy) -> TargetResult:
    """One target's results from both engines, and its lint; appended to @report."""
    must_break = target.expected_broken if report.bundled else None
    may_also = MAY_ALSO_BREAK.get(target.name, frozenset()) if must_break is not None \
        else frozenset()
    invariants = []
    for number, name in INVARIANTS.items():
        expected = None
        if must_break is not None:
            expected = MUST_BREAK if number in must_break else \
                MAY_BREAK if number in may_also else MUST_HOLD
        invariants.append(InvariantResult(
            number, name, [_stateful_check(report, search, number),
                           _z3_check(report, proofs, number)], expected))
    result = TargetResult(
        name=target.name, monitor_c=str(target.monitor_c),
        qapi_dir=str(target.qapi_dir) if target.qapi_dir else None, invariants=invariants,
        lint=lint, searches=search.searches, stateful_events=search.events,
        stateful_seconds=search.seconds,
        stateful_unknown=search.unknown, proof_seconds=proofs.seconds,
        proof_lines=summary(proofs) + details(proofs), policy=policy, must_break=must_break,
        may_also_break=may_also)
    report.targets.append(result)
    return result


def counterexample_lines(example: Counterexample) -> List[str]:
    """A stateful counterexample: its timeline, the replay call, the sanitizer report."""
    lines = format_timeline(example)
    timeline = [op for op in example.operations if not isinstance(op, CompareKeys)]
    if timeline:
        lines.append(f"    replay (qthrottle.harness.driver.Driver.run): {timeline!r}")
    if example.crash is not None:
        lines.append("    sanitizer / shim report:")
        lines += ["      " + line for line in example.crash.report.strip().splitlines()[:12]]
    return lines


def interrupted_lines(search: SearchResult) -> List[str]:
    """A target whose check was cut short by a signal: what the stateful engine had found."""
    lines = [f"   interrupted: {search.searches} search(es) in {search.seconds:.1f} s; "
             f"{search.events}"]
    for number, example in sorted(search.falsified.items()):
        lines.append(f"\n  invariant {number} FALSIFIED ({len(example.steps)} operation(s)): "
                     f"{example.message}")
        lines += counterexample_lines(example)
    if not search.falsified:
        lines.append("   nothing falsified before the interruption; the rest is UNKNOWN")
    return lines


def _stateful_check(report: VerifyReport, search: SearchResult, number: int) -> EngineCheck:
    check = EngineCheck(STATEFUL, PASS, report.stateful_bounds)
    example = search.falsified.get(number)
    if example is not None:
        check.status = FALSIFIED
        check.reason, check.steps = example.message, len(example.steps)
        check.counterexample = "\n".join(counterexample_lines(example))
    elif search.unknown:
        check.status, check.reason = UNKNOWN, search.unknown
    elif number in search.undecided:
        check.status, check.reason = UNKNOWN, search.undecided[number]
    return check


def _z3_check(report: VerifyReport, proofs: ProofReport, number: int) -> EngineCheck:
    if number not in PROVEN_INVARIANTS:
        return EngineCheck(Z3, NOT_APPLICABLE, report.z3_bounds,
                           reason=NOT_PROVEN.lstrip("- ").strip("()"))
    results = [r for r in proofs.results if r.invariant == number]
    status = proofs.status(number) or UNKNOWN
    check = EngineCheck(Z3, status, report.z3_bounds,
                        seconds=sum(r.seconds for r in results),
                        laws=[Law(r.law, r.status, r.reason, r.seconds, r.confirmed)
                              for r in results])
    if not results:
        check.reason = "no proof ran"
    elif status != PROVED:
        check.reason = "; ".join(f"{r.law}: {r.reason}" for r in results if r.status == status)
        found = ProofReport(proofs.target, proofs.timeout_ms, results, check.seconds or 0.0)
        check.counterexample = "\n".join(line for line in details(found) if line)
    return check


# -------------------------------------------------------------- text


def target_lines(result: TargetResult) -> List[str]:
    """What `qthrottle verify` prints for one target after its header."""
    lines = [f"   {result.searches} search(es) in {result.stateful_seconds:.1f} s; "
             f"{result.stateful_events}"]
    for invariant in result.invariants:
        lines.append(f"  {invariant.number}  {invariant.name:<62} "
                     f"{invariant.check(STATEFUL).status}")
    if result.stateful_unknown:
        lines.append(f"  UNKNOWN: {result.stateful_unknown}")
    for invariant in result.invariants:
        check = invariant.check(STATEFUL)
        if check.status == FALSIFIED:
            lines.append(f"\n  invariant {invariant.number} FALSIFIED ({check.steps} "
                         f"operation(s)): {check.reason}")
            lines.append(check.counterexample or "")
    lines.append("\n" + "\n".join(result.proof_lines))
    lines += policy_lines(result.policy)
    lines += lint_lines(result.lint)
    if result.must_break is not None:
        meant = f"{sorted(result.must_break) or 'none'}"
        if result.may_also_break:
            meant += f" (may also break {sorted(result.may_also_break)})"
        lines.append(f"   meant to break: {meant}; broke: {sorted(result.broken) or 'none'} -> "
                     + ("as expected" if result.as_expected else "NOT AS EXPECTED"))
    return lines


def policy_lines(derived: DerivedPolicy) -> List[str]:
    """What the policy derivation assumed, and the keys it could not derive."""
    throttled = [e for e in derived.policy.rates if derived.policy.throttled(e)]
    keyed = [f"{e} {derived.key_text(e)}" for e in throttled
             if derived.policy.keys.get(e) or e in derived.unknown]
    lines = ["", f"   throttle policy, derived from the C: {len(throttled)} throttled event(s)"
             + (f"; {', '.join(keyed)}" if keyed else "") + "; the others per event name"]
    lines += [f"  assumed: {note}" for note in derived.assumptions]
    lines += [f"  key of {event} UNKNOWN: {reason}" for event, reason in derived.unknown.items()]
    return lines


def lint_lines(warnings: List[LintWarning]) -> List[str]:
    if not warnings:
        return ["", "   policy lint: no warnings"]
    lines = ["", f"   policy lint: {len(warnings)} warning(s)"]
    for warning in warnings:
        first, *rest = warning.lines()
        lines.append(f"  warning: {first}")
        lines += [f"    {line.strip()}" for line in rest]
    return lines


# -------------------------------------------------------------- JSON


def to_json(report: VerifyReport) -> Dict[str, Any]:
    """The report as JSON data, as docs/report.schema.json describes it."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "qthrottle", "version": _version()},
        "started": report.started,
        "seconds": round(report.seconds, 3),
        "mode": "bundled" if report.bundled else "target",
        "strict": report.strict,
        "seed": report.seed,
        "engines": {STATEFUL: report.stateful_bounds, Z3: report.z3_bounds},
        "exit_code": report.exit_code,
        "targets": [_target_json(t) for t in report.targets],
    }


def _target_json(result: TargetResult) -> Dict[str, Any]:
    return {
        "name": result.name,
        "monitor_c": result.monitor_c,
        "qapi_dir": result.qapi_dir,
        "stateful": {"searches": result.searches,
                     "events": result.stateful_events,
                     "seconds": round(result.stateful_seconds, 3),
                     "unknown": result.stateful_unknown},
        "z3": {"seconds": round(result.proof_seconds, 3)},
        "broken": sorted(result.broken),
        "undecided": result.undecided,
        "policy": {
            "rates_ns": dict(result.policy.policy.rates),
            "keys": {event: None if event in result.policy.unknown
                     else list(result.policy.policy.keys.get(event, ()))
                     for event in result.policy.policy.rates},
            "assumptions": list(result.policy.assumptions),
            "unknown": dict(result.policy.unknown)},
        "expected": None if result.must_break is None else {
            "must_break": sorted(result.must_break),
            "may_also_break": sorted(result.may_also_break),
            "as_expected": result.as_expected},
        "invariants": [{
            "number": i.number,
            "name": i.name,
            "status": i.status,
            "expected": i.expected,
            "checks": [_check_json(c) for c in i.checks],
        } for i in result.invariants],
        "lint": [{
            "event": w.event, "rule": w.rule, "member": w.member,
            "explanation": w.explanation, "schema": w.schema,
            "rate_table": w.rate_table, "key_read": w.key_read,
        } for w in result.lint],
    }


def _check_json(check: EngineCheck) -> Dict[str, Any]:
    return {
        "engine": check.engine,
        "status": check.status,
        "bounds": check.bounds,
        "reason": check.reason,
        "counterexample": check.counterexample,
        "steps": check.steps,
        "seconds": None if check.seconds is None else round(check.seconds, 3),
        "laws": [{"law": law.law, "status": law.status, "reason": law.reason,
                  "seconds": round(law.seconds, 3), "confirmed": law.confirmed}
                 for law in check.laws],
    }


def _version() -> str:
    try:
        return importlib.metadata.version("qthrottle")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------- JUnit


def to_junit(report: VerifyReport) -> ET.ElementTree:
    """JUnit XML: a testsuite per target, a testcase per invariant and one for the lint.

    FALSIFIED is a <failure> whose text is the timeline; UNKNOWN is an <error>
    (never a pass, never a skip); NOT_APPLICABLE engines are listed as properties.
    In the bundled demo an invariant a case is meant to break passes when it
    breaks (property expected=break, the timeline in <system-out>) and fails when
    it holds. The lint testcase fails only under --strict.
    """
    root = ET.Element("testsuites", name="qthrottle verify")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for target in report.targets:
        suite = ET.SubElement(root, "testsuite", name=target.name, timestamp=report.started,
                              time=_seconds(target.stateful_seconds + target.proof_seconds))
        properties = ET.SubElement(suite, "properties")
        for name, value in (("monitor_c", target.monitor_c), ("qapi_dir", target.qapi_dir),
                            ("seed", report.seed), ("profile", report.profile.describe()),
                            ("z3", bounds(report.timeout_ms))):
            ET.SubElement(properties, "property", name=name, value=str(value))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for invariant in target.invariants:
            _invariant_case(suite, target, invariant, counts)
        _lint_case(suite, target, report.strict, counts)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", _seconds(report.seconds))
    ET.indent(root)
    return ET.ElementTree(root)


def _invariant_case(suite: ET.Element, target: TargetResult, invariant: InvariantResult,
                    counts: Dict[str, int]) -> None:
    z3_seconds = invariant.check(Z3).seconds or 0.0
    case = ET.SubElement(suite, "testcase", classname=target.name, name=invariant.title,
                         time=_seconds(z3_seconds))
    counts["tests"] += 1
    properties = ET.SubElement(case, "properties")
    for check in invariant.checks:
        ET.SubElement(properties, "property", name=check.engine, value=check.status)
    if invariant.expected is not None:
        ET.SubElement(properties, "property", name="expected", value=invariant.expected)
    text = _findings(invariant)
    if invariant.status == UNKNOWN:
        reasons = "; ".join(f"{c.engine}: {c.reason}" for c in invariant.checks
                            if c.status == UNKNOWN)
        _child(case, "error", f"UNKNOWN (never a pass): {reasons}", "UNKNOWN", text)
        counts["errors"] += 1
    elif invariant.as_expected is False:
        if invariant.status == FALSIFIED:
            message = f"{target.name} is meant to keep {invariant.title}, but it broke"
        else:
            message = f"{target.name} is meant to break {invariant.title}, but no engine " \
                "falsified it"
        _child(case, "failure", message, "NOT_AS_EXPECTED", text)
        counts["failures"] += 1
    elif invariant.status == FALSIFIED and invariant.as_expected is None:
        first = next(c for c in invariant.checks if c.status == FALSIFIED)
        _child(case, "failure", f"FALSIFIED by {first.engine}: {first.reason}", FALSIFIED, text)
        counts["failures"] += 1
    elif text:  # an expected break: the evidence goes to the log
        ET.SubElement(case, "system-out").text = _xml_safe(text)


def _findings(invariant: InvariantResult) -> str:
    """Each engine's finding: the stateful timeline, z3's events and replay (which repeat
    their headline), or the reason it is UNKNOWN."""
    parts = []
    for check in invariant.checks:
        if check.status in (FALSIFIED, UNKNOWN):
            repeated = check.engine == Z3 and check.counterexample
            parts.append(f"{check.engine} {check.status}" + ("" if repeated
                                                              else f": {check.reason}"))
            if check.counterexample:
                parts.append(check.counterexample)
    return "\n".join(parts)


def _lint_case(suite: ET.Element, target: TargetResult, strict: bool,
               counts: Dict[str, int]) -> None:
    case = ET.SubElement(suite, "testcase", classname=target.name, name=LINT_TESTCASE,
                         time="0")
    counts["tests"] += 1
    text = "\n".join(line for w in target.lint for line in w.lines())
    if target.lint and strict:
        _child(case, "failure", f"{len(target.lint)} policy warning(s) under --strict",
               "LINT", text)
        counts["failures"] += 1
    else:
        ET.SubElement(case, "system-out").text = _xml_safe(text) or "no warnings"


def _child(case: ET.Element, tag: str, message: str, kind: str, text: str) -> None:
    ET.SubElement(case, tag, message=_xml_safe(message), type=kind).text = _xml_safe(text)


# Characters XML 1.0 cannot carry even escaped (event data and sanitizer text may hold them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _seconds(value: float) -> str:
    return f"{value:.3f}"
