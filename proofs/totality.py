"""Invariant 7 (totality) from the abort obligations of the translated C.

Every place where the C can abort QEMU carries its path condition and why it
aborts (translate.py, library.py): a read of a member that is missing, a read
as another type than the schema's, or an abort reached (assert & co, a NULL
string to strcmp, a division by zero). For each one the solver lists the
events for which it fails, the schema's say on the member's presence set
aside: those are the Failures that model.invariants.total judges against the
schema (a "missing" mandatory member is fine: every valid event carries it).
The hash and equality count for records the queue function looks up; the
queue function's own aborts (before its decision) for every valid event,
since they abort QEMU just the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import z3

from qthrottle.harness.extract import Extraction
from qthrottle.model.ghash import Record
from qthrottle.model.invariants import Failure, total

from .callbacks import Callbacks
from .execution import Abort, Unsupported
from .solve import FALSIFIED, PROVED, UNKNOWN, readable, timeout
from .space import EventSpace, SymbolicRecord

Term = Any
# role -> names of the records its function takes
ROLES = {"hash": ("a",), "equal": ("stored", "key"), "queue": ("event",)}


@dataclass
class Witness:
    role: str
    abort: Abort
    records: Dict[str, SymbolicRecord]
    constraints: List[Term]  # the abort executes, on valid records
    fails: Term  # ... and fails this way
    subject: SymbolicRecord  # the record whose event is reported
    preferences: List[Tuple[Term, int]]


@dataclass
class TotalityVerdict:
    status: str
    reason: str
    role: str = ""
    events: Dict[str, Record] = field(default_factory=dict)
    findings: List[str] = field(default_factory=list)


def check_totality(space: EventSpace, extraction: Extraction, timeout_ms: int) -> TotalityVerdict:
    failures: List[Failure] = []
    witnesses: Dict[Failure, Witness] = {}
    unknown: List[str] = []
    for role, names in ROLES.items():
        cb = Callbacks(space, extraction)
        records = [cb.record(name) for name in names]
        try:
            call = cb.translation(role, *records)
            in_table = [cb.reaches_table(r) for r in records] if role != "queue" else []
        except Unsupported as error:
            unknown.append(str(error))
            continue
        solver = z3.Solver()
        solver.set("timeout", timeout_ms)
        solver.add(*in_table, *(r.valid() for r in records))
        answer = solver.check()
        if answer != z3.sat:
            unknown.append(f"vacuous: no valid event reaches the {role} function"
                           if answer == z3.unsat else timeout(timeout_ms, solver, role))
            continue
        for abort in call.aborts:
            for kind, fails in (("missing", abort.absent), ("mistyped", abort.mistyped),
                                ("abort", abort.aborts)):
                if z3.is_false(z3.simplify(fails)):
                    continue
                # A member's presence is left to the solver: the schema judges it.
                free = abort.member if kind == "missing" else None
                base = [*in_table, *(r.valid(free=free if r is abort.record else None)
                                     for r in records), abort.reach]
                subject = abort.record or records[0]
                witness = Witness(role, abort, cb.records, base, fails, subject,
                                  cb.preferences())
                found, problem = _events_failing(space, witness, timeout_ms)
                if problem:
                    unknown.append(problem)
                for event in found:
                    failure = Failure(event, kind, abort.member, abort.getter, abort.call)
                    if failure not in witnesses:
                        failures.append(failure)
                        witnesses[failure] = witness
    violations = total(failures, space.catalog)
    if violations:
        findings = []
        for violation in violations:
            abort = witnesses[violation.failure].abort
            findings.append(f"{extraction.path}:{abort.line}: {abort.role} "
                            f"({abort.function}): {abort.call}: {violation}")
        first = witnesses[violations[0].failure]
        index = space.index[violations[0].event]
        model = readable([*first.constraints, first.fails, first.subject.event == index],
                         first.preferences, timeout_ms)
        events = {name: r.concrete(model) for name, r in first.records.items()} if model else {}
        return TotalityVerdict(FALSIFIED, findings[0], first.role, events, findings)
    if unknown:
        return TotalityVerdict(UNKNOWN, unknown[0], findings=unknown)
    return TotalityVerdict(PROVED, "for every valid event, the queue function (up to its "
                                   "decision), the hash and the equality read only members "
                                   "present on their path, as their type, and reach no abort")


def _events_failing(space: EventSpace, witness: Witness,
                    timeout_ms: int) -> Tuple[List[str], Optional[str]]:
    """The events of witness.subject for which the abort executes and fails."""
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*witness.constraints, witness.fails)
    found: List[str] = []
    while True:
        answer = solver.check()
        if answer == z3.unsat:
            return found, None
        if answer == z3.unknown:
            return found, timeout(timeout_ms, solver, f"the abort of {witness.abort.call}")
        event = witness.subject.event
        index = solver.model().eval(event, model_completion=True).as_long()
        found.append(space.names[index])
        solver.add(event != index)
