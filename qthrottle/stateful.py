"""The stateful engine: hypothesis drives the compiled C and the model side by side.

Every step goes to both; after each step the engine compares emissions and
table size and checks the invariants of model/invariants.py on the C's trace.
A failure shrinks to a short timeline. To report every broken invariant, not
just the first, the search is repeated with the invariants already found set
aside (a violation of one of those restarts the run instead of failing it).

The engine takes the target's policy as an argument (derived from the code by
proofs/policy.py); where the derivation left an event's key UNKNOWN, the
invariants that judge runs by the policy's keys (5, 6) are UNKNOWN too, never
judged against a guessed key.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    FrozenSet,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Type,
)

from hypothesis import HealthCheck, Phase, Verbosity, errors, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule, run_state_machine_as_test

from qthrottle.generate import event_data, events_under_test
from qthrottle.harness.build import build
from qthrottle.harness.driver import Crash, Driver, StepResult
from qthrottle.harness.target import Target
from qthrottle.model import invariants as inv
from qthrottle.model.ghash import CallbackCrashed, driver_callbacks
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog, Event
from qthrottle.model.throttle import ThrottleModel
from qthrottle.model.timeline import (
    Advance,
    AdvanceToNext,
    Emission,
    Operation,
    Queue,
    format_event,
    format_ns,
)


@dataclass(frozen=True)
class Profile:
    """Bounds of the stateful engine (printed with every result)."""

    name: str
    runs: int  # state-machine runs (hypothesis examples) per search
    steps: int  # operations per run, at most

    def describe(self) -> str:
        return f"profile {self.name}: up to {self.runs} runs x {self.steps} steps per search"


# smoke: for many targets at once (qthrottle mutate in the test suite), a quarter of quick.
PROFILES = {"smoke": Profile("smoke", runs=100, steps=12),
            "quick": Profile("quick", runs=400, steps=12),
            "ci": Profile("ci", runs=2000, steps=16)}


class Violation(AssertionError):
    """An invariant broken at the current step."""

    def __init__(self, invariant: int, message: str) -> None:
        super().__init__(f"invariant {invariant}: {message}")
        self.invariant = invariant
        self.message = message


class HarnessFailure(BaseException):
    """The harness could not decide (timeout, driver died): UNKNOWN, never a verdict.

    A BaseException, so that hypothesis stops at once instead of shrinking it: each
    replay would wait for the same timeout again.
    """


@dataclass
class StepRecord:
    """One line of a counterexample timeline."""

    operation: Operation
    before: int
    c_emitted: Tuple[Emission, ...]
    model_emitted: Tuple[Emission, ...]
    c_table: Optional[int]
    model_table: int
    note: str = ""
    after: Optional[int] = None  # the C's clock after the step
    model_compared: bool = True  # False once the model stopped predicting the C


@dataclass
class Counterexample:
    invariant: int
    message: str
    steps: List[StepRecord]
    crash: Optional[Crash] = None

    @property
    def operations(self) -> List[Operation]:
        return [s.operation for s in self.steps]


@dataclass
class SearchResult:
    """What the stateful engine concluded for one target."""

    profile: Profile
    seed: int
    falsified: Dict[int, Counterexample] = field(default_factory=dict)
    unknown: Optional[str] = None  # why the search could not finish
    undecided: Dict[int, str] = field(default_factory=dict)  # invariant -> why not judged
    searches: int = 0
    seconds: float = 0.0


# Invariants judged by the policy's keys: not judged where a key is UNKNOWN.
KEYED_INVARIANTS = frozenset({5, 6})


@dataclass
class Subject:
    """Everything the engine needs about one target."""

    driver: Driver
    policy: Policy
    catalog: Catalog
    events: List[Event]
    undecided: Dict[str, str] = field(default_factory=dict)  # event -> why its key is UNKNOWN

    @classmethod
    def create(cls, driver: Driver, policy: Policy, catalog: Catalog,
               undecided: Optional[Mapping[str, str]] = None) -> Subject:
        throttled = [e for e, rate in policy.rates.items() if rate]
        return cls(driver, policy, catalog, events_under_test(catalog, throttled),
                   dict(undecided or {}))


def _queue_strategy(events: List[Event]) -> st.SearchStrategy[Queue]:
    return st.one_of([st.builds(Queue, st.just(e.name), event_data(e)) for e in events])


def make_machine(subject: Subject, ignored: FrozenSet[int]) -> Type[RuleBasedStateMachine]:
    """A state machine class for one target; violations of @ignored restart the run."""
    rates = sorted({r for r in subject.policy.rates.values() if r}) or [1_000_000_000]
    steps = sorted({1, *(r // 2 for r in rates), *(r - 1 for r in rates), *rates,
                    *(r + 1 for r in rates), *(2 * r for r in rates)})
    # Every event of the schema can be queued; two draws in three are of the events the
    # throttle is about (throttled, and the stop event), where the bugs are.
    throttled = [e for e in subject.events if subject.policy.throttled(e.name)
                 or e.name == inv.STOP_EVENT] or subject.events
    # Built once and chosen by flatmap: one_of would flatten the branches into one uniform
    # draw; building them in the flatmap would cost a strategy per draw.
    throttled_ops, any_ops = _queue_strategy(throttled), _queue_strategy(subject.events)
    queue_ops = st.sampled_from([throttled_ops, throttled_ops, any_ops]).flatmap(
        lambda chosen: chosen)
    stop_events = [e for e in subject.events if e.name == inv.STOP_EVENT]
    hash_of, equal = driver_callbacks(subject.driver)
    pairs = st.sampled_from(throttled).flatmap(
        lambda e: st.tuples(st.just(e.name), event_data(e), event_data(e)))

    class ThrottleMachine(RuleBasedStateMachine):
        latest: Optional[ThrottleMachine] = None
        queued = Bundle("queued")

        def __init__(self) -> None:
            super().__init__()
            type(self).latest = self
            self.records: List[StepRecord] = []
            self._restart()

        def _restart(self) -> None:
            subject.driver.reset()
            self.model = ThrottleModel(subject.policy, subject.catalog)
            self.model_trusted = True
            self.c_now = 0  # the C's clock: the model's stops being right once untrusted
            self.c_trace: List[inv.TraceStep] = []

        def _fail(self, invariant: int, message: str, crash: Optional[Crash] = None) -> None:
            if invariant in ignored:
                # Already reported: keep exploring. After a crash the C run is over;
                # otherwise the C goes on but the model no longer predicts it.
                if crash is not None:
                    self._restart()
                else:
                    self.model_trusted = False
                return
            if self.records:
                self.records[-1].note = f"invariant {invariant}: {message}"
            self.crash = crash
            raise Violation(invariant, message)

        def _step(self, op: Operation) -> None:
            before = self.c_now
            result = subject.driver.apply(op)
            model_step = self.model.step(op)
            record = StepRecord(op, before, result.emitted, model_step.emitted,
                                None if result.crash else result.table, model_step.table or 0,
                                after=None if result.crash else result.now,
                                model_compared=self.model_trusted)
            self.records.append(record)
            self._check(result, model_step)

        def _check(self, result: StepResult, model_step: inv.TraceStep) -> None:
            if result.crash is not None:
                number = inv.crash_invariant(result.crash.kind)
                if number is None:
                    raise HarnessFailure(result.crash.summary())
                self._fail(number, inv.no_memory_error(result)[0] if number == 8
                           else result.crash.summary(), result.crash)
                return
            for finding in inv.no_dangling_entry(result):
                self._fail(3, finding)
            for finding in inv.no_memory_error(result):
                self._fail(8, finding)
            self.c_trace.append(inv.TraceStep(model_step.operation, self.c_now,
                                              result.now, result.emitted, result.table))
            self.c_now = result.now
            for number, check in ((4, inv.stop_not_delayed),
                                  (5, lambda t: inv.rate_respected(t, subject.policy)),
                                  (6, lambda t: inv.unthrottled_immediate(t, subject.policy)),
                                  (3, lambda t: inv.table_empties_when_quiet(
                                      t, subject.policy))):
                violations = check(self.c_trace)
                if violations:
                    self._fail(number, violations[0])  # returns only if set aside
            if self.model_trusted and (result.emitted, result.table) != (
                    model_step.emitted, model_step.table):
                op = model_step.operation
                if isinstance(op, Queue) and inv.is_stop_event(op.event, op.data):
                    # The C throttles stop events and the model never does: from here
                    # on only stop_not_delayed (invariant 4) judges the difference.
                    self.records[-1].note = ("the C throttles this stop event; the reference "
                                             "model never does, so it is not compared further")
                    self.model_trusted = False
                    return
                throttled = isinstance(op, Queue) and subject.policy.throttled(op.event)
                self._fail(5 if throttled or not isinstance(op, Queue) else 6,
                           "the C and the model disagree (see the timeline)")

        @rule(target=queued, op=queue_ops)
        def queue(self, op: Queue) -> Queue:
            self._step(op)
            return op

        # Invariant 4 is about BLOCK_IO_ERROR: a rule of its own makes it frequent.
        @rule(target=queued, op=_queue_strategy(stop_events) if stop_events else queue_ops)
        def queue_block_io_error(self, op: Queue) -> Queue:
            self._step(op)
            return op

        # The same event again, the same key: a burst, what a throttle is for (its rate).
        @rule(op=queued)
        def queue_again(self, op: Queue) -> None:
            self._step(op)

        @rule(ns=st.sampled_from(steps))
        def advance(self, ns: int) -> None:
            self._step(Advance(ns))

        @rule()
        def advance_to_next(self) -> None:
            self._step(AdvanceToNext())

        @rule(pair=pairs)
        def compare(self, pair: Tuple[str, Any, Any]) -> None:
            name, a_data, b_data = pair
            self.compare_keys(CompareKeys((name, a_data), (name, b_data)))

        def compare_keys(self, keys: CompareKeys) -> None:
            """Invariants 1 and 2 on two (or three) records, as GLib calls them.

            Each law is checked even when an earlier one broke an invariant set aside.
            """
            a, b, c = keys.a, keys.b, keys.c
            self.records.append(StepRecord(keys, self.c_now, (), (), None,
                                           self.model.table_size))
            try:
                if not inv.reflexive(equal, a):
                    self._fail(1, f"equal(a, a) is false for a = {format_event(*a)}")
                if not inv.symmetric(equal, a, b):
                    self._fail(1, f"equal(a, b) = {equal(a, b)} but equal(b, a) = "
                                  f"{equal(b, a)}")
                if c is not None and not inv.transitive(equal, a, b, c):
                    self._fail(1, f"equal(a, b) = {equal(a, b)} and equal(b, c) = "
                                  f"{equal(b, c)} but equal(a, c) = {equal(a, c)}")
                if not inv.hash_consistent(hash_of, equal, a, b):
                    self._fail(2, f"equal(a, b) but hash(a) = {hash_of(a)}, "
                                  f"hash(b) = {hash_of(b)}")
            except CallbackCrashed as crashed:
                crash = crashed.crash
                assert isinstance(crash, Crash)
                number = inv.crash_invariant(crash.kind)
                if number is None:
                    raise HarnessFailure(crash.summary()) from None
                self._fail(number, crash.summary(), crash)

    return ThrottleMachine


@dataclass(frozen=True)
class CompareKeys:
    """Not a timeline step: the callbacks called directly on two records (three for
    transitivity, which only a proof's counterexample asks for)."""

    a: Tuple[str, Any]
    b: Tuple[str, Any]
    c: Optional[Tuple[str, Any]] = None

    def describe(self) -> str:
        third = "" if self.c is None else f", c = {format_event(*self.c)}"
        return (f"compare keys a = {format_event(*self.a)}, b = {format_event(*self.b)}"
                f"{third} (equal and hash callbacks called directly)")


def replay(subject: Subject, ignored: FrozenSet[int], operations: List[Any]
           ) -> Tuple[Optional[Violation], RuleBasedStateMachine]:
    """Run one timeline through a fresh machine; the violation it raises, if any."""
    machine = make_machine(subject, ignored)()
    try:
        for op in operations:
            if isinstance(op, CompareKeys):
                machine.compare_keys(op)  # type: ignore[attr-defined]
            else:
                machine._step(op)  # type: ignore[attr-defined]
    except Violation as violation:
        return violation, machine
    return None, machine


def minimize(subject: Subject, ignored: FrozenSet[int], invariant: int,
             operations: List[Any]) -> List[Any]:
    """Drop operations one at a time while the same invariant still breaks.

    hypothesis shrinks well but stops early on slow tests; this greedy pass
    makes the timeline 1-minimal (no single operation can be removed).
    """
    changed = True
    while changed:
        changed = False
        for index in range(len(operations)):
            candidate = operations[:index] + operations[index + 1:]
            violation, _ = replay(subject, ignored, candidate)
            if violation is not None and violation.invariant == invariant:
                operations = candidate
                changed = True
                break
    return operations


# Typed here: hypothesis releases differ in whether this function is annotated.
run_machine: Callable[..., None] = run_state_machine_as_test


def _search_once(subject: Subject, config: settings, seed_value: int,
                 result: SearchResult, set_aside: FrozenSet[int]) -> Optional[int]:
    """One hypothesis search with @set_aside and the invariants found so far set aside.

    The number of the invariant it found falsified (and recorded), if any.
    """
    ignored = set_aside | frozenset(result.falsified)
    machine = make_machine(subject, ignored)
    result.searches += 1
    try:
        run_machine(seed(seed_value)(machine), settings=config)
    except Violation as violation:
        latest = getattr(machine, "latest", None)
        found = [r.operation for r in latest.records] if latest else []
        shortest = minimize(subject, ignored, violation.invariant, found)
        final, replayed = replay(subject, ignored, shortest)
        if final is None:  # the C did not fail again the same way
            result.unknown = f"invariant {violation.invariant}: the failure did not replay"
            return None
        result.falsified[final.invariant] = Counterexample(
            final.invariant, final.message, list(replayed.records),  # type: ignore[attr-defined]
            getattr(replayed, "crash", None))
        return final.invariant
    return None


def search(subject: Subject, profile: Profile, seed_value: int,
           progress: Callable[[str], None] = lambda _: None,
           set_aside: FrozenSet[int] = frozenset()) -> SearchResult:
    """Find a shrunk counterexample for every invariant the target breaks.

    Invariants in @set_aside are not searched for (found by another engine, or
    not asked for); the search stops when no other invariant is left.
    """
    result = SearchResult(profile, seed_value)
    start = time.perf_counter()
    if subject.undecided:
        why = "; ".join(f"{event}: {reason}" for event, reason in subject.undecided.items())
        result.undecided = {number: f"the key of the throttle policy is UNKNOWN ({why})"
                            for number in KEYED_INVARIANTS}
        set_aside = set_aside | KEYED_INVARIANTS
    config = settings(max_examples=profile.runs, stateful_step_count=profile.steps,
                      deadline=None, database=None, verbosity=Verbosity.quiet,
                      phases=[Phase.generate, Phase.shrink], print_blob=False,
                      report_multiple_bugs=False,
                      suppress_health_check=list(HealthCheck))
    try:
        while set(inv.INVARIANTS) - set_aside - set(result.falsified):
            found = _search_once(subject, config, seed_value, result, set_aside)
            if found is None:
                break
            progress(f"invariant {found} falsified")
    except HarnessFailure as failure:
        result.unknown = f"the harness could not decide: {failure}"
    except errors.Flaky as flaky:
        result.unknown = f"flaky (the C did not behave the same on replay): {flaky}"
    result.seconds = time.perf_counter() - start
    return result


@contextmanager
def open_subject(target: Target, policy: Policy,
                 undecided: Optional[Mapping[str, str]] = None) -> Iterator[Subject]:
    """Build a target's sanitized driver; the subject the engine (and a replay) drives."""
    catalog = target.catalog()
    built = build(target.extract(), tuple(catalog.events))
    with Driver(built.binary) as driver:
        yield Subject.create(driver, policy, catalog, undecided)


def format_timeline(example: Counterexample, indent: str = "    ") -> List[str]:
    """One line per step: time, operation, what the C emitted, what the model expected.

    An emitted event is named by the step that queued it ("#2 at 1 s"), so the
    event data is printed once, where it was queued.
    """
    lines = []
    queued_at: Dict[Tuple[str, str], int] = {}

    def emitted(items: Tuple[Emission, ...]) -> str:
        names = []
        for e in items:
            step = queued_at.get((e.event, json.dumps(e.data, sort_keys=True)))
            what = f"#{step}" if step else format_event(e.event, e.data)
            names.append(f"{what} at {format_ns(e.t)}")
        return ", ".join(names) or "nothing"

    for number, step in enumerate(example.steps, 1):
        op = step.operation
        if isinstance(op, Queue):
            queued_at[(op.event, json.dumps(op.data, sort_keys=True))] = number
        when = format_ns(step.before)
        if step.after is not None and step.after != step.before:
            when += f" -> {format_ns(step.after)}"
        line = f"{indent}#{number} t={when}: {op.describe()}"
        if not isinstance(op, CompareKeys):
            c_side = emitted(step.c_emitted)
            table = "" if step.c_table is None else f" (table {step.c_table})"
            line += f"  | C: {c_side}{table}"
            if step.model_compared:
                model_side = emitted(step.model_emitted)
                line += f"  | model: {model_side} (table {step.model_table})"
        lines.append(line)
        if step.note:
            lines.append(f"{indent}   ^ {step.note}")
    if example.crash is not None:
        lines.append(f"{indent}C crashed: {example.crash.summary()}")
    return lines
