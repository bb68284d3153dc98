"""The stateful engine: hypothesis drives the compiled C and the model side by side.

Every step goes to both; after each step the engine checks the invariants of
model/invariants.py on the C's trace, then compares the C with the model (a
difference is charged to the invariant it breaks: mismatch_invariant). Every run
ends quiet (the clock run past the last window), so that leaks are looked for in
every run. A failure shrinks to a short timeline. To report every broken invariant, not
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
    Union,
)

from hypothesis import errors, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule, run_state_machine_as_test

from qthrottle.core import Interrupted, check_interrupted
from qthrottle.engines.bounds import Profile, clock_steps, search_settings
from qthrottle.engines.generate import (
    EventsUnderTest,
    event_data,
    events_under_test,
    queue_operations,
)
from qthrottle.engines.minimise import minimise
from qthrottle.harness.build import build
from qthrottle.harness.driver import Crash, Driver, HarnessFailure, StepResult
from qthrottle.harness.target import Target
from qthrottle.model import invariants as inv
from qthrottle.model.ghash import CallbackCrashed, driver_callbacks
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.throttle import ThrottleModel
from qthrottle.model.timeline import (
    Advance,
    AdvanceToNext,
    Emission,
    EventData,
    Operation,
    Queue,
    format_event,
    format_ns,
)


class Violation(AssertionError):
    """An invariant broken at the current step."""

    def __init__(self, invariant: int, message: str) -> None:
        super().__init__(f"invariant {invariant}: {message}")
        self.invariant = invariant
        self.message = message


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


Step = Union[Operation, CompareKeys]  # a line of a timeline


@dataclass
class StepRecord:
    """One line of a counterexample timeline."""

    operation: Step
    before: int
    c_emitted: Tuple[Emission, ...]
    model_emitted: Tuple[Emission, ...]
    c_table: Optional[int]
    model_table: int
    note: str = ""
    after: Optional[int] = None  # the C's clock after the step
    model_compared: bool = True  # False once the model stopped predicting the C
    c_output: str = ""  # what the C printed on stdout and stderr during the step


@dataclass
class Counterexample:
    invariant: int
    message: str
    steps: List[StepRecord]
    crash: Optional[Crash] = None

    @property
    def operations(self) -> List[Step]:
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
    events: str = ""  # the events it queued (EventsUnderTest.describe): a bound


# Invariants judged by the policy's keys: not judged where a key is UNKNOWN.
KEYED_INVARIANTS = frozenset({5, 6})


@dataclass
class Subject:
    """Everything the engine needs about one target."""

    driver: Driver
    policy: Policy
    catalog: Catalog
    events: EventsUnderTest
    undecided: Dict[str, str] = field(default_factory=dict)  # event -> why its key is UNKNOWN

    @classmethod
    def create(cls, driver: Driver, policy: Policy, catalog: Catalog,
               undecided: Optional[Mapping[str, str]] = None) -> Subject:
        throttled = [e for e, rate in policy.rates.items() if rate]
        return cls(driver, policy, catalog, events_under_test(catalog, throttled),
                   dict(undecided or {}))


TraceCheck = Callable[[inv.Trace], List[str]]


def trace_checks(policy: Policy) -> Tuple[Tuple[int, TraceCheck], ...]:
    """The invariants judged on a trace, in the order the engine checks them after
    every step: (number, check), a check returning the violations it finds."""
    return ((4, inv.stop_not_delayed),
            (5, lambda t: inv.rate_respected(t, policy)),
            (6, lambda t: inv.unthrottled_immediate(t, policy)),
            (3, lambda t: inv.table_empties_when_quiet(t, policy)))


def make_machine(subject: Subject, ignored: FrozenSet[int]) -> Type[RuleBasedStateMachine]:
    """A state machine class for one target; violations of @ignored restart the run."""
    steps = clock_steps(subject.policy.rates.values())
    quiet_interval = 2 * max(subject.policy.rates.values(), default=0) or max(steps)
    focus = list(subject.events.focus) or subject.events.all
    queue_ops = queue_operations(focus)
    unthrottled_ops = (queue_operations(subject.events.unthrottled)
                       if subject.events.unthrottled else queue_ops)
    stop_events = [e for e in focus if e.name == inv.STOP_EVENT]
    hash_of, equal = driver_callbacks(subject.driver)
    redrawn = {e.name: event_data(e) for e in subject.events.all}

    def same_key(op: Queue, fresh: EventData) -> EventData:
        """@fresh with @op's key members (present or absent as in @op)."""
        if fresh is None:  # an event without data
            return None
        key = subject.policy.keys.get(op.event, ())
        return {**{m: v for m, v in fresh.items() if m not in key},
                **{m: v for m, v in (op.data or {}).items() if m in key}}

    # Invariants 1 and 2 are about the keys the table holds: those of the focus events.
    pairs = st.sampled_from(focus).flatmap(
        lambda e: st.tuples(st.just(e.name), event_data(e), event_data(e)))

    class ThrottleMachine(RuleBasedStateMachine):
        latest: Optional[ThrottleMachine] = None
        queued = Bundle("queued")

        def __init__(self) -> None:
            super().__init__()
            type(self).latest = self
            self.records: List[StepRecord] = []
            self.failed = False
            self._restart()

        def teardown(self) -> None:
            """Every run ends quiet: the clock runs two intervals past the last event, so
            that what the run leaked (invariant 8) and what its table kept (3) are
            checked at a quiet point, whatever its last step was."""
            if not self.failed and not self.c_quiet:
                self._step(Advance(quiet_interval))

        def _restart(self) -> None:
            subject.driver.reset()
            self.model = ThrottleModel(subject.policy, subject.catalog)
            self.model_trusted = True
            self.c_now = 0  # the C's clock: the model's stops being right once untrusted
            self.c_trace: List[inv.TraceStep] = []
            self.c_quiet = True  # the C's table is empty and no timer is pending

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
            self.failed = True
            raise Violation(invariant, message)

        def _step(self, op: Operation) -> None:
            before = self.c_now
            result = subject.driver.apply(op)
            model_step = self.model.step(op)
            record = StepRecord(op, before, result.emitted, model_step.emitted,
                                None if result.crash else result.table, model_step.table or 0,
                                after=None if result.crash else result.now,
                                model_compared=self.model_trusted,
                                # a crash's output is its report, shown with it
                                c_output="" if result.crash else result.output)
            self.records.append(record)
            self.c_quiet = (result.crash is not None
                            or result.table == result.pending_timers == 0)
            self._check(result, model_step)

        def _check(self, result: StepResult, model_step: inv.TraceStep) -> None:
            if result.crash is not None:
                number = inv.crash_invariant(result.crash.kind)
                if number is None:
                    self.failed = True
                    raise HarnessFailure(result.crash.summary())
                self._fail(number, inv.no_memory_error(result)[0] if number == 8
                           else result.crash.summary(), result.crash)
                return
            for finding in inv.no_dangling_entry(result):
                self._fail(3, finding)
            for finding in inv.no_memory_error(result):
                self._fail(8, finding)
            c_step = inv.TraceStep(model_step.operation, self.c_now, result.now,
                                   result.emitted, result.table)
            self.c_trace.append(c_step)
            self.c_now = result.now
            for number, check in trace_checks(subject.policy):
                violations = check(self.c_trace)
                if violations:
                    self._fail(number, violations[0])  # returns only if set aside
            mismatch = inv.mismatch_invariant(c_step, model_step, subject.policy)
            if self.model_trusted and mismatch is not None:
                op = model_step.operation
                if isinstance(op, Queue) and inv.is_stop_event(op.event, op.data):
                    # The C throttles stop events and the model never does: from here on
                    # only stop_not_delayed (invariant 4) judges the difference.
                    self.records[-1].note = ("the C throttles this stop event; the reference "
                                             "model never does, so it is not compared further")
                    self.model_trusted = False
                    return
                self._fail(mismatch, "the C and the reference model disagree (see the "
                           "timeline)")

        @rule(target=queued, op=queue_ops)
        def queue(self, op: Queue) -> Queue:
            self._step(op)
            return op

        # Invariant 6 on every unthrottled event of the schema, in a rule of its own.
        @rule(op=unthrottled_ops)
        def queue_unthrottled(self, op: Queue) -> None:
            self._step(op)

        # Invariant 4 is about BLOCK_IO_ERROR: a rule of its own makes it frequent.
        @rule(target=queued, op=queue_operations(stop_events) if stop_events else queue_ops)
        def queue_block_io_error(self, op: Queue) -> Queue:
            self._step(op)
            return op

        # An event queued before, again with the same key and its other members drawn
        # anew: a burst, what a throttle is for (its rate; which of the burst is newest;
        # a stop event of a key that is reporting).
        @rule(op=queued, data=st.data())
        def queue_again(self, op: Queue, data: st.DataObject) -> None:
            self._step(Queue(op.event, same_key(op, data.draw(redrawn[op.event]))))

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
                    self.failed = True
                    raise HarnessFailure(crash.summary()) from None
                self._fail(number, crash.summary(), crash)

    return ThrottleMachine


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
    """The timeline made 1-minimal (engines/minimise.py) for the same broken invariant.

    hypothesis shrinks well but stops early on slow tests; the minimiser's greedy
    pass makes the timeline 1-minimal (no single operation can be removed).
    """
    def fails(candidate: List[Any]) -> bool:
        violation, _ = replay(subject, ignored, candidate)
        return violation is not None and violation.invariant == invariant

    return minimise(operations, fails)


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
           set_aside: FrozenSet[int] = frozenset(), stop_at_first: bool = False) -> SearchResult:
    """Find a shrunk counterexample for every invariant the target breaks.

    Invariants in @set_aside are not searched for (found by another engine, or
    not asked for); the search stops when no other invariant is left.
    @stop_at_first: stop at the first invariant broken, and let the minimiser alone
    shorten its timeline (qthrottle mutate needs one counterexample, not the shortest).
    """
    result = SearchResult(profile, seed_value, events=subject.events.describe())
    start = time.perf_counter()
    if subject.undecided:
        why = "; ".join(f"{event}: {reason}" for event, reason in subject.undecided.items())
        result.undecided = {number: f"the key of the throttle policy is UNKNOWN ({why})"
                            for number in KEYED_INVARIANTS}
        set_aside = set_aside | KEYED_INVARIANTS
    config = search_settings(profile.runs, profile.steps, shrink=not stop_at_first)
    try:
        try:
            while set(inv.INVARIANTS) - set_aside - set(result.falsified):
                found = _search_once(subject, config, seed_value, result, set_aside)
                if found is None or stop_at_first:
                    break
                progress(f"invariant {found} falsified")
        # hypothesis turns an interruption inside a run into a flaky one: a signal that
        # arrived is the cause, not the C.
        except HarnessFailure as failure:
            check_interrupted()
            result.unknown = f"the harness could not decide: {failure}"
        except errors.Flaky as flaky:
            check_interrupted()
            result.unknown = f"flaky (the C did not behave the same on replay): {flaky}"
    except Interrupted as stop:  # what was found so far, for the command to print
        result.unknown = f"interrupted by {stop}"
        result.seconds = time.perf_counter() - start
        stop.partial = result
        raise
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
        lines += output_lines(step.c_output, f"{indent}   ")
        if step.note:
            lines.append(f"{indent}   ^ {step.note}")
    if example.crash is not None:
        lines.append(f"{indent}C crashed: {example.crash.summary()}")
    return lines


OUTPUT_LINES_SHOWN = 12  # of what the C printed during one step, in a timeline


def output_lines(output: str, indent: str) -> List[str]:
    """What the C printed during a step, as timeline lines (the first few)."""
    lines = output.strip("\n").splitlines()
    if not lines:
        return []
    shown = [f"{indent}C output: {lines[0]}"] + [f"{indent}          {line}"
                                                 for line in lines[1:OUTPUT_LINES_SHOWN]]
    if len(lines) > OUTPUT_LINES_SHOWN:
        shown.append(f"{indent}          [... {len(lines) - OUTPUT_LINES_SHOWN} more lines]")
    return shown
