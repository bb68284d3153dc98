"""One key's throttle as a transition system, built from the extracted C.

The queue function and the timer handler are translated (translate.py, with
the state of one throttle record added: this module's StepExecutor) into a
relation between the state of one key before and after a step:

* the key's record: present or not (allocated, reachable from the table or its
  timer), in the table or not, its timer pending or not and its deadline, the
  event it holds back (rec->qdict: NULL or a queued event), the record it was
  stored with (rec->event, rec->data: a symbolic record);
* the clock, a 64-bit count of ns that never goes back.

A step queues one valid event (of the key or of another: the lookup finds the
key's record exactly when GLib would, the translated hash and equality over the
stored record), lets the key's timer fire (the handler runs at its deadline), or
moves the clock short of the deadline. Its outputs are the emissions (the emit
call as an output: which queued event, by the pointer the C passes), whether a
record was freed while the table holds it, and whether the C left the one-record
model (a second record of the key: the step ends the model, never a verdict).

The key is the policy's (proofs/policy.py derives it from the C): the events
whose key equals a witness record's. Records of other keys are not followed;
that they never meet the key's record in GLib's probes is the decomposition
theorem, proved once over the callbacks (induction.py).

Library calls in the two functions mean what STATE_LIBRARY says, besides
library.LIBRARY; the clock stays below CLOCK_LIMIT (no int64 overflow of
now + rate, as in QEMU for 146 years).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import z3
from tree_sitter import Node

from qthrottle.model import invariants as inv
from qthrottle.model.ghash import glib_hash
from qthrottle.model.logic import Eq
from qthrottle.model.members import KINDS, member_kind
from qthrottle.model.policy import Policy

from .callbacks import Callbacks
from .execution import FALSE, TRUE, State, Term, Variable, conj, disj, merge_states, neg, text
from .space import SymbolicRecord
from .translate import Executor
from .values import (
    CBool,
    CInt,
    CType,
    DataDict,
    EventQDict,
    NullPtr,
    Opaque,
    Reference,
    StructValue,
    Unreachable,
    Value,
    merge,
    resize,
    to_int,
)

CELL = CType("other", name="throttle state")  # cells are written by the executor only
CLOCK_LIMIT = 2**62  # ns; QEMU's int64 clock, with room for now + rate
INT64 = (-2**63, 2**63)


def ns(value: int) -> Term:
    """A time (or an event number) of the model: a mathematical integer. The C computes
    with int64_t; as_time converts its clock arithmetic, which never overflows here."""
    return z3.IntVal(value)


def time_var(name: str) -> Term:
    return z3.Int(name)


def ite(pairs: Sequence[Tuple[Term, Term]], otherwise: Term) -> Term:
    term = otherwise
    for condition, value in reversed(pairs):
        term = value if z3.is_true(condition) else term if z3.is_false(condition) else \
            z3.If(condition, value, term)
    return term


# ----------------------------------------------------------------- references

@dataclass(frozen=True, eq=False)
class EventRef(Reference):
    """A QDict * of a queued event (the queue function's qdict, a record's held event), or
    NULL; it carries what the obligations need to know of the event it points to."""

    nil: Term
    seq: Term  # which queued event: the queue steps are numbered
    at: Term  # the clock when it was queued
    stop: Term  # is_stop_event
    throttled: Term  # the policy throttles its event
    ours: Term  # the event is of the key followed

    def null(self) -> Term:
        return self.nil

    @staticmethod
    def none() -> EventRef:
        return EventRef(TRUE, ns(0), ns(0), FALSE, FALSE, FALSE)

    @staticmethod
    def fresh(name: str) -> EventRef:
        """An event nothing is known of, of another key (a record the model does not follow)."""
        return EventRef(z3.Bool(f"{name}.nil"), time_var(f"{name}.seq"),
                        time_var(f"{name}.at"), z3.Bool(f"{name}.stop"),
                        z3.Bool(f"{name}.throttled"), FALSE)

    @classmethod
    def merged(cls, pairs: Sequence[Tuple[Term, Value]]) -> Value:
        refs = [(c, v if isinstance(v, EventRef) else EventRef.none()) for c, v in pairs]
        last = refs[-1][1]
        return EventRef(*(ite([(c, getattr(r, f.name)) for c, r in refs[:-1]],
                              getattr(last, f.name)) for f in fields(EventRef)))


@dataclass(frozen=True, eq=False)
class _Pointer(Reference):
    """A pointer the model follows: to the key's object, to the one this call allocated,
    to another key's (neither), or NULL; the conditions are disjoint."""

    slot: Term
    new: Term
    nil: Term

    def null(self) -> Term:
        return self.nil

    @classmethod
    def merged(cls, pairs: Sequence[Tuple[Term, Value]]) -> Value:
        refs = [(c, v if isinstance(v, cls) else cls(FALSE, FALSE, TRUE)) for c, v in pairs]
        return cls(*(disj(*(conj(c, getattr(r, name)) for c, r in refs))
                     for name in ("slot", "new", "nil")))


@dataclass(frozen=True, eq=False)
class RecordRef(_Pointer):
    """A pointer to a throttle record: the key's, the one this call allocated, another
    key's (neither), or NULL."""

    @property
    def other(self) -> Term:
        return neg(disj(self.slot, self.new, self.nil))


@dataclass(frozen=True, eq=False)
class TimerRef(_Pointer):
    """A QEMUTimer *: the key's record's timer, the new record's, another's, or NULL."""


@dataclass(frozen=True, eq=False)
class Time(Reference):
    """A time the executor keeps in a record (a timer's deadline): no C value, never NULL."""

    term: Term

    def null(self) -> Term:
        return FALSE

    @classmethod
    def merged(cls, pairs: Sequence[Tuple[Term, Value]]) -> Value:
        times = [(c, v.term) for c, v in pairs if isinstance(v, Time)]
        return Time(ite(times[:-1], times[-1][1]))


@dataclass(frozen=True, eq=False)
class KeyData(Reference):
    """rec->data: the data dict of the event a record was stored with, or NULL."""

    record: Optional[SymbolicRecord]  # None: of a record the model does not follow
    nil: Term

    def null(self) -> Term:
        return self.nil

    @classmethod
    def merged(cls, pairs: Sequence[Tuple[Term, Value]]) -> Value:
        records = {id(v.record): v.record for _, v in pairs if isinstance(v, KeyData)
                   and v.record is not None}
        if len(records) > 1 or any(isinstance(v, KeyData) and v.record is None
                                   for _, v in pairs):
            return Opaque("the data dict of records stored on different paths")
        nil = disj(*(conj(c, v.nil if isinstance(v, KeyData) else TRUE) for c, v in pairs))
        return KeyData(next(iter(records.values()), None), nil)


# -------------------------------------------------------------------- records

class ChosenRecord(SymbolicRecord):
    """The record @choices[i][1] where choices[i][0] holds (the first that does), else
    @otherwise: the key's stored record after a step that may have replaced it."""

    def __init__(self, name: str, choices: Sequence[Tuple[Term, SymbolicRecord]],
                 otherwise: SymbolicRecord) -> None:
        super().__init__(otherwise.space, name)
        self.choices, self.otherwise = list(choices), otherwise
        self.event = ite([(c, r.event) for c, r in self.choices], otherwise.event)

    def present(self, member: str) -> Term:
        if member not in self._present:
            self._present[member] = ite([(c, r.present(member)) for c, r in self.choices],
                                        self.otherwise.present(member))
        return self._present[member]

    def value(self, member: str, kind: str) -> Term:
        key = (member, kind)
        if key not in self._values:
            self.present(member)
            self._values[key] = ite([(c, r.value(member, kind)) for c, r in self.choices],
                                    self.otherwise.value(member, kind))
        return self._values[key]

    def valid(self, free: Optional[str] = None) -> Term:
        raise TypeError("a chosen record is valid when the records it chooses from are")

    def concrete(self, model: z3.ModelRef) -> Any:
        for condition, record in self.choices:
            if z3.is_true(model.eval(condition, model_completion=True)):
                return record.concrete(model)
        return self.otherwise.concrete(model)


class StoredRecord(ChosenRecord):
    """A record stored with the event number @event and the data dict of @data."""

    def __init__(self, name: str, event: Term, data: SymbolicRecord) -> None:
        super().__init__(name, [], data)
        self.event = event


# ---------------------------------------------------------------------- state

@dataclass(frozen=True)
class Slot:
    """The key's record, if it has one."""

    live: Term  # allocated, not freed, reachable (from the table or its pending timer)
    in_table: Term
    armed: Term  # its timer is pending
    deadline: Term
    held: EventRef  # rec->qdict
    stored: SymbolicRecord  # rec->event, rec->data

    @staticmethod
    def empty(stored: SymbolicRecord) -> Slot:
        return Slot(FALSE, FALSE, FALSE, ns(0), EventRef.none(), stored)


@dataclass
class StepResult:
    """What one step did: the key's record after it, and the step's outputs."""

    slot: Slot
    now: Term
    emissions: List[Tuple[Term, EventRef]]  # (the emit call executes, what it emits)
    dangling: Term  # a record of the key freed while the table holds it
    escape: Term  # the C leaves the model: a second record of the key
    returns: Term  # the callbacks it calls return (their aborts are invariant 7's)
    in_table: Term  # after the step, a record of the key is in the table
    aborts: Term  # the queue function or the handler itself aborts QEMU in this step


# ------------------------------------------------------------------- the world

class World:
    """One proof's view of the target: the callbacks, the policy and the key followed."""

    def __init__(self, cb: Callbacks, policy: Policy) -> None:
        self.cb = cb
        self.space = cb.space
        self.extraction = cb.ctx.extraction
        self.policy = policy
        self.key = cb.record("key")
        self._fresh = 0

    def fresh(self, prefix: str) -> str:
        self._fresh += 1
        return f"{prefix}!{self._fresh}"

    def same_key(self, a: SymbolicRecord, b: SymbolicRecord) -> Term:
        """The policy's key of @a and @b agree: same event, same key members (presence
        and value)."""
        space, facts = self.space, [a.event == b.event]
        for event, members in self.policy.keys.items():
            if event not in space.index:
                continue
            agree = []
            for member in members:
                kinds = {member_kind(m) for m in space.members.get(member, {}).values()}
                kind = next((k for k in KINDS if k in kinds), None)
                agree.append(a.present(member) == b.present(member))
                if kind is not None:
                    agree.append(a.value(member, kind) == b.value(member, kind))
            facts.append(z3.Implies(a.event == space.index[event], z3.And(*agree)))
        return z3.And(*facts)

    def ours(self, record: SymbolicRecord) -> Term:
        return self.same_key(self.key, record)

    def rate(self, record: SymbolicRecord) -> Term:
        """The rate table's entry for the record's event, in ns (0: unthrottled)."""
        return ite([(record.event == index, ns(rate))
                    for index, rate in sorted(self.space.rates.items())], ns(0))

    def seen(self, record: SymbolicRecord, now: Term, seq: Term) -> EventRef:
        """The queue function's qdict for @record, queued at @now as event number @seq."""
        stop = inv.is_stop_event(record.event_name(), record.data())
        return EventRef(FALSE, seq, now, z3.BoolVal(stop) if isinstance(stop, bool) else stop,
                        self.rate(record) > 0, self.ours(record))

    def matches(self, stored: SymbolicRecord, probe: SymbolicRecord,
                where: Term, returns: List[Term]) -> Term:
        """GLib's probe for @probe stops at @stored (model.ghash.matches with the translated
        callbacks); where the probe executes, the callbacks it calls return."""
        cb = self.cb
        hashes = [cb.translation("hash", r) for r in (stored, probe)]
        same_hash = Eq(glib_hash(cb.hash(stored)), glib_hash(cb.hash(probe)))
        equal = cb.translation("equal", stored, probe)
        returns.append(z3.Implies(where, z3.And(*(h.defined() for h in hashes))))
        returns.append(z3.Implies(conj(where, same_hash), equal.defined()))
        return z3.And(same_hash, cb.equal(stored, probe))


# -------------------------------------------------------- the library, stateful

Apply = Callable[["StepExecutor", Node, List[Node], State, Term], Value]


@dataclass(frozen=True)
class StateModel:
    meaning: str  # for people (README.md's table is checked against it)
    apply: Apply


Expression = Callable[["StepExecutor", Node, State, Term], Value]


def _as_step(handler: Expression) -> Callable[[Executor, Node, State, Term], Value]:
    """@handler in the translator's table of expressions (which only StepExecutor uses)."""
    def dispatch(ex: Executor, node: Node, state: State, guard: Term) -> Value:
        assert isinstance(ex, StepExecutor)
        return handler(ex, node, state, guard)
    return dispatch


class StepExecutor(Executor):
    """The queue function or the timer handler, with the key's record as state.

    The state lives in variables the C cannot name ("@slot.held", ...), so that
    the translator's merges of paths merge it too; helpers (inlined calls) see
    none of it and may not touch a record.
    """

    def __init__(self, world: World, role: str, slot: Slot, now: Term,
                 queued: Optional[Tuple[SymbolicRecord, EventRef]] = None) -> None:
        super().__init__(world.cb.ctx, role)
        self.world, self.slot, self.now, self.queued = world, slot, now, queued
        self.emissions: List[Tuple[Term, EventRef]] = []
        self.returns: List[Term] = []
        self.clock = z3.BitVec(world.fresh("clock"), 64)  # what qemu_clock_get_ns() returns
        self.in_range: List[Term] = []  # the int64 sums of the clock arithmetic do not wrap
        self.new_record: Optional[SymbolicRecord] = None  # once added to the table
        self.allocated = False
        self.frames_name = ""  # the function translated

    def entry_variables(self) -> Dict[str, Variable]:
        slot = self.slot
        cells: Dict[str, Value] = {
            "slot.live": CBool(slot.live), "slot.in_table": CBool(slot.in_table),
            "slot.armed": CBool(slot.armed), "slot.deadline": Time(slot.deadline),
            "slot.held": slot.held, "slot.dangling": CBool(FALSE),
            "new.made": CBool(FALSE), "new.event": CInt(z3.BitVecVal(0, 32), False),
            "new.data": KeyData(None, TRUE), "new.held": EventRef.none(),
            "new.timer": TimerRef(FALSE, FALSE, TRUE), "new.timer_made": CBool(FALSE),
            "new.armed": CBool(FALSE), "new.deadline": Time(ns(0)),
            "new.in_table": CBool(FALSE), "new.dangling": CBool(FALSE)}
        return {f"@{name}": Variable(CELL, value) for name, value in cells.items()}

    # cells ------------------------------------------------------------------

    def cell(self, state: State, name: str, node: Node) -> Value:
        variable = state.find(f"@{name}")
        if variable is None:
            raise self.unsupported(node, "a throttle record used inside a helper function")
        return variable.value

    def put(self, state: State, name: str, condition: Term, value: Value, node: Node) -> None:
        """Cell @name becomes @value where @condition holds."""
        if z3.is_false(z3.simplify(condition)):
            return
        old = self.cell(state, name, node)
        state.assign(f"@{name}", value if z3.is_true(condition) else
                     merge([(condition, value), (neg(condition), old)]))

    def flag(self, state: State, name: str, node: Node) -> Term:
        value = self.cell(state, name, node)
        assert isinstance(value, CBool)
        return value.term

    def time(self, state: State, name: str, node: Node) -> Term:
        value = self.cell(state, name, node)
        assert isinstance(value, Time)
        return value.term

    def as_time(self, term: Term) -> Term:
        """The int64 value of a C expression over the clock, as an integer (the clock's
        symbol is the step's time; the sums of the clock and the rate table's entries stay
        in int64's range, which the step assumes: assumed_in_range)."""
        return _as_int(z3.simplify(term), self.clock, self.now, self.in_range, True)

    # values -----------------------------------------------------------------

    def event_ref(self, node: Node, value: Value) -> EventRef:
        """A QDict * of a queued event, as the record or the emit call keeps it."""
        if isinstance(value, EventRef):
            return value
        if isinstance(value, NullPtr):
            return EventRef.none()
        if isinstance(value, EventQDict) and self.queued is not None and \
                value.record is self.queued[0]:
            return self.queued[1]
        raise self.unsupported(node, f"an event's QDict expected, not {_what(value)}")

    def record_ref(self, node: Node, value: Value) -> RecordRef:
        if isinstance(value, RecordRef):
            return value
        if isinstance(value, NullPtr):
            return RecordRef(FALSE, FALSE, TRUE)
        raise self.unsupported(node, f"a throttle record expected, not {_what(value)}")

    def timer_ref(self, node: Node, value: Value) -> TimerRef:
        if isinstance(value, TimerRef):
            return value
        raise self.unsupported(node, f"a timer expected, not {_what(value)}")

    def probe(self, node: Node, value: Value, state: State) -> Tuple[SymbolicRecord, Term]:
        """The record a lookup or remove probes with, and where it is the key's own."""
        if isinstance(value, StructValue):
            event, data = value.field("event"), value.field("data")
            if not isinstance(data, DataDict) or not isinstance(event, (CInt, CBool)):
                raise self.unsupported(node, "a probe key other than { .event, .data } of the "
                                       "queued event")
            return self.stored_record(to_int(event).term, data.record), FALSE
        ref = self.record_ref(node, value)
        if not z3.is_false(z3.simplify(disj(ref.new, ref.other))):
            raise self.unsupported(node, "a probe with another record than the timer's own")
        return self.slot.stored, TRUE

    def new_key(self, state: State, node: Node) -> SymbolicRecord:
        """The record this call allocated, as its fields now say (rec->event, rec->data)."""
        event, data = self.cell(state, "new.event", node), self.cell(state, "new.data", node)
        if not isinstance(data, KeyData) or data.record is None or not isinstance(event, CInt):
            raise self.unsupported(node, "a record stored without the queued event's data")
        return self.stored_record(event.term, data.record)

    def stored_record(self, event: Term, data: SymbolicRecord) -> SymbolicRecord:
        event = resize(CInt(event, False), 32, False).term
        if z3.eq(z3.simplify(event), z3.simplify(data.event)):
            return data
        return StoredRecord(self.world.fresh(f"stored:{data.name}"), event, data)

    # expressions ------------------------------------------------------------

    def _field(self, node: Node, state: State, guard: Term) -> Value:
        argument = node.child_by_field_name("argument")
        assert argument is not None
        base = self.eval(argument, state, guard)
        if not isinstance(base, RecordRef):
            return Executor._field(self, node, state, guard)
        name = text(node.child_by_field_name("field"))
        self.abort_if(node, state, guard, base.nil)
        slot, fresh = self.slot, self.world.fresh("other")
        by_owner: Dict[str, Callable[[], Value]] = {
            "event": lambda: CInt(slot.stored.event, False),
            "data": lambda: KeyData(slot.stored, FALSE),
            "qdict": lambda: self.cell(state, "slot.held", node),
            "timer": lambda: TimerRef(TRUE, FALSE, FALSE)}
        by_new: Dict[str, Callable[[], Value]] = {
            "event": lambda: self.cell(state, "new.event", node),
            "data": lambda: self.cell(state, "new.data", node),
            "qdict": lambda: self.cell(state, "new.held", node),
            "timer": lambda: self.cell(state, "new.timer", node)}
        by_other: Dict[str, Callable[[], Value]] = {
            "event": lambda: CInt(z3.BitVec(fresh, 32), False),
            "data": lambda: KeyData(None, FALSE),
            "qdict": lambda: EventRef.fresh(fresh),
            "timer": lambda: TimerRef(FALSE, FALSE, FALSE)}
        if name not in by_owner:
            raise self.unsupported(node, f"the record field '{name}' (event, data, qdict and "
                                   "timer are modelled)")
        pairs = [(c, make[name]()) for c, make in ((base.slot, by_owner), (base.new, by_new),
                                                  (base.other, by_other))
                 if not z3.is_false(z3.simplify(c))]
        return merge(pairs) if pairs else Unreachable()

    def _assignment(self, node: Node, state: State, guard: Term) -> Value:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        assert left is not None and right is not None
        if left.type != "field_expression":
            return Executor._assignment(self, node, state, guard)
        argument = left.child_by_field_name("argument")
        assert argument is not None
        base = self.eval(argument, state, guard)
        if not isinstance(base, RecordRef):
            return Executor._assignment(self, node, state, guard)
        if text(node.child_by_field_name("operator")) != "=":
            raise self.unsupported(node, "a compound assignment to a record field")
        name = text(left.child_by_field_name("field"))
        value = self.eval(right, state, guard)
        self.abort_if(node, state, guard, base.nil)
        on_slot, on_new = conj(guard, base.slot), conj(guard, base.new)
        if name == "qdict":
            ref = self.event_ref(right, value)
            self.put(state, "slot.held", on_slot, ref, node)
            self.put(state, "new.held", on_new, ref, node)
            return value
        if not z3.is_false(z3.simplify(on_slot)):
            raise self.unsupported(node, f"an assignment to the '{name}' of a record in the "
                                   "table (only its held event may change)")
        if name == "event":
            self.put(state, "new.event", on_new, resize(to_int(value), 32, False), node)
        elif name == "data":
            data = KeyData(value.record, FALSE) if isinstance(value, DataDict) else \
                KeyData(None, TRUE) if isinstance(value, NullPtr) else None
            if data is None:
                raise self.unsupported(node, "a record stored with another data dict than "
                                       "the event's")
            self.put(state, "new.data", on_new, data, node)
        elif name == "timer":
            self.put(state, "new.timer", on_new, self.timer_ref(right, value), node)
        else:
            raise self.unsupported(node, f"the record field '{name}'")
        return value

    def _call(self, node: Node, state: State, guard: Term) -> Value:
        function = node.child_by_field_name("function")
        arguments = node.child_by_field_name("arguments")
        assert function is not None and arguments is not None
        model = STATE_LIBRARY.get(text(function)) if function.type == "identifier" else None
        if model is None:
            return Executor._call(self, node, state, guard)
        return model.apply(self, node, [a for a in arguments.named_children
                                        if a.type != "comment"], state, guard)

    _expressions = {**Executor._expressions, "field_expression": _as_step(_field),
                    "assignment_expression": _as_step(_assignment),
                    "call_expression": _as_step(_call)}

    def where(self, state: State, guard: Term) -> Term:
        return conj(state.pc, guard)

    def in_slot(self, state: State, node: Node, probe: SymbolicRecord, where: Term) -> Term:
        """The key's record is in the table and GLib's probe for @probe stops at it. GLib
        hashes the probe first, whatever the table holds: where that aborts, the step does."""
        self.returns.append(z3.Implies(where, self.world.cb.translation("hash", probe).defined()))
        slot_in = self.flag(state, "slot.in_table", node)
        if z3.is_false(z3.simplify(slot_in)):
            return FALSE
        return conj(slot_in, self.world.matches(self.slot.stored, probe, conj(where, slot_in),
                                                self.returns))


def _what(value: Value) -> str:
    from .values import describe

    return describe(value) if not isinstance(value, Reference) else type(value).__name__


# ------------------------------------------------------ library with state effects

def _arity(ex: StepExecutor, node: Node, args: List[Node], count: int) -> None:
    if len(args) != count:
        raise ex.unsupported(node, f"{text(node.child_by_field_name('function'))}() with "
                             f"{len(args)} argument(s)")


def _emit(ex: StepExecutor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 2)
    ex.eval(args[0], state, guard)
    ref = ex.event_ref(args[1], ex.eval(args[1], state, guard))
    ex.abort_if(node, state, guard, ref.nil)
    ex.emissions.append((ex.where(state, guard), ref))
    return Opaque("the value of the emit call")


def _lookup(ex: StepExecutor, node: Node, args: List[Node], state: State,
            guard: Term) -> RecordRef:
    _arity(ex, node, args, 2)
    record, _ = ex.probe(args[1], ex.eval(args[1], state, guard), state)
    where = ex.where(state, guard)
    new_in = ex.flag(state, "new.in_table", node)
    on_slot = ex.in_slot(state, node, record, where)
    on_new = FALSE
    if ex.new_record is not None and not z3.is_false(z3.simplify(new_in)):
        on_new = conj(neg(on_slot), new_in, ex.world.matches(
            ex.new_record, record, conj(where, new_in, neg(on_slot)), ex.returns))
    # Another key's record, never one of this key's events (the decomposition theorem):
    other = conj(z3.Bool(ex.world.fresh("found-another")), neg(ex.world.ours(record)))
    found_other = conj(neg(on_slot), neg(on_new), other)
    return RecordRef(on_slot, on_new, conj(neg(on_slot), neg(on_new), neg(found_other)))


def _contains(ex: StepExecutor, node: Node, args: List[Node], state: State,
              guard: Term) -> Value:
    return CBool(neg(_lookup(ex, node, args, state, guard).nil))


def _add(ex: StepExecutor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 2)
    ref = ex.record_ref(args[1], ex.eval(args[1], state, guard))
    if not z3.is_false(z3.simplify(disj(ref.slot, ref.other, ref.nil))):
        raise ex.unsupported(node, "g_hash_table_add() of another record than the one this "
                             "call allocated")
    if ex.new_record is not None:
        raise ex.unsupported(node, "a record added to the table twice")
    ex.new_record = ex.new_key(state, node)
    here = conj(guard, ref.new)
    # GLib replaces an equal stored key in place: the key's record would leave the table.
    replaced = ex.in_slot(state, node, ex.new_record, conj(state.pc, here))
    ex.put(state, "slot.in_table", conj(here, replaced), CBool(FALSE), node)
    ex.put(state, "new.in_table", here, CBool(TRUE), node)
    return Opaque("the value of g_hash_table_add()")


def _remove(ex: StepExecutor, node: Node, args: List[Node], state: State,
            guard: Term) -> Value:
    _arity(ex, node, args, 2)
    record, own = ex.probe(args[1], ex.eval(args[1], state, guard), state)
    hit = ex.in_slot(state, node, record, ex.where(state, guard))
    ex.put(state, "slot.in_table", conj(guard, hit), CBool(FALSE), node)
    return CBool(hit)


def _new_record(ex: StepExecutor, node: Node, args: List[Node], state: State,
                guard: Term) -> Value:
    _arity(ex, node, args, 2)
    if text(args[0]) != ex.world.extraction.record_type:
        raise ex.unsupported(node, f"an allocation of {text(args[0])} (the throttle record "
                             f"is {ex.world.extraction.record_type})")
    if ex.allocated:
        raise ex.unsupported(node, "a second record allocated in one call")
    ex.allocated = True
    ex.put(state, "new.made", guard, CBool(TRUE), node)
    return RecordRef(FALSE, guard, neg(guard))


def _free(ex: StepExecutor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 1)
    value = ex.eval(args[0], state, guard)
    if not isinstance(value, RecordRef):
        return Opaque("the value of g_free()")  # g_free of anything else: no record state
    for owner, on in (("slot", value.slot), ("new", value.new)):
        here = conj(guard, on)
        in_table = ex.flag(state, f"{owner}.in_table", node)
        ex.put(state, f"{owner}.dangling", conj(here, in_table), CBool(TRUE), node)
        ex.put(state, "slot.live" if owner == "slot" else "new.made", here, CBool(FALSE), node)
    return Opaque("the value of g_free()")


def _timer_new(ex: StepExecutor, node: Node, args: List[Node], state: State,
               guard: Term) -> Value:
    _arity(ex, node, args, 3)
    handler = ex.world.extraction.roles["handler"]
    opaque = ex.record_ref(args[2], ex.eval(args[2], state, guard))
    if text(args[1]) != handler or not z3.is_false(z3.simplify(
            disj(opaque.slot, opaque.other, opaque.nil))):
        raise ex.unsupported(node, f"a timer that does not call {handler}() on the record "
                             "this call allocated")
    ex.put(state, "new.timer_made", guard, CBool(TRUE), node)
    return TimerRef(FALSE, TRUE, FALSE)


def _timer_mod(ex: StepExecutor, node: Node, args: List[Node], state: State,
               guard: Term) -> Value:
    _arity(ex, node, args, 2)
    timer = ex.timer_ref(args[0], ex.eval(args[0], state, guard))
    deadline = ex.as_time(resize(to_int(ex.eval(args[1], state, guard)), 64, True).term)
    ex.abort_if(node, state, guard, timer.nil)
    deadline = z3.If(deadline < 0, ns(0), deadline)  # a past expiry fires at once
    for owner, on in (("slot", timer.slot), ("new", timer.new)):
        ex.put(state, f"{owner}.armed", conj(guard, on), CBool(TRUE), node)
        ex.put(state, f"{owner}.deadline", conj(guard, on), Time(deadline), node)
    return Opaque("the value of timer_mod_ns()")


def _timer_stop(ex: StepExecutor, node: Node, args: List[Node], state: State,
                guard: Term) -> Value:
    _arity(ex, node, args, 1)
    timer = ex.timer_ref(args[0], ex.eval(args[0], state, guard))
    for owner, on in (("slot", timer.slot), ("new", timer.new)):
        ex.put(state, f"{owner}.armed", conj(guard, on), CBool(FALSE), node)
    return Opaque("the value of a timer call")


def _timer_pending(ex: StepExecutor, node: Node, args: List[Node], state: State,
                   guard: Term) -> Value:
    _arity(ex, node, args, 1)
    timer = ex.timer_ref(args[0], ex.eval(args[0], state, guard))
    ex.abort_if(node, state, guard, timer.nil)
    other = z3.Bool(ex.world.fresh("other-timer-pending"))
    return CBool(ite([(timer.slot, ex.flag(state, "slot.armed", node)),
                      (timer.new, ex.flag(state, "new.armed", node))], other))


def _clock(ex: StepExecutor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    return CInt(ex.clock, True)  # one clock (qtest's virtual clock): its type is not read


def _as_int(term: Term, clock: Term, now: Term, in_range: List[Term], signed: bool) -> Term:
    """@term, a bit-vector over @clock and constants, as the integer it denotes (signed or
    not) when @clock is @now: sums stay in int64's range (each one is added to
    @in_range); a term of another shape is converted by z3 (bv2int), slower but exact."""
    def convert(t: Term, signed: bool) -> Term:
        if z3.eq(t, clock):
            return now
        if z3.is_bv_value(t):
            return z3.IntVal(t.as_signed_long() if signed else t.as_long())
        if z3.is_app_of(t, z3.Z3_OP_ITE):
            return z3.If(t.arg(0), convert(t.arg(1), signed), convert(t.arg(2), signed))
        if z3.is_app_of(t, z3.Z3_OP_SIGN_EXT) and signed:
            return convert(t.arg(0), True)
        if z3.is_app_of(t, z3.Z3_OP_ZERO_EXT):
            return convert(t.arg(0), False)
        if z3.is_app_of(t, z3.Z3_OP_BADD) and signed:
            total = sum((convert(a, True) for a in t.children()), z3.IntVal(0))
            in_range.append(z3.And(INT64[0] <= total, total < INT64[1]))
            return total
        if z3.is_app_of(t, z3.Z3_OP_BMUL) and signed and t.num_args() == 2 and \
                z3.is_bv_value(t.arg(0)):
            product = t.arg(0).as_signed_long() * convert(t.arg(1), True)
            in_range.append(z3.And(INT64[0] <= product, product < INT64[1]))
            return product
        if z3.eq(clock, t) is False and clock.get_id() in _ids(t):
            # Another use of the clock: z3 converts it, given the clock's value.
            in_range.append(clock == z3.Int2BV(now, 64))
        return z3.BV2Int(t, is_signed=signed)
    return convert(term, signed)


def _ids(term: Term) -> Set[int]:
    seen: Set[int] = set()
    stack = [term]
    while stack:
        t = stack.pop()
        if t.get_id() not in seen:
            seen.add(t.get_id())
            stack.extend(t.children())
    return seen


def _ref(ex: StepExecutor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 1)
    return ex.eval(args[0], state, guard)


def _unref(ex: StepExecutor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 1)
    ex.eval(args[0], state, guard)
    return Opaque("the value of qobject_unref()")


STATE_LIBRARY: Dict[str, StateModel] = {
    "g_hash_table_lookup": StateModel(
        "the key's record when GLib's probe stops at it (stored hash, then equal(stored, "
        "probe), translated), else NULL or another key's record, never for an event of "
        "the key", _lookup),
    "g_hash_table_contains": StateModel("g_hash_table_lookup() != NULL", _contains),
    "g_hash_table_add": StateModel(
        "the record this call allocated enters the table; a stored key it matches is "
        "replaced in place (that record leaves the table)", _add),
    "g_hash_table_remove": StateModel(
        "takes the key's record out of the table when GLib's probe stops at it", _remove),
    "g_new": StateModel("a new throttle record (uninitialised), once per call", _new_record),
    "g_new0": StateModel("a new throttle record, zeroed, once per call", _new_record),
    "g_free": StateModel("frees a record: freed while the table holds it is a dangling "
                         "entry (invariant 3)", _free),
    "timer_new_ns": StateModel("the new record's timer, calling the timer handler on it",
                               _timer_new),
    "timer_mod_ns": StateModel("arms the timer for that time (a past time: at once)",
                               _timer_mod),
    "timer_mod": StateModel("timer_mod_ns() (nanosecond timers)", _timer_mod),
    "timer_del": StateModel("the timer is no longer pending", _timer_stop),
    "timer_free": StateModel("the timer is no longer pending (nor used again)", _timer_stop),
    "timer_pending": StateModel("whether the timer is pending", _timer_pending),
    "qemu_clock_get_ns": StateModel("the clock: a 64-bit ns count that never goes back "
                                    "(one clock, qtest's virtual clock)", _clock),
    "qobject_ref": StateModel("its argument (reference counts are invariant 8's)", _ref),
    "qobject_unref": StateModel("no effect on the throttle (reference counts are "
                                "invariant 8's)", _unref),
    "monitor_qapi_event_emit": StateModel(
        "an output of the step: the event its QDict points to is emitted now", _emit),
}


# ---------------------------------------------------------------------- steps

def _cells(ex: StepExecutor) -> Optional[State]:
    """The state in which the translated call returns (its paths merged), if it can."""
    exits = [s for s in ex.exits if not s.dead]
    return merge_states(exits) if exits else None


def _finish(world: World, ex: StepExecutor, defined: Term, now: Term) -> StepResult:
    """The key's record after the call, and the call's outputs."""
    end = _cells(ex)
    slot = ex.slot
    if end is None:  # every path aborts: the step never returns
        return StepResult(slot, now, [], FALSE, FALSE, TRUE, FALSE, TRUE)
    node = world.cb.ctx.function(ex.frames_name)

    def flag(name: str) -> Term:
        return ex.flag(end, name, node)

    def held(name: str) -> EventRef:
        value = ex.cell(end, name, node)
        assert isinstance(value, EventRef)
        return value

    new = ex.new_record
    new_ours = world.ours(new) if new is not None else FALSE
    new_reach = conj(flag("new.made"), disj(flag("new.in_table"),
                                            conj(flag("new.timer_made"), flag("new.armed"))))
    slot_reach = conj(flag("slot.live"), disj(flag("slot.in_table"), flag("slot.armed")))
    adopt = conj(new_reach, new_ours, neg(slot_reach))
    escape = conj(new_reach, new_ours, slot_reach)
    dangling = disj(flag("slot.dangling"), conj(flag("new.dangling"), new_ours))
    in_table = disj(flag("slot.in_table"), conj(flag("new.in_table"), new_ours))
    stored = ChosenRecord(world.fresh("stored"), [(adopt, new)], slot.stored) \
        if new is not None else slot.stored
    after = Slot(
        live=disj(adopt, slot_reach),
        in_table=ite([(adopt, flag("new.in_table"))], conj(slot_reach, flag("slot.in_table"))),
        armed=ite([(adopt, conj(flag("new.timer_made"), flag("new.armed")))],
                  conj(slot_reach, flag("slot.armed"))),
        deadline=ite([(adopt, ex.time(end, "new.deadline", node))],
                     ex.time(end, "slot.deadline", node)),
        held=_event(EventRef.merged([(adopt, held("new.held")), (slot_reach, held("slot.held")),
                                     (TRUE, EventRef.none())])),
        stored=stored)
    returns = conj(*ex.returns, *ex.in_range)
    return StepResult(after, now, ex.emissions, dangling, escape, returns, in_table,
                      neg(defined))


def _event(value: Value) -> EventRef:
    assert isinstance(value, EventRef)
    return value


def queue_step(world: World, slot: Slot, now: Term, record: SymbolicRecord,
               seq: Term) -> StepResult:
    """qapi_event_emit(@record) at @now, as the @seq-th queued event."""
    queued = world.seen(record, now, seq)
    ex = StepExecutor(world, "queue", slot, now, (record, queued))
    name = world.extraction.roles["queue"]
    ex.frames_name = name
    translation = ex.run(name, [CInt(record.event, False), EventQDict(record)])
    return _finish(world, ex, translation.defined(), now)


def timer_step(world: World, slot: Slot, now: Term) -> StepResult:
    """The key's timer fires: the clock reaches its deadline (if it is not past already)
    and the handler runs on the record, its timer no longer pending while it runs."""
    fire = z3.If(slot.deadline > now, slot.deadline, now)
    running = Slot(slot.live, slot.in_table, FALSE, slot.deadline, slot.held, slot.stored)
    ex = StepExecutor(world, "handler", running, fire)
    name = world.extraction.roles["handler"]
    ex.frames_name = name
    translation = ex.run(name, [RecordRef(TRUE, FALSE, FALSE)])
    return _finish(world, ex, translation.defined(), fire)
