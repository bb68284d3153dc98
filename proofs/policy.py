"""The throttle policy the code implements, derived from what it does: rate and key per event.

Rates are the rate table as the compiler evaluates it (EventSpace reads them from
a compiled program, harness.build.compiled_rates). Keys come from the translated
equality and hash, decided by z3 for each throttled event E of the schema, over
the records the table can hold: valid events of E that the queue function looks
up, on which the queue function, the hash and the equality return (their aborts
are invariant 7's subject), and that are equal to themselves: where the equality
is not reflexive it is no key relation (invariant 1 says so), and the records it
leaves out are named in the assumptions.

1. A member m of E is a key member when two such records that agree on every
   other member the equality reads, and differ on m (its presence or its value),
   can be unequal.
2. The equality must then be exactly "the key members agree" on those records:
   equal(a, b) == (a and b agree on K) for every a, b. Otherwise the relation is
   no comparison of members (an order, a prefix, absent taken as "") and E's key
   is UNKNOWN, with a witness pair: never a guessed policy.
3. Records of two throttled events never compare equal (the policy's key starts
   with the event name), else both events' keys are UNKNOWN.
4. The hash is checked against the key: records that agree on K hash equally;
   where they may not, a note says so (invariant 2 is falsified there).

A member "agrees" on two records when both lack it, or both carry it with the
same value. Nothing here depends on how the code is written: on which function
reads a member, through which locals, helpers or library calls.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import z3

from qthrottle.harness.extract import Extraction
from qthrottle.model.members import KINDS, member_kind
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog, Event, Member

from .callbacks import Callbacks
from .conditions import Facet, Facts, Query, constants, describe_condition
from .execution import Unsupported
from .solve import DEFAULT_TIMEOUT_MS
from .space import EventSpace, SymbolicRecord
from .translate import Translation
from .values import NotModelled

Term = Any


@dataclass(frozen=True)
class DerivedPolicy:
    """The policy of one implementation, and what its derivation assumed or left open."""

    policy: Policy  # rates of every event; keys of the throttled events it decided
    assumptions: Tuple[str, ...] = ()  # what a key rests on, per event, for people
    unknown: Dict[str, str] = field(default_factory=dict)  # event -> why its key is UNKNOWN
    key_reads: Dict[Tuple[str, str], str] = field(default_factory=dict)  # -> file:line
    seconds: float = 0.0

    def key_text(self, event: str) -> str:
        """The key of a throttled event as people read it."""
        if event in self.unknown:
            return "UNKNOWN"
        members = self.policy.keys.get(event, ())
        return "per " + ", ".join(members) if members else "per event name"


def derive_policy(extraction: Extraction, catalog: Catalog,
                  timeout_ms: int = DEFAULT_TIMEOUT_MS) -> DerivedPolicy:
    start = time.perf_counter()
    space = EventSpace(catalog, extraction)
    table = space.rate_table  # the rate table's order, for reports
    rates = {event: table[event] for event in [*extraction.rate_entries, *table]
             if table.get(event)}
    throttled = [catalog.events[e] for e in rates if e in catalog.events]
    derivation = _Derivation(space, extraction, throttled, timeout_ms)
    keys: Dict[str, Tuple[str, ...]] = {}
    if derivation.failure is None:
        for event in throttled:
            try:
                key = derivation.key(event)
            except (NotModelled, z3.Z3Exception) as error:
                derivation.unknown[event.name] = f"the translation failed: {error}"
                continue
            if key:  # () is "per event name", as for an event without an entry
                keys[event.name] = key
        derivation.across_events(throttled)
    for name in derivation.unknown:
        keys.pop(name, None)
    return DerivedPolicy(Policy(rates=rates, keys=keys), tuple(derivation.assumptions),
                         dict(derivation.unknown), derivation.key_reads,
                         time.perf_counter() - start)


class _Derivation:
    """The translated callbacks on two records a, b, and the questions asked of them."""

    def __init__(self, space: EventSpace, extraction: Extraction, throttled: List[Event],
                 timeout_ms: int) -> None:
        self.space, self.extraction, self.timeout_ms = space, extraction, timeout_ms
        self.assumptions: List[str] = []
        self.unknown: Dict[str, str] = {}
        self.key_reads: Dict[Tuple[str, str], str] = {}
        self.failure: Optional[str] = None
        cb = self.cb = Callbacks(space, extraction)
        a, b = self.a, self.b = cb.record("a"), cb.record("b")
        try:
            self.equal = cb.equal(a, b)
            self.reflexive = [cb.equal(a, a), cb.equal(b, b)]
            self.hashes = (cb.hash(a), cb.hash(b))
            self.compared = constants([self.equal])
            # Every member of a throttled event exists on both records before the
            # domain states the schema (valid() covers the members it knows).
            for event in throttled:
                for member in event.members:
                    for record in (a, b):
                        _declare(record, member)
            self.domain = cb.domain([a, b])
        except (Unsupported, NotModelled, z3.Z3Exception) as error:
            self.failure = str(error) if isinstance(error, Unsupported) else \
                f"the translation failed: {error}"
            self.unknown.update({event.name: self.failure for event in throttled})

    def query(self, scope: Sequence[Term]) -> Query:
        return Query([*self.domain, *scope], self.timeout_ms)

    def key(self, event: Event) -> Optional[Tuple[str, ...]]:
        """E's key members, or None (UNKNOWN, the reason recorded)."""
        name, a, b = event.name, self.a, self.b
        index = self.space.index[name]
        of_event = [a.event == index, b.event == index]
        held = self.query(of_event)
        if held.sat() is not True:
            if held.unknown is not None:
                return self._undecided(name, held, "")
            looked_up = Query([self.cb.reaches_table(a), a.valid(), a.event == index],
                              self.timeout_ms)
            if looked_up.sat() is False:  # the code never throttles it: no key to speak of
                self.assumptions.append(f"{name}: no {name} record reaches the throttle "
                                        "table: the rate table throttles it, the code never "
                                        "does")
                return ()
            return self._undecided(name, looked_up, f"every {name} record the table can "
                                                    "hold makes a callback abort (invariant 7)")
        irreflexive = held.sat(z3.Not(self.reflexive[0]))
        if irreflexive is None:
            return self._undecided(name, held, "")
        refl = self.query([*of_event, *self.reflexive])
        if refl.sat() is not True:
            return self._undecided(name, refl, f"no {name} record the table can hold is equal "
                                               "to itself (invariant 1): there is no key "
                                               "relation to derive")
        if irreflexive:
            self._excluded(event, of_event)
        candidates = [m for m in event.members if member_kind(m) in KINDS and (
            _facet(m, a).constants() | _facet(m, b).constants()) & self.compared]
        key: List[Member] = []
        for member in candidates:
            others = [_agree(a, b, m) for m in candidates if m is not member]
            distinguishes = refl.sat(*others, z3.Not(_agree(a, b, member)),
                                     z3.Not(self.equal))
            if distinguishes is None:
                return self._undecided(name, refl, "")
            if distinguishes:
                key.append(member)
        agree = z3.And(*(_agree(a, b, m) for m in key)) if key else z3.BoolVal(True)
        mismatch = refl.sat(self.equal != agree)
        if mismatch is None:
            return self._undecided(name, refl, "")
        if mismatch:
            self._not_a_comparison(event, refl, agree, key)
            return None
        if refl.sat(agree, self.hashes[0] != self.hashes[1]):
            on = ", ".join(m.name for m in key) or "the event name"
            self.assumptions.append(f"{name}: records with the same {on} may hash "
                                    "differently (invariant 2 is falsified there)")
        members = tuple(m.name for m in sorted(key, key=lambda m: self._first_read(m.name)))
        self._locate(name, members, refl)
        return members

    def _undecided(self, name: str, query: Query, reason: str) -> Optional[Tuple[str, ...]]:
        """Record why @name's key is UNKNOWN (the solver's timeout first); None, the key."""
        self.unknown[name] = query.unknown or reason
        return None

    def _excluded(self, event: Event, of_event: List[Term]) -> None:
        """Say which records of @event the key leaves out: those unequal to themselves."""
        facets = [_facet(m, self.a) for m in event.members if member_kind(m) in KINDS]
        compared = constants([self.reflexive[0]])
        facets = [f for f in facets if f.constants() & compared]
        condition, exact = describe_condition(
            Facts(self.domain, self.timeout_ms), of_event, z3.Not(self.reflexive[0]), facets)
        which = (f"with {condition}" if exact else f"with {condition}, among others") \
            if condition else "(every one the condition could not name)"
        self.assumptions.append(
            f"{event.name}: the key is derived on the records equal to themselves; equal(r, r) "
            f"is FALSE for the records {which} (invariant 1 is falsified there)")

    def _not_a_comparison(self, event: Event, query: Query, agree: Term,
                          key: List[Member]) -> None:
        shown = ""
        solver = query.solver
        solver.push()
        solver.add(self.equal != agree)
        if solver.check() == z3.sat:  # a witness pair, for the reason
            found = solver.model()
            pair = {r.name: r.concrete(found) for r in (self.a, self.b)}
            value = z3.is_true(found.eval(self.equal, model_completion=True))
            shown = (f" (e.g. equal(a, b) = {str(value).upper()} for a = {pair['a'][1]}, "
                     f"b = {pair['b'][1]})")
        solver.pop()
        members = ", ".join(m.name for m in key) or "no member"
        self.unknown[event.name] = (
            f"the equality of {event.name} is not a comparison of members (it is not "
            f"\"{members} agree\" on the records the table can hold){shown}")

    def across_events(self, throttled: List[Event]) -> None:
        """Records of two throttled events must not compare equal."""
        if self.failure is not None or len(throttled) < 2:
            return
        indices = [self.space.index[e.name] for e in throttled if e.name not in self.unknown]
        among = [self.space.among(self.a.event, indices), self.space.among(self.b.event, indices),
                 self.a.event != self.b.event, *self.reflexive]
        query = self.query(among)
        answer = query.sat(self.equal)
        if answer is None:
            for event in throttled:
                self.unknown.setdefault(event.name, query.unknown or "")
        elif answer:
            query.solver.add(self.equal)
            query.solver.check()
            found = query.solver.model()  # sat: just asked
            names = [self.space.names[found.eval(r.event, model_completion=True).as_long()]
                     for r in (self.a, self.b)]
            for name in names:
                self.unknown[name] = (f"the equality matches records of two events "
                                      f"({names[0]} and {names[1]}): the key is not the event "
                                      "name and members")

    def _first_read(self, member: str) -> int:
        """The equality's first line reading @member: a key lists members in that order."""
        lines = [r.line for r in self._accesses("equal") if r.member == member]
        return min(lines, default=1 << 30)

    def _accesses(self, role: str) -> List[Any]:
        calls: List[Translation] = [self.cb.translation(role, self.a, self.b)] \
            if role == "equal" else [self.cb.translation("hash", self.a)]
        return [access for call in calls for access in call.accesses]

    def _locate(self, name: str, members: Sequence[str], query: Query) -> None:
        """Where the equality (else the hash) reads each key member for this event."""
        for member in members:
            for role in ("equal", "hash"):
                reads = sorted((r for r in self._accesses(role) if r.member == member),
                               key=lambda r: r.line)
                found = next((r for r in reads if query.sat(r.reach)), None)
                if found is not None:
                    self.key_reads[(name, member)] = f"{self.extraction.path}:{found.line}"
                    break


def _declare(record: SymbolicRecord, member: Member) -> None:
    record.present(member.name)
    kind = member_kind(member)
    if kind in KINDS:
        record.value(member.name, kind)


def _facet(member: Member, record: SymbolicRecord) -> Facet:
    return Facet(member.name, member, record)


def _agree(a: SymbolicRecord, b: SymbolicRecord, member: Member) -> Term:
    """Both records lack @member, or both carry it with the same value (an absent
    member's value is pinned to a default by valid())."""
    kind = member_kind(member)
    same = a.present(member.name) == b.present(member.name)
    return z3.And(same, a.value(member.name, kind) == b.value(member.name, kind))
