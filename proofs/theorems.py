"""The callback invariants as proof obligations over the translated C.

Each theorem calls the invariant as model/invariants.py states it, with the
translated callbacks (proofs.callbacks) and symbolic records in place of
concrete ones: the z3 formula is the model's own, nothing is restated here.
The assumptions say which records the C can meet: valid events of the schema;
records in the table are those the queue function looks up; no callback call
aborts (aborts are invariant 7's subject, see totality.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

from qthrottle.model import invariants as inv
from qthrottle.model.ghash import matches
from qthrottle.model.logic import Or

from .callbacks import Callbacks
from .space import SymbolicRecord

Term = Any


@dataclass
class Obligation:
    """What one theorem hands to the solver, and what a counterexample should show."""

    records: Dict[str, SymbolicRecord]
    assumptions: List[Term]
    claims: List[Tuple[str, Term]]  # checked in order; the first that fails is reported
    explain: List[Tuple[str, Term]]  # callback values printed with a counterexample
    preferences: List[Tuple[Term, int]]


def _obligation(cb: Callbacks, in_table: Sequence[SymbolicRecord],
                claims: List[Tuple[str, Term]], explain: List[Tuple[str, Term]],
                extra: Sequence[Term] = ()) -> Obligation:
    assumptions = [*extra, *cb.domain(in_table)]
    return Obligation(dict(cb.records), assumptions, claims, explain, cb.preferences())


def reflexivity(cb: Callbacks) -> Obligation:
    a = cb.record("a")
    claim = inv.reflexive(cb.equal, a)
    return _obligation(cb, [a], [("equal(a, a) for every record a in the table", claim)],
                       [("equal(a, a)", cb.equal(a, a))])


def symmetry(cb: Callbacks) -> Obligation:
    a, b = cb.record("a"), cb.record("b")
    claim = inv.symmetric(cb.equal, a, b)
    return _obligation(cb, [a, b], [("equal(a, b) implies equal(b, a)", claim)],
                       [("equal(a, b)", cb.equal(a, b)), ("equal(b, a)", cb.equal(b, a))])


def transitivity(cb: Callbacks) -> Obligation:
    a, b, c = cb.record("a"), cb.record("b"), cb.record("c")
    claim = inv.transitive(cb.equal, a, b, c)
    return _obligation(cb, [a, b, c],
                       [("equal(a, b) and equal(b, c) imply equal(a, c)", claim)],
                       [("equal(a, b)", cb.equal(a, b)), ("equal(b, c)", cb.equal(b, c)),
                        ("equal(a, c)", cb.equal(a, c))])


def hash_consistency(cb: Callbacks) -> Obligation:
    a, b = cb.record("a"), cb.record("b")
    claim = inv.hash_consistent(cb.hash, cb.equal, a, b)
    return _obligation(cb, [a, b], [("equal(a, b) implies hash(a) == hash(b)", claim)],
                       [("equal(a, b)", cb.equal(a, b)), ("hash(a)", cb.hash(a)),
                        ("hash(b)", cb.hash(b))])


def removal(cb: Callbacks) -> Obligation:
    """Two records inserted as the queue function does; removing either takes out exactly it."""
    records = [cb.record("r1"), cb.record("r2")]
    discipline = inv.inserted_under_glib_discipline(cb.hash, cb.equal, records)
    claims = [(f"removing {target.name} removes {target.name} and nothing else",
               inv.removal_exact(cb.hash, cb.equal, target,
                                 [r for r in records if r is not target]))
              for target in records]
    r1, r2 = records
    explain = [("hash(r1)", cb.hash(r1)), ("hash(r2)", cb.hash(r2)),
               ("equal(r1, r1)", cb.equal(r1, r1)), ("equal(r2, r1)", cb.equal(r2, r1)),
               ("equal(r2, r2)", cb.equal(r2, r2)), ("equal(r1, r2)", cb.equal(r1, r2))]
    return _obligation(cb, records, claims, explain, [discipline])


def stop_never_throttled(cb: Callbacks) -> Obligation:
    """A stop event e is emitted at once, or no record s of the table matches it.

    s is any record the table can hold; GLib's match compares stored hashes and
    calls equal(s, e), stored key first. An event the queue function drops
    (returns without emitting or looking up) counts as held back.
    """
    s, e = cb.record("s"), cb.record("e")
    held_back_by_table = Or(cb.dropped(e), matches(cb.hash, cb.equal, s, e))
    is_stop = inv.is_stop_event(e.event_name(), e.data())
    claim = inv.stop_exempt(is_stop, cb.held_back(e), held_back_by_table)
    return _obligation(cb, [s], [("a stop event is emitted at once or matches no record", claim)],
                       [("is_stop_event(e)", is_stop),
                        ("e not emitted at once", cb.held_back(e)),
                        ("e dropped by the queue function", cb.dropped(e)),
                        ("hash(s)", cb.hash(s)), ("hash(e)", cb.hash(e)),
                        ("equal(s, e)", cb.equal(s, e))])


# (invariant, law, theorem), in the order they are reported.
THEOREMS: List[Tuple[int, str, Callable[[Callbacks], Obligation]]] = [
    (1, "reflexive", reflexivity),
    (1, "symmetric", symmetry),
    (1, "transitive", transitivity),
    (2, "hash consistent", hash_consistency),
    (3, "removal", removal),
    (4, "stop never throttled", stop_never_throttled),
]
