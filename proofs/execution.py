"""The state of a symbolic execution: path conditions, variables, merges, obligations.

A state is a path condition and the variables in scope. Two states at one
program point merge into one whose variables are if-then-else terms over their
path conditions, so a function translates to one term, not one per path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import z3

from qthrottle.harness.extract import named_children, node_text

from .space import SymbolicRecord
from .values import CType, Value, merge

Term = Any
TRUE, FALSE = z3.BoolVal(True), z3.BoolVal(False)


class Unsupported(Exception):
    """The C uses a construct outside the translated subset: the proof is UNKNOWN."""

    def __init__(self, where: str, construct: str) -> None:
        super().__init__(f"{where}: unsupported C construct: {construct}")
        self.where = where
        self.construct = construct


text, named = node_text, named_children  # the names the translation reads best with


@dataclass
class Abort:
    """A place where the C aborts QEMU: a read of a member that is missing or of another
    type than its getter's, a NULL string passed to strcmp & co, or an abort call
    (assert, g_assert, abort, ...) whose condition fails."""

    role: str
    function: str
    line: int
    record: Optional[SymbolicRecord]  # the record whose member is read, if a read
    member: Optional[str]
    getter: Optional[str]  # the type the member is read as: "str", "int" or "bool"
    reach: Term  # the call executes
    absent: Term  # ... and aborts because the member is missing
    mistyped: Term  # ... because the schema gives the member another type
    aborts: Term  # ... for another reason (an assertion fails, an abort is called)
    call: str  # the C text, for reports

    @property
    def fails(self) -> Term:
        return disj(self.absent, self.mistyped, self.aborts)


def conj(*terms: Term) -> Term:
    rest = [t for t in terms if not z3.is_true(t)]
    if any(z3.is_false(t) for t in rest):
        return FALSE
    return rest[0] if len(rest) == 1 else (z3.And(*rest) if rest else TRUE)


def disj(*terms: Term) -> Term:
    rest = [t for t in terms if not z3.is_false(t)]
    if any(z3.is_true(t) for t in rest):
        return TRUE
    return rest[0] if len(rest) == 1 else (z3.Or(*rest) if rest else FALSE)


def neg(term: Term) -> Term:
    if z3.is_true(term):
        return FALSE
    return TRUE if z3.is_false(term) else z3.Not(term)


def satisfiable(term: Term) -> bool:
    """Not provably false (a timeout counts as satisfiable: never a silent pass)."""
    solver = z3.Solver()
    solver.set("timeout", 2000)
    solver.add(term)
    return bool(solver.check() != z3.unsat)


@dataclass
class Variable:
    ctype: CType
    value: Value
    address_taken: bool = False  # &variable was passed on: it may no longer change


class State:
    """A path condition and the variables in scope (innermost scope last)."""

    def __init__(self, pc: Term, scopes: List[Dict[str, Variable]]) -> None:
        self.pc = pc
        self.scopes = scopes

    def copy(self, pc: Optional[Term] = None) -> State:
        return State(self.pc if pc is None else pc, [dict(s) for s in self.scopes])

    @property
    def dead(self) -> bool:
        return bool(z3.is_false(self.pc))

    def find(self, name: str) -> Optional[Variable]:
        return next((s[name] for s in reversed(self.scopes) if name in s), None)

    def assign(self, name: str, value: Value, address_taken: bool = False) -> None:
        for scope in reversed(self.scopes):
            if name in scope:
                variable = scope[name]
                scope[name] = Variable(variable.ctype, value,
                                       variable.address_taken or address_taken)
                return


def merge_states(states: Sequence[State], conditions: Optional[Sequence[Term]] = None,
                 pc: Optional[Term] = None) -> State:
    """One state equivalent to being in one of @states (their path conditions are disjoint)."""
    pairs = [(s, c) for s, c in zip(states, conditions or [s.pc for s in states]) if not s.dead]
    if not pairs:
        return states[0].copy(FALSE)
    if len(pairs) == 1:
        return pairs[0][0]
    depth = min(len(s.scopes) for s, _ in pairs)
    scopes: List[Dict[str, Variable]] = []
    for level in range(depth):
        first = pairs[0][0].scopes[level]
        scope = {}
        for name, variable in first.items():
            if all(name in s.scopes[level] for s, _ in pairs):
                scope[name] = Variable(variable.ctype, merge(
                    [(c, s.scopes[level][name].value) for s, c in pairs]), any(
                    s.scopes[level][name].address_taken for s, _ in pairs))
        scopes.append(scope)
    return State(pc if pc is not None else disj(*(s.pc for s, _ in pairs)), scopes)


@dataclass
class Frame:
    function: str
    return_type: CType
    top: bool
    returns: List[Tuple[Term, Value]] = field(default_factory=list)
    breaks: List[List[State]] = field(default_factory=list)  # per enclosing switch / loop
    loops: List[int] = field(default_factory=list)  # indices into breaks of the loops
