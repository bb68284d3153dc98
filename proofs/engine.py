"""Run every proof on one target, and replay the counterexamples: the entry point of proofs/.

Bounds: one solver timeout per query (DEFAULT_TIMEOUT_MS unless configured),
printed with every result. The proofs quantify over every valid event (any
string, any enum value, any presence of optional members); they hold no other
bound.
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
from qthrottle.model.qapi_schema import Catalog

from .callbacks import Callbacks
from .execution import Unsupported
from .replay import replay
from .solve import DEFAULT_TIMEOUT_MS, FALSIFIED, PROVED, UNKNOWN, decide
from .space import EventSpace
from .theorems import THEOREMS, Obligation
from .totality import check_totality
from .values import NotModelled

PROVEN_INVARIANTS = (1, 2, 3, 4, 7)  # 5, 6 and 8 are properties of runs: stateful engine


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


@dataclass
class ProofReport:
    target: str
    timeout_ms: int
    results: List[ProofResult]
    seconds: float

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


def prove(extraction: Extraction, catalog: Catalog, name: str,
          timeout_ms: int = DEFAULT_TIMEOUT_MS, *, stop_at_first: bool = False,
          first: Sequence[int] = ()) -> ProofReport:
    """Every theorem on one extraction, without replay, the invariants in @first first.

    @stop_at_first: stop at the first FALSIFIED one, whose counterexample is not made
    readable (qthrottle mutate needs one counterexample, no more).
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
            break
    return ProofReport(name, timeout_ms, results, time.perf_counter() - start)


def replay_counterexamples(report: ProofReport, extraction: Extraction,
                           catalog: Catalog) -> None:
    """Run every counterexample through the sanitized C driver; record what it did."""
    pending = [r for r in report.results if r.status == FALSIFIED and r.events]
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
                result.confirmed, result.replay = replay(result.replay_kind, driver,
                                                         result.events)
            except DriverError as error:
                result.replay = [f"not replayed: the driver refused it: {error}"]


def prove_target(target: Target, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 replay_in_c: bool = True) -> ProofReport:
    """Extract a target, prove its invariants, replay counterexamples against its C."""
    catalog = target.catalog()
    extraction = target.extract()
    report = prove(extraction, catalog, target.name, timeout_ms)
    if replay_in_c:
        replay_counterexamples(report, extraction, catalog)
    return report
