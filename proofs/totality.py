"""Invariant 7 (totality) from the read obligations of the translated C.

Every read that aborts QEMU when its member is missing (qdict_get_str & co,
strcmp on a qdict_get_try_str result) carries its path condition. For each
one, the solver lists the events that reach it with the member absent, the
schema's say on that member being set aside: that is the set of members each
event's code reads without checking. model.invariants.reads_only_mandatory
then judges those reads against the schema. The hash and equality count for
records the queue function looks up; the queue function's own reads (before
its decision) for every valid event, since they abort QEMU just the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

import z3

from qthrottle.harness.extract import Extraction
from qthrottle.model.ghash import Record
from qthrottle.model.invariants import reads_only_mandatory

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
    constraints: List[Term]
    preferences: List[Tuple[Term, int]]


@dataclass
class TotalityVerdict:
    status: str
    reason: str
    role: str = ""
    events: Dict[str, Record] = field(default_factory=dict)
    findings: List[str] = field(default_factory=list)


def check_totality(space: EventSpace, extraction: Extraction, timeout_ms: int) -> TotalityVerdict:
    members_read: Dict[str, Set[str]] = {}
    witnesses: Dict[Tuple[str, str], Witness] = {}
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
            base = [*in_table, *(r.valid(free=abort.member if r is abort.record else None)
                                 for r in records), abort.reach]
            witness = Witness(role, abort, cb.records, base, cb.preferences())
            found, problem = _events_reaching(space, witness, abort.absent, timeout_ms)
            for event in found:
                members_read.setdefault(event, set()).add(abort.member or "")
                witnesses.setdefault((event, abort.member or ""), witness)
            mistyped, mistyped_problem = _events_reaching(space, witness, abort.mistyped,
                                                          timeout_ms)
            unknown += [p for p in (problem, mistyped_problem) if p]
            unknown += [f"{extraction.path}:{abort.line}: {abort.call} reads '{abort.member}' "
                        f"of {event} with the wrong getter for its schema type (the model's "
                        "totality invariant judges presence only)" for event in mistyped]
    violations = reads_only_mandatory(members_read, space.catalog)
    if violations:
        findings = []
        for violation in violations:
            abort = witnesses[(violation.event, violation.member)].abort
            findings.append(f"{extraction.path}:{abort.line}: {abort.role} "
                            f"({abort.function}): {abort.call}: {violation}")
        first = witnesses[(violations[0].event, violations[0].member)]
        index = space.index[violations[0].event]
        assert first.abort.record is not None
        model = readable([*first.constraints, first.abort.absent,
                          first.abort.record.event == index], first.preferences, timeout_ms)
        events = {name: r.concrete(model) for name, r in first.records.items()} if model else {}
        return TotalityVerdict(FALSIFIED, findings[0], first.role, events, findings)
    if unknown:
        return TotalityVerdict(UNKNOWN, unknown[0], findings=unknown)
    return TotalityVerdict(PROVED, "every read member is mandatory for every event that "
                                   "reaches the read (queue, hash and equality functions)")


def _events_reaching(space: EventSpace, witness: Witness, fails: Term,
                     timeout_ms: int) -> Tuple[List[str], Optional[str]]:
    """The events for which @witness's read executes and fails as @fails says."""
    abort = witness.abort
    if z3.is_false(z3.simplify(fails)):
        return [], None
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(*witness.constraints, fails)
    found: List[str] = []
    while True:
        answer = solver.check()
        if answer == z3.unsat:
            return found, None
        if answer == z3.unknown:
            return found, timeout(timeout_ms, solver, f"the read {abort.call}")
        if abort.record is None:
            return found, (f"{abort.call}: a NULL string whose member is unknown (merged "
                           "from several reads) can reach it")
        index = solver.model().eval(abort.record.event, model_completion=True).as_long()
        found.append(space.names[index])
        solver.add(abort.record.event != index)
