"""The invariants of docs/invariants.md, each written once.

Callback properties (1, 2, 3 and the decision form of 4) are formulas over
the logic layer: plain values give a bool, z3 terms give a z3 formula. The run
properties (3, 4, 5, 6) are obligations on each step of one key's history
(``key_step``), over the same logic layer: the trace checkers project a trace,
the same whether it comes from the C driver (``trace_from_steps``) or from the
model (``ThrottleModel.run``), onto each key and return human-readable
violations, each naming its step (an empty list means the invariant holds);
proofs/induction.py evaluates them on z3 terms over every timeline. Invariants
3, 7 and 8 also read the driver's findings and crashes.
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, Optional, Protocol, TypeVar

from qthrottle.model.ghash import EqualFn, HashFn, matches
from qthrottle.model.logic import And, Bool, Eq, Implies, Ite, Not, Or
from qthrottle.model.members import member_kind
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.timeline import Emission, EventData, Operation, Queue, format_event, format_ns

INVARIANTS: dict[int, str] = {
    1: "equality is reflexive, symmetric and transitive",
    2: "equal keys hash equally",
    3: "every inserted key is removable",
    4: "BLOCK_IO_ERROR action=stop is never delayed, merged or dropped",
    5: "throttled events keep the rate, newest wins",
    6: "unthrottled events are emitted at once, in order",
    7: "hash and equality read present members as their type, no abort",
    8: "no memory error or reference leak",
}

K = TypeVar("K")


# ------------------------------------------------------------------ traces

@dataclass(frozen=True)
class TraceStep:
    """One operation: the clock before and after it, what it emitted, the table size after."""

    operation: Operation
    before: int
    after: int
    emitted: tuple[Emission, ...] = ()
    table: Optional[int] = None

    def describe(self) -> str:
        return f"t={format_ns(self.before)}: {self.operation.describe()}"


Trace = Sequence[TraceStep]


class _DriverStep(Protocol):
    """What the trace needs of a harness StepResult."""

    @property
    def operation(self) -> Optional[Operation]: ...

    @property
    def emitted(self) -> tuple[Emission, ...]: ...

    @property
    def now(self) -> int: ...

    @property
    def table(self) -> int: ...

    @property
    def crash(self) -> Optional[object]: ...


def trace_from_steps(steps: Iterable[_DriverStep]) -> list[TraceStep]:
    """The trace of a driver run (its StepResults), up to its first crash."""
    trace: list[TraceStep] = []
    now = 0
    for step in steps:
        if step.crash is not None or step.operation is None:
            break
        trace.append(TraceStep(step.operation, now, step.now, tuple(step.emitted), step.table))
        now = step.now
    return trace


def _where(index: int, step: TraceStep) -> str:
    """Short: the timeline printed beside a violation shows the event data."""
    op = step.operation
    what = f"queue {op.event}" if isinstance(op, Queue) else op.describe()
    return f"step {index + 1} (t={format_ns(step.before)}, {what})"


# ------------------------------------------------------- 1, 2: callbacks

def reflexive(eq: EqualFn[K], a: K) -> Bool:
    """Invariant 1: every key equals itself; eq(x, y) is GLib's equal(stored=x, lookup=y)."""
    return eq(a, a)


def symmetric(eq: EqualFn[K], a: K, b: K) -> Bool:
    """Invariant 1: the stored key and the lookup key may swap places."""
    return Implies(eq(a, b), eq(b, a))


def transitive(eq: EqualFn[K], a: K, b: K, c: K) -> Bool:
    """Invariant 1."""
    return Implies(And(eq(a, b), eq(b, c)), eq(a, c))


def equality_laws(eq: EqualFn[K], a: K, b: K, c: K) -> Bool:
    """Invariant 1, all three laws on the keys a, b, c."""
    return And(reflexive(eq, a), symmetric(eq, a, b), transitive(eq, a, b, c))


def hash_consistent(h: HashFn[K], eq: EqualFn[K], a: K, b: K) -> Bool:
    """Invariant 2: equal keys hash equally."""
    return Implies(eq(a, b), Eq(h(a), h(b)))


# ------------------------------------------------------- 3: removability

def removal_exact(h: HashFn[K], eq: EqualFn[K], target: K, others: Sequence[K]) -> Bool:
    """Invariant 3: g_hash_table_remove(target) removes target and nothing else.

    The target must match itself, and no other stored key may match it (in
    whatever order GLib probes them).
    """
    return And(matches(h, eq, target, target),
               *(Not(matches(h, eq, other, target)) for other in others))


def inserted_under_glib_discipline(h: HashFn[K], eq: EqualFn[K], records: Sequence[K]) -> Bool:
    """Assumption of invariant 3: each record was added after its lookup failed.

    That is the queue function's discipline; records are in insertion order.
    """
    return And(*(Not(Or(*(matches(h, eq, earlier, record) for earlier in records[:index])))
                 for index, record in enumerate(records)))


class _HasFindings(Protocol):
    @property
    def findings(self) -> Sequence[Any]: ...


def no_dangling_entry(result: _HasFindings) -> list[str]:
    """Invariant 3, concretely: the harness saw no freed record left in the table."""
    return [f"dangling entry: {f.detail}" for f in result.findings if f.kind == "dangling-entry"]


# --------------------------------- 3, 4, 5, 6: one key's history, step by step
# The run invariants as obligations on each step of one key's history, with what
# they remember of its past. The values are plain (a trace projected onto one key)
# or z3 terms (proofs/induction.py: the key's transition relation, built from the
# C): both judge a step by the same obligations. Which queued event an emission is
# (its identity) is the caller's to say: a trace knows it by data, the proofs by
# the pointer the C stores.

@dataclass(frozen=True)
class Seen:
    """An event of the key, as the obligations know it."""

    queued_at: Any  # the clock when it was queued
    stop: Bool  # is_stop_event
    throttled: Bool  # the policy throttles its event


@dataclass(frozen=True)
class KeyEmission:
    """One emission of an event of the key, in order within its step."""

    happens: Bool
    t: Any
    event: Seen
    known: Bool  # the event was queued in this step or an earlier one
    at_once: Bool  # ... in this very step
    newest: Bool  # no newer non-stop event of the key was queued since, in an earlier step


@dataclass(frozen=True)
class KeyStep:
    """What one step (a queue or a clock advance) did, seen from one key."""

    before: Any  # the clock before and after the step
    after: Any
    queue: Bool  # the step queues an event, of any key
    queued: Bool  # ... of this key
    event: Seen  # the event it queues, when it does
    emissions: tuple[KeyEmission, ...]
    in_table: Bool  # after the step, a record of the key is in the table
    dangling: Bool  # the step freed a record of the key that the table still holds


@dataclass(frozen=True)
class KeyMemory:
    """What the obligations remember of one key's past."""

    last_queue: Any  # when an event of any key was last queued (3: the quiet period)
    emitted: Bool  # a non-stop event of the key was emitted, last at
    last_emitted: Any
    recent: Bool  # an event of the key, a stop event too, was emitted, last at
    last_recent: Any
    waiting: Bool  # a non-stop event of the key is held back, neither emitted nor
    waiting_since: Any  # replaced by a newer event of the key since; queued at

    @staticmethod
    def start() -> KeyMemory:
        """Nothing happened yet; the clock starts at 0, as a quiet period would."""
        return KeyMemory(0, False, 0, False, 0, False, 0)


@dataclass(frozen=True)
class KeyObligation:
    invariant: int
    what: str
    holds: Bool


def _rate_text(rate: Any) -> str:
    return format_ns(rate) if isinstance(rate, int) else "rate"


def key_step(memory: KeyMemory, step: KeyStep, rate: Any, quiet_after: Any
             ) -> tuple[list[KeyObligation], KeyMemory]:
    """The obligations of invariants 3, 4, 5 and 6 on one step of one key, in the order a
    report lists them, and the memory after the step.

    3: the step frees no record the table still holds; after two intervals
       (@quiet_after) with nothing queued, no record of the key is in the table.
    4: a stop event is emitted in the step that queues it, once, and never later.
    6: so is an unthrottled event (in order, then, as steps are).
    5, for the key's non-stop throttled events (stop events only count as activity
       of the key): (a) emitted at least @rate after the previous one; (b) one queued
       while nothing of the key was emitted in the last @rate is emitted at once;
       (c) a delayed one at most @rate after it was queued, (d) only if no newer one
       was queued since; (e) one neither emitted nor replaced by a newer event is
       overdue once @rate has passed.
    """
    event, text = step.event, _rate_text(rate)
    at_once = sum(Ite(And(e.happens, e.at_once), 1, 0) for e in step.emissions)
    quiet = Not(And(memory.recent, memory.last_recent > step.before - rate))
    obligations = [
        KeyObligation(3, "a record of the key freed while the table still holds it "
                         "(a dangling entry)", Not(step.dangling)),
        KeyObligation(4, "a stop event not emitted exactly once in the step that queues it",
                      Implies(And(step.queued, event.stop), Eq(at_once, 1))),
        KeyObligation(6, "an unthrottled event not emitted exactly once in the step that "
                         "queues it", Implies(And(step.queued, Not(event.throttled)),
                                              Eq(at_once, 1))),
        KeyObligation(5, "the key was quiet, yet the event was not emitted at once",
                      Implies(And(step.queued, Not(event.stop), event.throttled, quiet),
                              at_once >= 1)),
    ]
    held_back = And(step.queued, Not(event.stop), event.throttled, Eq(at_once, 0))
    waiting = Ite(step.queued, held_back, memory.waiting)
    since = Ite(step.queued, step.before, memory.waiting_since)
    emitted, last_emitted = memory.emitted, memory.last_emitted
    recent, last_recent = memory.recent, memory.last_recent
    for e in step.emissions:
        later = And(e.happens, Not(e.at_once))
        subject = And(e.happens, Not(e.event.stop), e.event.throttled)
        delayed = And(subject, e.known, Not(e.at_once))
        obligations += [
            KeyObligation(4, "a stop event emitted after the step that queued it "
                             "(delayed, or emitted twice)", Not(And(later, e.event.stop))),
            KeyObligation(6, "an unthrottled event emitted after the step that queued it",
                          Not(And(later, Not(e.event.throttled)))),
            KeyObligation(5, f"emitted less than {text} after the previous event of its key",
                          Implies(And(subject, emitted), last_emitted + rate <= e.t)),
            KeyObligation(5, f"held back more than {text} after it was queued",
                          Implies(delayed, e.t <= e.event.queued_at + rate)),
            KeyObligation(5, "emitted although a newer event of its key had replaced it",
                          Implies(delayed, e.newest)),
        ]
        emitted, last_emitted = Or(emitted, subject), Ite(subject, e.t, last_emitted)
        recent, last_recent = Or(recent, e.happens), Ite(e.happens, e.t, last_recent)
        waiting = And(waiting, Not(And(delayed, e.newest)))
    last_queue = Ite(step.queue, step.before, memory.last_queue)
    obligations += [
        KeyObligation(5, f"never emitted, and no newer event of its key replaced it within "
                         f"{text}", Implies(waiting, step.after < since + rate)),
        KeyObligation(3, "still in the table two intervals after the last event was queued",
                      Implies(And(Not(step.queue), step.in_table),
                              step.after - last_queue < quiet_after)),
    ]
    return obligations, KeyMemory(last_queue, emitted, last_emitted, recent, last_recent,
                                  waiting, since)


_KeyStepFunction = Callable[[KeyMemory, KeyStep, Any, Any],
                            "tuple[list[KeyObligation], KeyMemory]"]


@lru_cache(maxsize=4096)
def _remembered(step_function: _KeyStepFunction, memory: KeyMemory, view: KeyStep, rate: Any,
                quiet_after: Any) -> tuple[list[KeyObligation], KeyMemory]:
    """key_step (@step_function: key_step as the module has it now) on a trace's plain
    values, remembered. The engines judge a run after each of its steps, so every step
    of every key comes back once per later step; key_step is a pure function of
    hashable values, and a trace's are plain (never z3 terms)."""
    return step_function(memory, view, rate, quiet_after)


# ------------------------------- 3, 4, 5, 6 on a trace: each key's steps judged

class QueuedEvent(Protocol):
    """What claim() needs of a queued event: its step and the event."""

    @property
    def index(self) -> int: ...

    @property
    def event(self) -> str: ...

    @property
    def data(self) -> EventData: ...


@dataclass(frozen=True)
class _Queued:
    """A queued event of a trace: its step, the clock then, and the event."""

    index: int
    t: int
    event: str
    data: EventData


def claim(events: Sequence[QueuedEvent], emissions: Sequence[tuple[int, Emission]]
          ) -> dict[int, tuple[int, Emission]]:
    """Queued event (position) -> its emission: each emission is the most recent
    unclaimed queued event with the same data, queued no later than it (step index):
    a trace knows an event by its data. The run invariants judge by it; the HTML timeline
    joins an emission to its event."""
    claimed: dict[int, tuple[int, Emission]] = {}
    for index, emission in emissions:
        for position in reversed(range(len(events))):
            event = events[position]
            if (position not in claimed and event.index <= index
                    and (event.event, event.data) == (emission.event, emission.data)):
                claimed[position] = (index, emission)
                break
    return claimed


def _key_steps(trace: Trace, policy: Policy, key: Any) -> list[KeyStep]:
    """@trace seen from one key (policy.key): the events of the key it queues, and its
    emissions, each known as the queued event that claim() says it is."""
    events = [_Queued(index, step.before, step.operation.event, step.operation.data)
              for index, step in enumerate(trace) if isinstance(step.operation, Queue)
              and policy.key(step.operation.event, step.operation.data) == key]
    emissions = [(index, e) for index, step in enumerate(trace) for e in step.emitted
                 if policy.key(e.event, e.data) == key]
    unmatched = sorted(claim(events, emissions).items())
    steps = []
    for index, step in enumerate(trace):
        op = step.operation
        mine = isinstance(op, Queue) and policy.key(op.event, op.data) == key
        seen = []
        for at, emission in emissions:
            if at != index:
                continue
            # Its event: equal emissions of one step are alike, whichever claimed which.
            position = next((p for p, pair in unmatched if pair == (at, emission)), None)
            unmatched = [(p, pair) for p, pair in unmatched if p != position]
            queued = events[position] if position is not None else None
            newest = position is None or not any(
                e.index < index and not is_stop_event(e.event, e.data)
                for e in events[position + 1:])
            seen.append(KeyEmission(
                True, emission.t, _seen(queued.t if queued else emission.t,
                                        Queue(emission.event, emission.data), policy),
                queued is not None, queued is not None and queued.index == index, newest))
        steps.append(KeyStep(step.before, step.after, isinstance(op, Queue), mine,
                             _seen(step.before, op if isinstance(op, Queue) else None, policy),
                             tuple(seen), bool(step.table), False))
    return steps


def _seen(at: int, op: Optional[Queue], policy: Policy) -> Seen:
    if op is None:
        return Seen(at, False, False)
    return Seen(at, bool(is_stop_event(op.event, op.data)), policy.throttled(op.event))


def _broken(trace: Trace, policy: Policy, invariant: int, keys: Iterable[Any]
            ) -> list[tuple[int, KeyObligation]]:
    """(step, obligation) of each obligation of @invariant some step of @keys breaks,
    key by key, step by step."""
    quiet_after = quiet_period(policy)
    found = []
    for key in keys:
        memory = KeyMemory.start()
        for index, view in enumerate(_key_steps(trace, policy, key)):
            obligations, memory = _remembered(key_step, memory, view, policy.rate(key[0]),
                                              quiet_after)
            found += [(index, o) for o in obligations if o.invariant == invariant and not o.holds]
    return found


def _queued_keys(trace: Trace, policy: Policy, which: Any) -> list[Any]:
    """The keys of the queued events @which selects, in order of their first event."""
    keys: dict[Any, None] = {}
    for step in trace:
        op = step.operation
        if isinstance(op, Queue) and which(op):
            keys.setdefault(policy.key(op.event, op.data))
    return list(keys)


def table_empties_when_quiet(trace: Trace, policy: Policy) -> list[str]:
    """Invariant 3: after two intervals with nothing queued, the table is empty (key_step's
    obligation, on the whole table: a trace knows its size, not its keys)."""
    quiet_after = quiet_period(policy)
    memory, violations = KeyMemory.start(), []
    for index, step in enumerate(trace):
        op = step.operation
        view = KeyStep(step.before, step.after, isinstance(op, Queue), False,
                       Seen(step.before, False, False), (), bool(step.table), False)
        obligations, memory = _remembered(key_step, memory, view, 0, quiet_after)
        violations += [f"{_where(index, step)}: {step.table} record(s) {o.what}"
                       for o in obligations if o.invariant == 3 and not o.holds]
    return violations


def quiet_period(policy: Policy) -> int:
    """Invariant 3: how long with nothing queued empties the table: two intervals."""
    return 2 * max(policy.rates.values(), default=0)


# ---------------------------------------------------------- 4: stop events

STOP_EVENT = "BLOCK_IO_ERROR"


def is_stop_event(event: Any, data: Optional[Mapping[str, Any]]) -> Bool:
    """Invariant 4's subject: a BLOCK_IO_ERROR whose action is "stop"."""
    action = data.get("action") if data is not None else None
    return And(Eq(event, STOP_EVENT), Eq(action, "stop"))


def stop_exempt(is_stop: Bool, throttled: Bool, matches_a_stored_record: Bool) -> Bool:
    """Invariant 4, the queue function's decision: a stop event is never held back."""
    return Implies(is_stop, Or(Not(throttled), Not(matches_a_stored_record)))


def _count(trace: Trace, event: str, data: EventData) -> tuple[int, int]:
    """(times queued, times emitted) of one exact event."""
    queued = sum(1 for s in trace if s.operation == Queue(event, data))
    emitted = sum(1 for s in trace for e in s.emitted if (e.event, e.data) == (event, data))
    return queued, emitted


NO_POLICY = Policy(rates={}, keys={})  # stop events: invariant 4 is the same under any policy


def stop_not_delayed(trace: Trace) -> list[str]:
    """Invariant 4 (key_step's obligations): each stop event is emitted when queued, with
    its data, exactly once, and never later."""
    violations = []
    keys = _queued_keys(trace, NO_POLICY, lambda op: is_stop_event(op.event, op.data))
    for index, _ in _broken(trace, NO_POLICY, 4, keys):
        step = trace[index]
        op = step.operation
        if isinstance(op, Queue) and is_stop_event(op.event, op.data) and \
                Emission(step.before, op.event, op.data) not in step.emitted:
            later = next((e for s in trace[index + 1:] for e in s.emitted
                          if (e.event, e.data) == (op.event, op.data)), None)
            fate = (f"delayed to t={format_ns(later.t)}" if later is not None
                    else "not emitted by the end of the timeline (held back, merged or dropped)")
            violations.append(f"{_where(index, step)}: stop event not emitted at once: {fate}")
            continue
        for e in step.emitted:  # emitted later: a delay (said above) or once too often
            queued, emitted = _count(trace, e.event, e.data)
            if is_stop_event(e.event, e.data) and emitted > queued:
                violations.append(f"{_where(index, step)}: {format_event(e.event, e.data)} "
                                  f"queued {queued} time(s) but emitted {emitted} times")
                break
    return violations


def rate_respected(trace: Trace, policy: Policy) -> list[str]:
    """Invariant 5 (key_step's obligations), per key, for throttled events other than stop
    events: emissions at least rate apart; an event queued while its key is quiet
    (nothing of it emitted in the last rate ns) emitted at once; a delayed event emitted
    at most rate after it was queued, and only if no newer event of its key was queued
    since; one neither emitted nor replaced by a newer event overdue once rate has
    passed. Stop events are invariant 4's subject; here they only count as activity of
    their key (they may open a window, or replace a held-back event), so that this
    invariant holds whether or not an implementation throttles them."""
    keys = _queued_keys(trace, policy, lambda op: policy.throttled(op.event))
    return [f"{_where(index, trace[index])}: {o.what}"
            for index, o in _broken(trace, policy, 5, keys)]


def unthrottled_immediate(trace: Trace, policy: Policy) -> list[str]:
    """Invariant 6 (key_step's obligations): each unthrottled event is emitted when queued,
    once, and never later; so in queue order."""
    keys = _queued_keys(trace, policy, lambda op: not policy.throttled(op.event))
    for step in trace:  # an unthrottled event emitted that was never queued
        for e in step.emitted:
            if not policy.throttled(e.event) and policy.key(e.event, e.data) not in keys:
                keys.append(policy.key(e.event, e.data))
    return [f"{_where(index, trace[index])}: {o.what}"
            for index, o in _broken(trace, policy, 6, keys)]


# ------------------------------------------- the C against the reference model

def mismatch_invariant(c: TraceStep, model: TraceStep, policy: Policy) -> Optional[int]:
    """The invariant broken where one step of the C and of the reference model differ
    (None if they agree), for the differences the checks of the C's trace alone let
    through.

    The emissions one side made and the other did not (or made at another time or in
    another order) decide: a stop event's is invariant 4's, an unthrottled event's
    6's, a throttled event's 5's, in that order. With the same emissions, a clock that
    reached another deadline or a table of another size says that the C opens, times
    or closes its windows otherwise than the reference: invariant 5, whose windows
    they are (a window left open for good is also invariant 3's, which the C's own
    trace shows: table_empties_when_quiet).
    """
    c_list, model_list = list(c.emitted), list(model.emitted)
    if c_list == model_list:
        return None if (c.after, c.table) == (model.after, model.table) else 5
    differing = [e for e in c_list if c_list.count(e) != model_list.count(e)]
    differing += [e for e in model_list if c_list.count(e) != model_list.count(e)]
    if not differing:  # the same emissions in another order
        differing = [a for a, b in zip(c_list, model_list) if a != b]
    if any(is_stop_event(e.event, e.data) for e in differing):
        return 4
    if any(not policy.throttled(e.event) for e in differing):
        return 6
    return 5


# ------------------------------------ 3, 4, 5, 6: the reference's transitions
# The state and the transitions of the reference (model/throttle.py), stated as
# the invariants they keep; the reference's contracts call these, and CrossHair
# checks them (qthrottle selfcheck).

class _Window(Protocol):
    """What these properties need of an open window (model/throttle.py's Window)."""

    @property
    def deadline(self) -> int: ...

    @property
    def pending(self) -> Optional[Queue]: ...


def held_back(windows: Mapping[Any, _Window]) -> dict[Any, tuple[int, Optional[Queue]]]:
    """A snapshot of the open windows: key -> (deadline, held-back event)."""
    return {key: (window.deadline, window.pending) for key, window in windows.items()}


def windows_sound(now: int, windows: Mapping[Any, _Window], policy: Policy,
                  due: bool = False) -> list[str]:
    """Invariants 3, 4 and 5 on the throttle's state: what a live record may be.

    Each open window is a throttled key's (policy.key: the event name first) and
    ends within one interval, now < deadline <= now + rate: a due timer has
    fired, so a window outlives the last event of its key by at most two
    intervals (3) and holds an event back by at most one (5). With ``due``
    (inside a clock advance) a timer may be due now: now <= deadline. A window
    holds back at most one event, of its own key (5: the newest wins), never a
    stop event (4). Messages name no time: formatting a symbolic time makes
    CrossHair fork.
    """
    violations = []
    for key, window in windows.items():
        rate = policy.rate(key[0])
        if rate <= 0:
            violations.append(f"window {key!r}: {key[0]} is not throttled")
        elif not (now <= window.deadline if due else now < window.deadline) \
                or window.deadline > now + rate:
            violations.append(f"window {key!r}: its deadline is not within one interval "
                              "after the clock")
        held = window.pending
        if held is not None and policy.key(held.event, held.data) != key:
            violations.append(f"window {key!r} holds back an event of another key: "
                              f"{format_event(held.event, held.data)}")
        if held is not None and is_stop_event(held.event, held.data):
            violations.append(f"window {key!r} holds back a stop event")
    return violations


def queue_sound(op: Queue, now: int, emitted: Sequence[Emission], policy: Policy,
                was_open: bool, held_after: Optional[Queue]) -> list[str]:
    """Invariants 4, 5 and 6 as the queue function's outcome at time now.

    A stop or unthrottled event is emitted at once (stop_not_delayed and
    unthrottled_immediate on the one-step trace: 4, 6). A throttled event whose
    key is quiet (no open window) is emitted at once; with its key's window
    open nothing is emitted and it is held back, replacing any event held back
    before (5: the newest wins).
    """
    step = [TraceStep(op, now, now, tuple(emitted))]
    violations = stop_not_delayed(step) + unthrottled_immediate(step, policy)
    if violations or not policy.throttled(op.event) or is_stop_event(op.event, op.data):
        return violations
    if not was_open and list(emitted) != [Emission(now, op.event, op.data)]:
        return [f"{format_event(op.event, op.data)}: its key was quiet, yet it was not "
                "emitted at once"]
    if was_open and (emitted or held_after != op):
        return [f"{format_event(op.event, op.data)}: its key's window was open, yet it was "
                + ("emitted" if emitted else "not held back as the newest event")]
    return []


def expiry_sound(held: Optional[Queue], now: int, rate: int, emitted: Sequence[Emission],
                 after: Optional[_Window]) -> list[str]:
    """Invariants 3 and 5 at a timer expiry (the C's timer callback), at its deadline now.

    A held-back event is emitted now, at most one interval after it was queued,
    and its window re-armed for a full interval with nothing held back (5: the
    next event of the key waits at least rate). With nothing held back the
    window closes: the record leaves the table (3).
    """
    if held is None:
        if emitted or after is not None:
            return ["an idle window's expiry " + ("emitted an event" if emitted
                                                  else "left the window open")]
        return []
    if list(emitted) != [Emission(now, held.event, held.data)]:
        return [f"the held-back {format_event(held.event, held.data)} was not emitted at its "
                "window's deadline"]
    if after is None or after.pending is not None or after.deadline != now + rate:
        return [f"after emitting the held-back {format_event(held.event, held.data)}, its "
                "window was not re-armed for one interval with nothing held back"]
    return []


def advance_sound(held: Mapping[Any, tuple[int, Optional[Queue]]], end: int,
                  emitted: Sequence[Emission]) -> list[str]:
    """Invariants 4, 5 and 6 as the outcome of advancing the clock to end.

    Exactly the events held back in windows due by end are emitted, each at its
    window's deadline (at most one interval after it was queued: 5), in time
    order. Timers emit nothing else: no unthrottled or stop event is ever late
    (4, 6), no event twice.
    """
    due = [Emission(deadline, op.event, op.data) for deadline, op in held.values()
           if op is not None and deadline <= end]
    violations = [f"the held-back {format_event(e.event, e.data)} was not emitted at its "
                  "window's deadline" for e in due if emitted.count(e) < due.count(e)]
    violations += [f"a timer emitted {format_event(e.event, e.data)}, which no due window "
                   "held back" for e in emitted if due.count(e) < emitted.count(e)]
    if any(later.t < earlier.t for earlier, later in zip(emitted, emitted[1:])):
        violations.append("timers emitted out of time order")
    return violations


# ------------------------------------------------------------ 7: totality

class Failure(NamedTuple):
    """One way the hash, equality or queue function can abort QEMU on one event, as an
    engine found it. Kinds: "missing", the code reads the member where its presence is
    not established on that path (whatever the schema says); "mistyped", it reads the
    member as @getter where the schema gives it another type; "abort", it reaches an
    abort (assert, g_assert, abort, a NULL string to strcmp, a division by zero)."""

    event: str
    kind: str
    member: Optional[str]
    getter: Optional[str]  # "str", "int" or "bool": the type the member is read as
    call: str  # the C text


class TotalityViolation(NamedTuple):
    failure: Failure
    why: str

    @property
    def event(self) -> str:
        return self.failure.event

    def __str__(self) -> str:
        return f"{self.failure.event}: {self.why}"


def total(failures: Iterable[Failure], catalog: Catalog) -> list[TotalityViolation]:
    """Invariant 7: for every valid event of the schema, hash and equality read only
    members present on that path (mandatory, or optional and tested for presence
    first), as the type the schema gives them, and reach no abort.

    A "missing" read of a mandatory member is no violation: every valid event
    carries it. Violations come in the order of @failures.
    """
    violations = []
    for failure in failures:
        event = catalog.events.get(failure.event)
        member = failure.member or ""
        spec = event.member(member) if event is not None else None
        if failure.kind == "abort":
            why = f"reaches `{failure.call}`, which aborts"
        elif event is None:
            why = f"reads '{member}', but the schema defines no such event"
        elif spec is None:
            why = f"reads '{member}', which is not a member of {event.name} (see {event.source})"
        elif failure.kind == "missing" and spec.optional:
            why = (f"reads '{member}', which is optional ('*{member}' at {event.source}), "
                   "without testing its presence on that path: an event without it makes "
                   "the callback abort")
        elif failure.kind == "mistyped" and member_kind(spec) != failure.getter:
            why = (f"reads '{member}' as {failure.getter} ({failure.call}), but the schema "
                   f"types it {spec.type} ({event.source}): the read aborts")
        else:
            continue
        violations.append(TotalityViolation(failure, why))
    return violations


# ------------------------------------------------------- 8: memory safety

# Invariant 7: the shims' aborts on a missing or mistyped member, and the code's own
# aborts (assert, g_assert, abort: SIGABRT with no sanitizer report).
TOTALITY_CRASHES = frozenset({"missing-member", "wrong-member-type", "assertion-failure",
                              "abort"})
# The harness's own failures (harness/protocol.py, harness/driver.py): UNKNOWN, never a
# verdict. leak-check-failed: LeakSanitizer could not scan (ptrace refused, ...).
HARNESS_FAILURES = frozenset({"timeout", "driver-died", "protocol-error", "leak-check-failed"})
# What the driver finds alive once the throttle is quiet (empty table, no timer pending).
LEAKS = {"reference-leak": "reference leak", "timer-leak": "timer leak",
         "record-leak": "record leak", "memory-leak": "memory leak"}


def crash_invariant(kind: str) -> Optional[int]:
    """The invariant a C crash of this kind falsifies; None for a harness failure."""
    if kind in HARNESS_FAILURES:
        return None
    return 7 if kind in TOTALITY_CRASHES else 8


class _RunOrStep(_HasFindings, Protocol):
    @property
    def crash(self) -> Optional[Any]: ...


def no_memory_error(result: _RunOrStep) -> list[str]:
    """Invariant 8: no sanitizer report or shim-detected misuse; once the throttle is
    quiet, no QObject still referenced, no timer or record not freed, no memory that
    nothing points to (LeakSanitizer)."""
    violations = [f"{LEAKS[f.kind]}: {f.detail}" for f in result.findings if f.kind in LEAKS]
    crash = result.crash
    if crash is not None and crash_invariant(crash.kind) == 8:
        headline = next((line.strip() for line in crash.report.splitlines()
                         if "ERROR:" in line or "qthrottle-shim:" in line
                         or "runtime error:" in line), "")
        violations.append(f"{crash.summary()}: {headline}" if headline else crash.summary())
    return violations

