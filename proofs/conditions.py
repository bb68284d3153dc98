"""Readable conditions over an event's members, found by asking z3 (diff, policy).

A condition says for which values of an event's members a claim holds: per
member, the enum (bool) values and the presence for which the claim is
satisfiable; "exact" when the conjunction of those restrictions implies the
claim. Probes only describe a verdict already reached: they get a short timeout,
and one that times out keeps the value and makes the condition inexact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Set, Tuple

import z3

from qthrottle.model.members import KINDS, member_kind
from qthrottle.model.qapi_schema import Member

from .space import SymbolicRecord

Term = Any
PROBE_TIMEOUT_MS = 2_000  # per query that only shapes a readable condition


class Facts:
    """The facts every question of a kind shares (schema validity, domain), and the timeout."""

    def __init__(self, assumptions: Sequence[Term], timeout_ms: int) -> None:
        self.assumptions = list(assumptions)
        self.timeout_ms = timeout_ms

    def query(self, scope: Sequence[Term], timeout_ms: Optional[int] = None) -> Query:
        return Query([*self.assumptions, *scope], timeout_ms or self.timeout_ms)


class Query:
    """One solver over fixed assumptions; scoped probes; unknown answers remembered.

    A fresh solver per scope: z3 answers these string queries far faster on a
    solver whose first check has no assumptions than with check(assumptions)
    on one shared solver (measured: 5 s against over 100 s on QEMU 7.2/10.0).
    """

    def __init__(self, assumptions: Sequence[Term], timeout_ms: int) -> None:
        self.solver = z3.Solver()
        self.solver.set("timeout", timeout_ms)
        self.solver.add(*assumptions)
        self.timeout_ms = timeout_ms
        self.unknown: Optional[str] = None

    def sat(self, *terms: Term) -> Optional[bool]:
        self.solver.push()
        self.solver.add(*terms)
        answer = self.solver.check()
        if answer == z3.unknown and self.unknown is None:
            self.unknown = (f"timeout: z3 gave up within {self.timeout_ms} ms "
                            f"({self.solver.reason_unknown()}); raise it with --timeout-ms")
        self.solver.pop()
        return None if answer == z3.unknown else answer == z3.sat


@dataclass(frozen=True)
class Facet:
    """A member of the event as the condition speaks of it: which record holds it."""

    label: str  # "action" or "a.action"
    member: Member
    record: SymbolicRecord
    linked: Optional[SymbolicRecord] = None  # the other version's record, same member

    def present(self) -> Term:
        return self.record.present(self.member.name)

    def value(self) -> Optional[Term]:
        kind = member_kind(self.member)
        return self.record.value(self.member.name, kind) if kind in KINDS else None

    def constants(self) -> Set[int]:
        """Ids of the z3 constants standing for this member, on either record."""
        kind = member_kind(self.member)
        records = [r for r in (self.record, self.linked) if r is not None]
        terms = [r.present(self.member.name) for r in records]
        if kind in KINDS:
            terms += [r.value(self.member.name, kind) for r in records]
        return {t.get_id() for t in terms}


def read_by(facets: Sequence[Facet], read: Set[int]) -> List[Facet]:
    """The facets the translated code reads (constants in @read): a member no code
    reads takes no part in a condition, and asking about it would only cost queries."""
    return [f for f in facets if f.constants() & read]


def constants(terms: Sequence[Term]) -> Set[int]:
    """Ids of the uninterpreted constants in @terms (each DAG node visited once)."""
    seen: Set[int] = set()
    found: Set[int] = set()
    stack = list(terms)
    while stack:
        term = stack.pop()
        if term.get_id() in seen:
            continue
        seen.add(term.get_id())
        if z3.is_const(term) and term.decl().kind() == z3.Z3_OP_UNINTERPRETED:
            found.add(term.get_id())
        else:
            stack.extend(term.children())
    return found


def _domain(member: Member) -> Optional[Tuple[Any, ...]]:
    """The values a condition can enumerate: enum values, or true/false."""
    values: Optional[Tuple[Any, ...]] = member.enum_values
    if values is not None:
        return values
    return (True, False) if member_kind(member) == "bool" else None


def _atom(query: Query, facet: Facet) -> Tuple[str, Term]:
    """What @facet must be for the query's condition: ("", True) when anything goes."""
    member, present = facet.member, facet.present()
    absent_ok = member.optional and query.sat(z3.Not(present)) is not False
    domain = _domain(member)
    value = facet.value()
    if domain is None or value is None:
        present_ok = query.sat(present) is not False
        if member.optional and present_ok != absent_ok:
            return (f"{facet.label} {'present' if present_ok else 'absent'}",
                    present if present_ok else z3.Not(present))
        return "", z3.BoolVal(True)
    values = [v for v in domain
              if query.sat(present, value == _z3_value(v)) is not False]
    if not values:
        return f"{facet.label} absent", z3.Not(present)
    shown = "|".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
    takes = z3.And(present, z3.Or(*(value == _z3_value(v) for v in values)))
    if len(values) < len(domain):
        if absent_ok:
            return f"{facet.label}={shown} or absent", z3.Or(z3.Not(present), takes)
        return f"{facet.label}={shown}", takes
    if member.optional and not absent_ok:
        return f"{facet.label} present", present
    return "", z3.BoolVal(True)


def _z3_value(value: Any) -> Term:
    return z3.BoolVal(value) if isinstance(value, bool) else z3.StringVal(value)


def describe_condition(facts: Facts, scope: Sequence[Term], claim: Term,
               facets: Sequence[Facet]) -> Tuple[str, bool]:
    """A readable condition under which @claim holds, and whether it is exact.

    Per member: the enum (bool) values, and the presence, for which @claim is
    satisfiable; exact when the conjunction of those restrictions implies @claim.
    The condition only describes a verdict already reached, so its probes get a
    short timeout; a probe that times out keeps the value and makes it inexact.
    """
    timeout_ms = min(facts.timeout_ms, PROBE_TIMEOUT_MS)
    query = facts.query([*scope, claim], timeout_ms)
    atoms = [_atom(query, facet) for facet in facets]
    words = [text for text, _ in atoms if text]
    terms = [term for text, term in atoms if text]
    check = facts.query(scope, timeout_ms)
    exact = check.sat(*terms, z3.Not(claim)) is False and query.unknown is None
    return " and ".join(words), exact
