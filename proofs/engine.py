"""Run every proof on one target, and replay the counterexamples: the entry point of proofs/.

Bounds: one solver timeout per query (DEFAULT_TIMEOUT_MS unless configured),
printed with every result. The proofs quantify over every valid event (any
string, any enum value, any presence of optional members); the run invariants
(3, 4, 5, 6, induction.py) over every timeline, by k-induction; they hold no
other bound.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

import z3

from qthrottle.harness.build import BuildError, build
from qthrottle.harness.driver import Driver, DriverError
from qthrottle.harness.extract import Extraction
from qthrottle.harness.target import Target
from qthrottle.model.ghash import Record
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.timeline import Operation

from . import induction
from .callbacks import Callbacks
from .execution import Unsupported
from .policy import DerivedPolicy, derive_policy
from .replay import replay, replay_run
from .solve import DEFAULT_TIMEOUT_MS, FALSIFIED, PROVED, UNKNOWN, decide
from .space import EventSpace
from .theorems import THEOREMS, Obligation
from .totality import check_totality
from .values import NotModelled

PROVEN_INVARIANTS = (1, 2, 3, 4, 5, 6, 7)  # 8 (memory safety): the stateful engine
RUN_LAW = "all timelines"  # the k-induction of invariants 3-6


@dataclass
class ProofResult:
    invariant: int
    law: str
    status: str  # PROVED, FALSIFIED or UNKNOWN
    reason: str
    events: Dict[str, Record] = field(default_factory=dict)  # the counterexample, by name
    facts: List[str] = field(default_factory=list)  # callback values in the counterexample
    findings: List[str] = field(default_factory=list)  # every violation / reason, if several
    replay_kind: str = ""
    replay: List[str] = field(default_factory=list)
    confirmed: Optional[bool] = None  # did the C do what the counterexample says
    seconds: float = 0.0
    timeline: List[Operation] = field(default_factory=list)  # a run law's counterexample
    bound: str = ""  # a run law's: "all timelines, k-induction k=1", "a timeline of 2 steps"


@dataclass
class ProofReport:
    target: str
    timeout_ms: int
    results: List[ProofResult]
    seconds: float
    policy: Optional[Policy] = None  # the policy the run invariants are judged by
    runs: Optional[induction.Strengthening] = None  # what the k-induction rests on
    not_applicable: Dict[int, str] = field(default_factory=dict)  # invariant -> why
    cached: bool = False  # kept from an earlier proof of the same inputs (remembered.py)

    def status(self, invariant: int) -> Optional[str]:
        """FALSIFIED if any of its laws is, else UNKNOWN if any is, else PROVED."""
        statuses = {r.status for r in self.results if r.invariant == invariant}
        return next((s for s in (FALSIFIED, UNKNOWN, PROVED) if s in statuses), None)

    @property
    def falsified(self) -> FrozenSet[int]:
        return frozenset(r.invariant for r in self.results if r.status == FALSIFIED)

    @property
    def unknown(self) -> bool:
        return any(r.status == UNKNOWN for r in self.results)


def _show(value: Any) -> str:
    if z3.is_true(value):
        return "TRUE"
    if z3.is_false(value):
        return "FALSE"
    return str(value.as_long()) if z3.is_bv_value(value) else str(value)


def _theorem(space: EventSpace, extraction: Extraction, invariant: int, law: str,
             theorem: Callable[[Callbacks], Obligation], timeout_ms: int,
             readable: bool = True) -> ProofResult:
    start = time.perf_counter()
    try:
        obligation = theorem(Callbacks(space, extraction))
        verdict = decide(obligation.assumptions, obligation.claims, timeout_ms,
                         obligation.preferences if readable else ())
    except Unsupported as error:
        return ProofResult(invariant, law, UNKNOWN, str(error),
                           seconds=time.perf_counter() - start)
    except (NotModelled, z3.Z3Exception) as error:
        return ProofResult(invariant, law, UNKNOWN, f"the translation failed: {error}",
                           seconds=time.perf_counter() - start)
    reason = f"counterexample to '{verdict.reason}'" if verdict.status == FALSIFIED \
        else verdict.reason
    result = ProofResult(invariant, law, verdict.status, reason, replay_kind=law)
    model = verdict.model
    if model is not None:
        result.events = {name: r.concrete(model) for name, r in obligation.records.items()}
        result.facts = [f"{label} = {_show(model.eval(term, model_completion=True))}"
                        for label, term in obligation.explain]
    result.seconds = time.perf_counter() - start
    return result


def _totality(space: EventSpace, extraction: Extraction, timeout_ms: int) -> ProofResult:
    start = time.perf_counter()
    try:
        verdict = check_totality(space, extraction, timeout_ms)
    except (NotModelled, z3.Z3Exception) as error:
        return ProofResult(7, "totality", UNKNOWN, f"the translation failed: {error}",
                           seconds=time.perf_counter() - start)
    return ProofResult(7, "totality", verdict.status, verdict.reason, verdict.events,
                       findings=verdict.findings, replay_kind=f"totality:{verdict.role}",
                       seconds=time.perf_counter() - start)


def _runs(space: EventSpace, extraction: Extraction, derived: DerivedPolicy,
          timeout_ms: int, report: ProofReport) -> None:
    """Invariants 3, 4, 5 and 6 for every timeline, by k-induction over one key."""
    start = time.perf_counter()
    if derived.unknown:
        events: Dict[str, List[str]] = {}
        for event, reason in derived.unknown.items():
            events.setdefault(reason, []).append(event)
        why = "; ".join(f"{', '.join(names)}: {reason}" for reason, names in events.items())
        report.results += [ProofResult(n, RUN_LAW, UNKNOWN, "the per-key proof needs every "
                                       f"throttled event's key, UNKNOWN here ({why})")
                           for n in induction.RUN_INVARIANTS]
        return
    try:
        prover = induction.Prover(space, extraction, derived.policy, timeout_ms)
        report.runs = prover.rests_on()
        # Where the theorem fails only FALSIFIED verdicts are reported (below).
        prover.falsified_only = report.runs.decomposition.status == FALSIFIED
        proofs = prover.prove()
    except Unsupported as error:
        report.results += [ProofResult(n, RUN_LAW, UNKNOWN, str(error),
                                       seconds=time.perf_counter() - start)
                           for n in induction.RUN_INVARIANTS]
        return
    except (NotModelled, z3.Z3Exception) as error:
        report.results += [ProofResult(n, RUN_LAW, UNKNOWN, f"the translation failed: {error}",
                                       seconds=time.perf_counter() - start)
                           for n in induction.RUN_INVARIANTS]
        return
    report.runs.satisfiable = prover.satisfiable
    decomposed = report.runs.decomposition
    seconds = time.perf_counter() - start  # the lemmas and the theorem included
    for number, proof in sorted(proofs.items()):
        if proof.status != FALSIFIED and decomposed.status == FALSIFIED:
            # Only where invariant 1 or 2 already fails (the policy's key is derived from
            # the equality): the per-key proof says nothing either way.
            report.not_applicable[number] = (
                f"the per-key proof does not apply: {decomposed.reason}")
            continue
        if proof.status != FALSIFIED and decomposed.status != PROVED:
            report.results.append(ProofResult(
                number, RUN_LAW, UNKNOWN, "the per-key proof rests on the decomposition "
                f"theorem, UNKNOWN: {decomposed.reason}", seconds=seconds))
            continue
        bound = (f"all timelines, k-induction k={proof.k}" if proof.status == PROVED else
                 f"a timeline of {len(proof.timeline)} step(s)" if proof.timeline else "")
        report.results.append(ProofResult(
            number, RUN_LAW, proof.status, proof.reason, replay_kind=RUN_LAW,
            findings=[proof.unaided] if proof.unaided else [], timeline=proof.timeline,
            bound=bound, seconds=seconds))


def prove(extraction: Extraction, catalog: Catalog, name: str,
          timeout_ms: int = DEFAULT_TIMEOUT_MS, *, stop_at_first: bool = False,
          first: Sequence[int] = (), runs: bool = True,
          derived: Optional[DerivedPolicy] = None) -> ProofReport:
    """Every theorem on one extraction, without replay, the invariants in @first first.

    @stop_at_first: stop at the first FALSIFIED one, whose counterexample is not made
    readable (qthrottle mutate needs one counterexample, no more). @runs: also the run
    invariants (3-6 for every timeline), judged by @derived, the policy derived from the
    code (derived here if not given).
    """
    start = time.perf_counter()
    space = EventSpace(catalog, extraction)
    laws: List[Tuple[int, str, Optional[Callable[[Callbacks], Obligation]]]] = [
        *THEOREMS, (7, "totality", None)]
    laws.sort(key=lambda law: law[0] not in first)
    results: List[ProofResult] = []
    for invariant, law, theorem in laws:
        results.append(_totality(space, extraction, timeout_ms) if theorem is None else
                       _theorem(space, extraction, invariant, law, theorem, timeout_ms,
                                readable=not stop_at_first))
        if stop_at_first and results[-1].status == FALSIFIED:
            runs = False
            break
    report = ProofReport(name, timeout_ms, results, 0.0)
    if runs:
        derived = derived or derive_policy(extraction, catalog, timeout_ms)
        report.policy = derived.policy
        _runs(space, extraction, derived, timeout_ms, report)
    report.seconds = time.perf_counter() - start
    return report


def replay_counterexamples(report: ProofReport, extraction: Extraction,
                           catalog: Catalog, runs_only: bool = False) -> None:
    """Run every counterexample (@runs_only: every run law's) through the sanitized C
    driver; record what it did. A run law's the C does not reproduce becomes UNKNOWN."""
    pending = [r for r in report.results if r.status == FALSIFIED and (
        r.timeline if runs_only else r.events or r.timeline)]
    if not pending:
        return
    try:
        built = build(extraction, tuple(catalog.events))
    except BuildError as error:
        for result in pending:
            result.replay = [f"not replayed: {str(error).splitlines()[0]}"]
        return
    with Driver(built.binary) as driver:
        for result in pending:
            try:
                if result.timeline:
                    assert report.policy is not None
                    result.confirmed, result.replay = replay_run(
                        driver, result.invariant, result.timeline, report.policy)
                else:
                    result.confirmed, result.replay = replay(result.replay_kind, driver,
                                                             result.events)
            except DriverError as error:
                result.replay = [f"not replayed: the driver refused it: {error}"]
            if result.timeline and not result.confirmed:
                # The per-key model breaks it, the C does not: never a verdict.
                result.status = UNKNOWN
                result.reason = (f"the per-key model breaks it ({result.reason}), the C does "
                                 "not on the same timeline")


def prove_target(target: Target, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 replay_in_c: bool = True, derived: Optional[DerivedPolicy] = None,
                 *, runs: bool = True) -> ProofReport:
    """Extract a target, prove its invariants, replay counterexamples against its C
    (without @replay_in_c, only the run laws': they rest on the per-key model, and one
    the C does not reproduce is UNKNOWN, never a verdict). Without @runs, the callback
    laws and totality only (invariants 1, 2 and 7): the run proofs cost the most. The
    proofs' result is kept and used again for the same inputs (remembered.py); the
    replays run every time."""
    from .remembered import remembered_proof  # it builds on this module

    catalog = target.catalog()
    extraction = target.extract()
    report = remembered_proof(extraction, catalog, target.name, timeout_ms, runs, derived)
    replay_counterexamples(report, extraction, catalog, runs_only=not replay_in_c)
    return report
