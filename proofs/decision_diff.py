"""What changed in the throttle between two versions: rates, keys and, with z3, decisions.

Per event of either schema:
* rate and key members, old -> new: the rate table (extraction.rates) and the
  syntactic key scan of model.policy;
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
  the table (the syntactic key scan can miss a change in how members are
  compared, e.g. stop-irreflexive's early FALSE).
Events only one schema has are described alone ("added"/"removed"); they are
throttle changes only when that version can throttle them.

Bounds: one solver timeout per query; nothing else (every valid event).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import z3

from qthrottle.core import Status
from qthrottle.harness.extract import Extraction
from qthrottle.harness.policy_scan import policy_from_extraction
from qthrottle.model.ghash import Record
from qthrottle.model.members import KINDS, member_kind
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog, Event, Member
from qthrottle.model.timeline import format_ns

from .callbacks import Callbacks
from .equivalence import OUTCOMES, THROTTLED, queue_outcome
from .execution import Unsupported
from .solve import readable
from .space import EventSpace, SymbolicRecord
from .values import NotModelled

Term = Any
UNCHANGED, CHANGED = "unchanged", "changed"  # and Status.UNKNOWN
UNKNOWN = Status.UNKNOWN
PROBE_TIMEOUT_MS = 2_000  # per query that only shapes a readable condition


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
            return [Change(e, kind, f"{e} ({'new' if self.in_new else 'removed'} event): "
                                    f"{describe_outcomes(self.outcomes)}; rate "
                                    f"{rate_text(rate)}, key {key_text(key)}")]
        changes = []
        if self.rate_old != self.rate_new:
            changes.append(Change(e, "rate", f"{e}: rate {rate_text(self.rate_old)} -> "
                                             f"{rate_text(self.rate_new)}"))
        if self.key_old != self.key_new:
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


def key_text(key: Optional[Tuple[str, ...]]) -> str:
    if key is None:
        return "-"
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

    def __init__(self, label: str, extraction: Extraction, catalog: Catalog) -> None:
        self.label = label
        self.extraction = extraction
        self.catalog = catalog
        self.space = EventSpace(catalog, extraction)
        self.policy: Policy = policy_from_extraction(extraction)

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

class _Facts:
    """The facts every question of a kind shares (schema validity, domain), and the timeout."""

    def __init__(self, assumptions: Sequence[Term], timeout_ms: int) -> None:
        self.assumptions = list(assumptions)
        self.timeout_ms = timeout_ms

    def query(self, scope: Sequence[Term], timeout_ms: Optional[int] = None) -> _Query:
        return _Query([*self.assumptions, *scope], timeout_ms or self.timeout_ms)


class _Query:
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
class _Facet:
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


def _facets(old: Optional[Event], new: Optional[Event], old_rec: Optional[SymbolicRecord],
            new_rec: Optional[SymbolicRecord], prefix: str = "") -> List[_Facet]:
    """Members of the event, on NEW's record where NEW's schema has the member."""
    facets = []
    if new is not None and new_rec is not None:
        facets += [_Facet(prefix + m.name, m, new_rec,
                          old_rec if old is not None and old.member(m.name) else None)
                   for m in new.members]
    if old is not None and old_rec is not None:
        facets += [_Facet(prefix + m.name, m, old_rec) for m in old.members
                   if new is None or new.member(m.name) is None]
    return facets


def _read(facets: Sequence[_Facet], read: Set[int]) -> List[_Facet]:
    """The facets the translated code reads (constants in @read): a member no code
    reads takes no part in a condition, and asking about it would only cost queries."""
    return [f for f in facets if f.constants() & read]


def _constants(terms: Sequence[Term]) -> Set[int]:
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


def _atom(query: _Query, facet: _Facet) -> Tuple[str, Term]:
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


def _condition(facts: _Facts, scope: Sequence[Term], claim: Term,
               facets: Sequence[_Facet]) -> Tuple[str, bool]:
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


def _witness(facts: _Facts, scope: Sequence[Term], claim: Term,
             preferences: Sequence[Tuple[Term, int]],
             facets: Sequence[_Facet]) -> Optional[z3.ModelRef]:
    """A readable model; only goals about the event's own members (each goal is a query)."""
    own = {i for f in facets for i in f.constants()}
    goals = [(goal, weight) for goal, weight in preferences if _constants([goal]) <= own]
    return readable([*facts.assumptions, *scope, claim], goals, facts.timeout_ms)


# -------------------------------------------------------------- the diff

def diff_throttles(old_extraction: Extraction, old_catalog: Catalog,
                   new_extraction: Extraction, new_catalog: Catalog,
                   timeout_ms: int) -> ThrottleDiff:
    """Rates, keys, decisions and key relations of every event, old -> new."""
    start = time.perf_counter()
    old = Side("old", old_extraction, old_catalog)
    new = Side("new", new_extraction, new_catalog)
    names = list(new_catalog.events) + [e for e in old_catalog.events
                                        if e not in new_catalog.events]
    diffs = [EventDiff(name, name in old_catalog.events, name in new_catalog.events,
                       old.rate(name), new.rate(name), old.key(name), new.key(name),
                       UNCHANGED) for name in names]
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
        self.facts = _Facts([self.old_rec.valid(), self.new_rec.valid()], timeout_ms)
        self.preferences = old_cb.preferences() + new_cb.preferences()
        self.read = _constants([self.old_out, self.new_out])

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
                condition, exact = _condition(self.facts, scope, claim,
                                              _read(facets, self.read))
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
        facets = _read(_facets(None, event, None, record), self.read)
        for o in possible:
            condition = ""
            if len(possible) > 1:
                condition, exact = _condition(self.facts, scope, out == o, facets)
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
        self.facts = _Facts(domain, timeout_ms)
        self.read = _constants(code)
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
        condition, exact = _condition(self.facts, scope, claim, _read(facets, self.read))
        model = _witness(self.facts, scope, claim, self.preferences, facets)
        relation = KeyRelation(CHANGED, "", condition, exact)
        if model is not None:
            relation.equal_old = bool(z3.is_true(model.eval(self.equal_old,
                                                            model_completion=True)))
            relation.equal_new = not relation.equal_old
            relation.witness = {n: r["new", n].concrete(model) for n in "ab"}
        return relation
