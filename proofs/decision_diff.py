"""What changed in the throttle between two versions: rates, keys and, with z3, decisions.

Per event of either schema:
* rate and key members, old -> new: each version's policy as its code implements
  it (proofs/policy.py: the compiled rate table, the key relation of the
  translated equality; a key it cannot derive is UNKNOWN);
* the queue function's decision on that event, compared symbolically. Each
  version's queue function is translated (proofs.translate) on a symbolic
  record of its own schema; the two records stand for one QMP event: the same
  event name, and every member both schemas give the event has the same
  presence and (for the same getter kind) the same value. A member only one
  schema has is free on that side, within that side's schema. The outcome of
  a call is one of OUTCOMES; z3 asks whether the two outcomes can differ.
  UNSAT is "unchanged (proved)"; SAT gives, for each (old, new) pair of
  outcomes that occurs, a readable condition derived by the solver (which
  enum and bool values, which presences of optional members, admit the
  change; "exact" when that condition implies the change) and a witness event;
  a timeout or an untranslatable construct is UNKNOWN with the reason;
* for events both versions throttle, the key relation: whether the equality
  callback can answer differently on two records both versions put through
  the table (two versions keyed on the same members can still compare them
  differently, e.g. stop-irreflexive's early FALSE).
Events only one schema has are described alone ("added"/"removed"); they are
throttle changes only when that version can throttle them.

Bounds: one solver timeout per query; nothing else (every valid event).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import z3

from qthrottle.core import Status
from qthrottle.harness.extract import Extraction
from qthrottle.model.ghash import Record
from qthrottle.model.members import KINDS, member_kind
from qthrottle.model.qapi_schema import Catalog, Event, Member
from qthrottle.model.timeline import format_ns

from .callbacks import Callbacks
from .conditions import Facet, Facts, constants, describe_condition, read_by
from .equivalence import OUTCOMES, THROTTLED, queue_outcome
from .execution import Unsupported
from .policy import DerivedPolicy, derive_policy
from .solve import readable
from .space import EventSpace, SymbolicRecord
from .values import NotModelled

Term = Any
UNCHANGED, CHANGED = "unchanged", "changed"  # and Status.UNKNOWN
UNKNOWN = Status.UNKNOWN


@dataclass
class DecisionChange:
    """Events of one kind whose outcome goes from @old to @new."""

    old: str
    new: str
    condition: str  # "action=stop"; "" when every event of the kind changes so
    exact: bool  # the condition implies the change (else: some events meeting it)
    witness: Dict[str, Record]  # "old" / "new": the event as each version's schema has it

    def describe(self, event: str) -> str:
        where = f"{event} with {self.condition}" if self.condition else event
        if not self.exact:
            where = f"some {where} (see the witness)"
        return f"{where}: {self.old} -> {self.new}"


@dataclass
class KeyRelation:
    """Does equal(a, b) answer the same in both versions, for records both throttle?"""

    status: str  # UNCHANGED, CHANGED or UNKNOWN
    reason: str = ""
    condition: str = ""
    exact: bool = False  # the condition implies the change (else: some pairs meeting it)
    equal_old: Optional[bool] = None
    equal_new: Optional[bool] = None
    witness: Dict[str, Record] = field(default_factory=dict)  # "a", "b" (NEW's schema)

    def describe(self, event: str) -> str:
        where = f"{event} pairs with {self.condition}" if self.condition else f"{event} pairs"
        if not self.exact:
            where = f"some {where} (see the witness)"
        return f"{where}: equal(a, b) {_truth(self.equal_old)} -> {_truth(self.equal_new)}"


@dataclass
class Change:
    """One line of the list of throttle changes."""

    event: str
    kind: str  # rate, key, decision, key relation, added, removed
    text: str


@dataclass
class EventDiff:
    event: str
    in_old: bool
    in_new: bool
    rate_old: int  # ns; 0 when unthrottled or absent
    rate_new: int
    key_old: Optional[Tuple[str, ...]]  # None: not throttled; (): per event name
    key_new: Optional[Tuple[str, ...]]
    decision: str  # UNCHANGED, CHANGED, UNKNOWN (events of both schemas)
    changes: List[DecisionChange] = field(default_factory=list)
    outcomes: List[Tuple[str, str]] = field(default_factory=list)  # one-sided: (outcome, cond)
    key_relation: Optional[KeyRelation] = None
    reason: str = ""  # why UNKNOWN
    key_unknown: Tuple[str, str] = ("", "")  # why OLD's, NEW's key could not be derived

    @property
    def throttled_somewhere(self) -> bool:
        return bool(self.rate_old or self.rate_new) or any(
            o == OUTCOMES[THROTTLED] for o, _ in self.outcomes) or any(
            OUTCOMES[THROTTLED] in (c.old, c.new) for c in self.changes)

    def throttle_changes(self) -> List[Change]:
        e = self.event
        if not (self.in_old and self.in_new):
            if not self.throttled_somewhere:
                return []
            kind = "added" if self.in_new else "removed"
            rate, key = (self.rate_new, self.key_new) if self.in_new else (self.rate_old,
                                                                           self.key_old)
            unknown = self.key_unknown[1] if self.in_new else self.key_unknown[0]
            return [Change(e, kind, f"{e} ({'new' if self.in_new else 'removed'} event): "
                                    f"{describe_outcomes(self.outcomes)}; rate "
                                    f"{rate_text(rate)}, key {key_text(key, unknown)}")]
        changes = []
        if self.rate_old != self.rate_new:
            changes.append(Change(e, "rate", f"{e}: rate {rate_text(self.rate_old)} -> "
                                             f"{rate_text(self.rate_new)}"))
        if self.key_old != self.key_new and not any(self.key_unknown):
            changes.append(Change(e, "key", f"{e}: key {key_text(self.key_old)} -> "
                                            f"{key_text(self.key_new)}"))
        changes += [Change(e, "decision", c.describe(e)) for c in self.changes]
        relation = self.key_relation
        if relation is not None and relation.status == CHANGED and self.key_old == self.key_new:
            changes.append(Change(e, "key relation", relation.describe(e)))
        return changes

    def unknowns(self) -> List[Tuple[str, str]]:
        """(what, reason) for each question z3 left open on this event."""
        found = []
        if self.decision == UNKNOWN:
            found.append(("decision", self.reason))
        if self.key_relation is not None and self.key_relation.status == UNKNOWN:
            found.append(("key relation", self.key_relation.reason))
        found += [(f"key ({side})", reason)
                  for side, reason in zip(("old", "new"), self.key_unknown) if reason]
        return found


@dataclass
class ThrottleDiff:
    events: List[EventDiff]
    timeout_ms: int
    seconds: float

    @property
    def changes(self) -> List[Change]:
        return [c for e in self.events for c in e.throttle_changes()]

    @property
    def unknown(self) -> List[str]:
        """The open questions, one line per reason (a failed translation is one reason)."""
        grouped: Dict[Tuple[str, str], List[str]] = {}
        for e in self.events:
            for what, reason in e.unknowns():
                grouped.setdefault((what, reason), []).append(e.event)
        return [f"{what} UNKNOWN for {listed(events)}: {reason}"
                for (what, reason), events in grouped.items()]

    def schema_only(self, in_new: bool) -> List[str]:
        """Events only one schema has and neither version throttles."""
        return [e.event for e in self.events if (e.in_new, e.in_old) == (in_new, not in_new)
                and not e.throttled_somewhere]


def listed(names: Sequence[str], limit: int = 6) -> str:
    """A, B, C and 3 more."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def rate_text(rate: int) -> str:
    return format_ns(rate) if rate else "none"


def key_text(key: Optional[Tuple[str, ...]], unknown: str = "") -> str:
    if key is None:
        return "-"
    if unknown:
        return "UNKNOWN"
    return ", ".join(key) if key else "(event name)"


def describe_outcomes(outcomes: Sequence[Tuple[str, str]]) -> str:
    if len(outcomes) == 1 and not outcomes[0][1]:
        return outcomes[0][0]
    return "; ".join(f"{o} with {c}" if c else o for o, c in outcomes)


def _truth(value: Optional[bool]) -> str:
    return {True: "TRUE", False: "FALSE", None: "?"}[value]


# ------------------------------------------------------------------ sides

class Side:
    """One version: its extraction, schema, policy and symbolic event space."""

    def __init__(self, label: str, extraction: Extraction, catalog: Catalog,
                 timeout_ms: int, derived: Optional[DerivedPolicy] = None) -> None:
        self.label = label
        self.extraction = extraction
        self.catalog = catalog
        self.space = EventSpace(catalog, extraction)
        self.derived = derived or derive_policy(extraction, catalog, timeout_ms)
        self.policy = self.derived.policy

    def callbacks(self) -> Callbacks:
        """A fresh view of the C: one per question, so that assumptions do not mix."""
        return Callbacks(self.space, self.extraction)

    def record(self, callbacks: Callbacks, name: str) -> SymbolicRecord:
        """A record with every member of the schema declared, so valid() covers them all."""
        record = callbacks.record(f"{self.label}{name}")
        for event in self.catalog.events.values():
            for member in event.members:
                _declare(record, member)
        return record

    def rate(self, event: str) -> int:
        return self.policy.rate(event) if event in self.catalog.events else 0

    def key(self, event: str) -> Optional[Tuple[str, ...]]:
        if event not in self.catalog.events or not self.policy.throttled(event):
            return None
        key: Tuple[str, ...] = self.policy.keys.get(event, ())
        return key


def _declare(record: SymbolicRecord, member: Member) -> None:
    record.present(member.name)
    kind = member_kind(member)
    if kind in KINDS:
        record.value(member.name, kind)


def _link(old: Side, new: Side, old_rec: SymbolicRecord, new_rec: SymbolicRecord,
          name: str) -> List[Term]:
    """@old_rec and @new_rec are the same QMP event @name (valid in both schemas)."""
    old_event, new_event = old.catalog.events[name], new.catalog.events[name]
    facts = [old_rec.event == old.space.index[name], new_rec.event == new.space.index[name]]
    for member in new_event.members:
        other = old_event.member(member.name)
        if other is None:
            continue
        facts.append(old_rec.present(member.name) == new_rec.present(member.name))
        kind = member_kind(member)
        if kind in KINDS and member_kind(other) == kind:
            facts.append(old_rec.value(member.name, kind) == new_rec.value(member.name, kind))
    return facts


# ------------------------------------------------------------ the solver

def _facets(old: Optional[Event], new: Optional[Event], old_rec: Optional[SymbolicRecord],
            new_rec: Optional[SymbolicRecord], prefix: str = "") -> List[Facet]:
    """Members of the event, on NEW's record where NEW's schema has the member."""
    facets = []
    if new is not None and new_rec is not None:
        facets += [Facet(prefix + m.name, m, new_rec,
                          old_rec if old is not None and old.member(m.name) else None)
                   for m in new.members]
    if old is not None and old_rec is not None:
        facets += [Facet(prefix + m.name, m, old_rec) for m in old.members
                   if new is None or new.member(m.name) is None]
    return facets


def _witness(facts: Facts, scope: Sequence[Term], claim: Term,
             preferences: Sequence[Tuple[Term, int]],
             facets: Sequence[Facet]) -> Optional[z3.ModelRef]:
    """A readable model; only goals about the event's own members (each goal is a query)."""
    own = {i for f in facets for i in f.constants()}
    goals = [(goal, weight) for goal, weight in preferences if constants([goal]) <= own]
    return readable([*facts.assumptions, *scope, claim], goals, facts.timeout_ms)


# -------------------------------------------------------------- the diff

def diff_throttles(old_extraction: Extraction, old_catalog: Catalog,
                   new_extraction: Extraction, new_catalog: Catalog,
                   timeout_ms: int,
                   policies: Tuple[Optional[DerivedPolicy], Optional[DerivedPolicy]] = (None,
                                                                                        None)
                   ) -> ThrottleDiff:
    """Rates, keys, decisions and key relations of every event, old -> new (@policies:
    each version's policy if already derived)."""
    start = time.perf_counter()
    old = Side("old", old_extraction, old_catalog, timeout_ms, policies[0])
    new = Side("new", new_extraction, new_catalog, timeout_ms, policies[1])
    names = list(new_catalog.events) + [e for e in old_catalog.events
                                        if e not in new_catalog.events]
    diffs = [EventDiff(name, name in old_catalog.events, name in new_catalog.events,
                       old.rate(name), new.rate(name), old.key(name), new.key(name),
                       UNCHANGED, key_unknown=(old.derived.unknown.get(name, ""),
                                               new.derived.unknown.get(name, "")))
             for name in names]
    decisions = _Decisions(old, new, timeout_ms)
    relations = _Relations(old, new, timeout_ms)
    for event_diff in diffs:
        decisions.compare(event_diff)
        if event_diff.rate_old and event_diff.rate_new:
            event_diff.key_relation = relations.compare(event_diff.event)
    return ThrottleDiff(diffs, timeout_ms, time.perf_counter() - start)


def _translation_failure(error: Exception) -> str:
    if isinstance(error, Unsupported):
        return str(error)
    return f"the translation failed: {error}"


class _Decisions:
    """The queue function of both versions on one linked pair of records."""

    def __init__(self, old: Side, new: Side, timeout_ms: int) -> None:
        self.old, self.new, self.timeout_ms = old, new, timeout_ms
        self.failure: Optional[str] = None
        old_cb, new_cb = old.callbacks(), new.callbacks()
        self.old_rec, self.new_rec = old.record(old_cb, ""), new.record(new_cb, "")
        try:
            self.old_out = queue_outcome(old_cb, self.old_rec)
            self.new_out = queue_outcome(new_cb, self.new_rec)
        except (Unsupported, NotModelled, z3.Z3Exception) as error:
            self.failure = _translation_failure(error)
            return
        self.facts = Facts([self.old_rec.valid(), self.new_rec.valid()], timeout_ms)
        self.preferences = old_cb.preferences() + new_cb.preferences()
        self.read = constants([self.old_out, self.new_out])

    def compare(self, diff: EventDiff) -> None:
        if self.failure is not None:
            diff.decision, diff.reason = UNKNOWN, self.failure
            return
        try:
            if diff.in_old and diff.in_new:
                self._both(diff)
            else:
                self._one(diff)
        except (NotModelled, z3.Z3Exception) as error:
            diff.decision, diff.reason = UNKNOWN, _translation_failure(error)

    def _both(self, diff: EventDiff) -> None:
        name = diff.event
        scope = _link(self.old, self.new, self.old_rec, self.new_rec, name)
        query = self.facts.query(scope)
        if query.sat() is not True:
            diff.decision = UNKNOWN
            diff.reason = query.unknown or "vacuous: no event is valid in both schemas"
            return
        differs = query.sat(self.old_out != self.new_out)
        if differs is None:
            diff.decision, diff.reason = UNKNOWN, query.unknown or ""
            return
        if not differs:
            return
        diff.decision = CHANGED
        facets = _facets(self.old.catalog.events[name], self.new.catalog.events[name],
                         self.old_rec, self.new_rec)
        for before in range(len(OUTCOMES)):
            for after in range(len(OUTCOMES)):
                claim = z3.And(self.old_out == before, self.new_out == after)
                if before == after or query.sat(claim) is False:
                    continue
                condition, exact = describe_condition(self.facts, scope, claim,
                                                      read_by(facets, self.read))
                model = _witness(self.facts, scope, claim, self.preferences, facets)
                witness = {} if model is None else {
                    "old": self.old_rec.concrete(model), "new": self.new_rec.concrete(model)}
                diff.changes.append(DecisionChange(OUTCOMES[before], OUTCOMES[after],
                                                   condition, exact, witness))
        if query.unknown:
            diff.decision, diff.reason = UNKNOWN, query.unknown

    def _one(self, diff: EventDiff) -> None:
        """An event only one schema has: its outcomes in that version, with conditions."""
        side, record, out = ((self.new, self.new_rec, self.new_out) if diff.in_new
                             else (self.old, self.old_rec, self.old_out))
        scope = [record.event == side.space.index[diff.event]]
        query = self.facts.query(scope)
        possible = [o for o in range(len(OUTCOMES)) if query.sat(out == o) is not False]
        event = side.catalog.events[diff.event]
        facets = read_by(_facets(None, event, None, record), self.read)
        for o in possible:
            condition = ""
            if len(possible) > 1:
                condition, exact = describe_condition(self.facts, scope, out == o, facets)
                condition += "" if exact else " (in part)"
            diff.outcomes.append((OUTCOMES[o], condition))
        if query.unknown:
            diff.decision, diff.reason = UNKNOWN, query.unknown


class _Relations:
    """equal(a, b) of both versions on two linked pairs of records both versions throttle."""

    def __init__(self, old: Side, new: Side, timeout_ms: int) -> None:
        self.old, self.new, self.timeout_ms = old, new, timeout_ms
        self.failure: Optional[str] = None
        views = {side.label: side.callbacks() for side in (old, new)}
        self.records = {(side.label, name): side.record(views[side.label], f".{name}")
                        for side in (old, new) for name in ("a", "b")}
        r = self.records
        try:
            self.equal_old = views["old"].equal(r["old", "a"], r["old", "b"])
            self.equal_new = views["new"].equal(r["new", "a"], r["new", "b"])
            # Records both versions put through the table, on which no call aborts.
            domain = views["old"].domain([r["old", "a"], r["old", "b"]]) + \
                views["new"].domain([r["new", "a"], r["new", "b"]])
            code = [self.equal_old, self.equal_new] + [
                term for side in ("old", "new") for term in (
                    views[side].translation("equal", r[side, "a"], r[side, "b"]).defined(),
                    *(views[side].reaches_table(r[side, n]) for n in "ab"),
                    *(views[side].translation("queue", r[side, n]).defined() for n in "ab"))]
        except (Unsupported, NotModelled, z3.Z3Exception) as error:
            self.failure = _translation_failure(error)
            return
        self.facts = Facts(domain, timeout_ms)
        self.read = constants(code)
        self.preferences = views["old"].preferences() + views["new"].preferences()

    def compare(self, name: str) -> KeyRelation:
        if self.failure is not None:
            return KeyRelation(UNKNOWN, self.failure)
        try:
            return self._compare(name)
        except (NotModelled, z3.Z3Exception) as error:
            return KeyRelation(UNKNOWN, _translation_failure(error))

    def _compare(self, name: str) -> KeyRelation:
        r = self.records
        scope = [*_link(self.old, self.new, r["old", "a"], r["new", "a"], name),
                 *_link(self.old, self.new, r["old", "b"], r["new", "b"], name)]
        query = self.facts.query(scope)
        if query.sat() is not True:
            return KeyRelation(UNKNOWN, query.unknown or "vacuous: no record of this event "
                               "reaches the table in both versions")
        claim = self.equal_old != self.equal_new
        differs = query.sat(claim)
        if differs is None:
            return KeyRelation(UNKNOWN, query.unknown or "")
        if not differs:
            return KeyRelation(UNCHANGED)
        old_event, new_event = self.old.catalog.events[name], self.new.catalog.events[name]
        facets = [*_facets(old_event, new_event, r["old", "a"], r["new", "a"], "a."),
                  *_facets(old_event, new_event, r["old", "b"], r["new", "b"], "b.")]
        condition, exact = describe_condition(self.facts, scope, claim,
                                              read_by(facets, self.read))
        model = _witness(self.facts, scope, claim, self.preferences, facets)
        relation = KeyRelation(CHANGED, "", condition, exact)
        if model is not None:
            relation.equal_old = bool(z3.is_true(model.eval(self.equal_old,
                                                            model_completion=True)))
            relation.equal_new = not relation.equal_old
            relation.witness = {n: r["new", n].concrete(model) for n in "ab"}
        return relation
