"""The stateful engine's oracle: one run of a timeline judged step by step.

After each step the C's result is checked against the invariants of
model/invariants.py (a crash, the driver's findings, then the trace checks in
``trace_checks``' order), then compared with the reference model (a difference is
charged to the invariant it breaks: mismatch_invariant). The first invariant broken
is the run's violation; one set aside (already reported) is passed over: after a
crash the C's run is over, otherwise the C goes on but the model no longer predicts
it. The same judge serves a run applied one step at a time (the state machine, a
replay) and a run that came back whole from a batch (``judge_run``), so a timeline
gets the same verdict either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, FrozenSet, List, Optional, Sequence, Tuple, Union

from qthrottle.harness.driver import Crash, HarnessFailure, KeysCheck, RunResult, StepResult
from qthrottle.model import invariants as inv
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.throttle import ThrottleModel
from qthrottle.model.timeline import Emission, Operation, Queue, format_event


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

    def check(self) -> KeysCheck:
        """The driver command: every equal(x, y) and hash(x) of the records."""
        return KeysCheck(tuple(r for r in (self.a, self.b, self.c) if r is not None))


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


TraceCheck = Callable[[inv.Trace], List[str]]


def trace_checks(policy: Policy) -> Tuple[Tuple[int, TraceCheck], ...]:
    """The invariants judged on a trace, in the order the engine checks them after
    every step: (number, check), a check returning the violations it finds."""
    return ((4, inv.stop_not_delayed),
            (5, lambda t: inv.rate_respected(t, policy)),
            (6, lambda t: inv.unthrottled_immediate(t, policy)),
            (3, lambda t: inv.table_empties_when_quiet(t, policy)))


class Judge:
    """One run, judged step by step (``step``, ``keys``): Violation when an invariant not
    in @ignored breaks; HarnessFailure when the harness could not decide."""

    def __init__(self, policy: Policy, catalog: Catalog, ignored: FrozenSet[int]) -> None:
        self.policy = policy
        self.catalog = catalog
        self.ignored = ignored
        self.checks = trace_checks(policy)
        self.records: List[StepRecord] = []
        self.failed = False
        self.crash: Optional[Crash] = None
        self.start()

    def start(self) -> None:
        """A fresh run: the model from the start (the caller starts the C's)."""
        self.model = ThrottleModel(self.policy, self.catalog)
        self.model_trusted = True
        self.c_now = 0  # the C's clock: the model's stops being right once untrusted
        self.c_trace: List[inv.TraceStep] = []
        self.c_quiet = True  # the C's table is empty and no timer is pending
        self.c_ended = False  # a crash set aside ended the C's run

    def _fail(self, invariant: int, message: str, crash: Optional[Crash] = None) -> None:
        if invariant in self.ignored:
            # Already reported: keep exploring. After a crash the C run is over;
            # otherwise the C goes on but the model no longer predicts it.
            if crash is not None:
                self.start()
                self.c_ended = True
            else:
                self.model_trusted = False
            return
        if self.records:
            self.records[-1].note = f"invariant {invariant}: {message}"
        self.crash = crash
        self.failed = True
        raise Violation(invariant, message)

    def _harness_failure(self, crash: Crash) -> None:
        self.failed = True
        raise HarnessFailure(crash.summary())

    def step(self, op: Operation, result: StepResult) -> None:
        """The C's @result of @op, against the invariants and the model."""
        before = self.c_now
        model_step = self.model.step(op)
        self.records.append(StepRecord(
            op, before, result.emitted, model_step.emitted,
            None if result.crash else result.table, model_step.table or 0,
            after=None if result.crash else result.now, model_compared=self.model_trusted,
            # a crash's output is its report, shown with it
            c_output="" if result.crash else result.output))
        self.c_quiet = (result.crash is not None
                        or result.table == result.pending_timers == 0)
        if result.crash is not None:
            number = inv.crash_invariant(result.crash.kind)
            if number is None:
                self._harness_failure(result.crash)
                return
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
        for number, check in self.checks:
            violations = check(self.c_trace)
            if violations:
                self._fail(number, violations[0])  # returns only if set aside
        self._compare(c_step, model_step)

    def _compare(self, c_step: inv.TraceStep, model_step: inv.TraceStep) -> None:
        mismatch = inv.mismatch_invariant(c_step, model_step, self.policy)
        if not self.model_trusted or mismatch is None:
            return
        op = model_step.operation
        if isinstance(op, Queue) and inv.is_stop_event(op.event, op.data):
            # The C throttles stop events and the model never does: from here on
            # only stop_not_delayed (invariant 4) judges the difference.
            self.records[-1].note = ("the C throttles this stop event; the reference "
                                     "model never does, so it is not compared further")
            self.model_trusted = False
            return
        self._fail(mismatch, "the C and the reference model disagree (see the timeline)")

    def keys(self, compare: CompareKeys, result: StepResult) -> None:
        """Invariants 1 and 2 on the records of @compare, from what the callbacks said.

        Each law is checked even when an earlier one broke an invariant set aside.
        """
        self.records.append(StepRecord(compare, self.c_now, (), (), None,
                                       self.model.table_size))
        if result.crash is not None:
            number = inv.crash_invariant(result.crash.kind)
            if number is None:
                self._harness_failure(result.crash)
                return
            self._fail(number, result.crash.summary(), result.crash)
            return
        for number, message in broken_key_laws(compare, result):
            self._fail(number, message)

    def take(self, step: Step, result: StepResult) -> None:
        """One step of either kind."""
        if isinstance(step, CompareKeys):
            self.keys(step, result)
        else:
            self.step(step, result)


def broken_key_laws(compare: CompareKeys, result: StepResult) -> List[Tuple[int, str]]:
    """Invariants 1 and 2 on the records of @compare (a = 0, b = 1, c = 2 by position) as
    the callbacks answered the key check: (invariant, message) for each law broken."""
    said = result.keys
    assert said is not None, "not the answer of a key check"

    def equal(x: int, y: int) -> bool:
        return said.equal[x][y]

    def hash_of(x: int) -> int:
        return said.hash[x]

    records = [r for r in (compare.a, compare.b, compare.c) if r is not None]
    names = "abc"
    broken = []
    # Each law on every record and pair the callbacks were asked about: the driver
    # computed equal(x, y) for every ordered pair, so checking them all costs nothing.
    for x, record in enumerate(records):
        if not inv.reflexive(equal, x):
            broken.append((1, f"equal({names[x]}, {names[x]}) is false for {names[x]} = "
                              f"{format_event(*record)}"))
    pairs = [(x, y) for x in range(len(records)) for y in range(x + 1, len(records))]
    for x, y in pairs:
        if not (inv.symmetric(equal, x, y) and inv.symmetric(equal, y, x)):
            broken.append((1, f"equal({names[x]}, {names[y]}) = {equal(x, y)} but "
                              f"equal({names[y]}, {names[x]}) = {equal(y, x)}"))
    if compare.c is not None and not inv.transitive(equal, 0, 1, 2):
        broken.append((1, f"equal(a, b) = {equal(0, 1)} and equal(b, c) = {equal(1, 2)} "
                          f"but equal(a, c) = {equal(0, 2)}"))
    for x, y in pairs:
        if not (inv.hash_consistent(hash_of, equal, x, y)
                and inv.hash_consistent(hash_of, equal, y, x)):
            broken.append((2, f"equal({names[x]}, {names[y]}) but hash({names[x]}) = "
                              f"{hash_of(x)}, hash({names[y]}) = {hash_of(y)}"))
    return broken


def command(step: Step) -> Union[Operation, KeysCheck]:
    """What the driver runs for a step."""
    return step.check() if isinstance(step, CompareKeys) else step


def clean(run: RunResult, policy: Policy, catalog: Catalog, steps: Sequence[Step],
          trace: inv.Trace) -> bool:
    """Nothing in @run for a judge to look at: no crash, no finding, no key law broken,
    and every step of its C trace (@trace, ``c_trace``) exactly as the reference model's
    (the same emissions, clock and table). The C's trace is then the model's, on which
    every trace check holds (tests/test_model.py asks it of the reference's traces), so
    the judge would find nothing. A run that is not clean is judged step by step
    (``judge_run``)."""
    if run.crash is not None:
        return False
    for step, result in zip(steps, run.steps):
        if result.findings or isinstance(step, CompareKeys) and (
                result.keys is None or broken_key_laws(step, result)):
            return False
    model = ThrottleModel(policy, catalog)
    return all(inv.mismatch_invariant(c_step, model.step(c_step.operation), policy) is None
               for c_step in trace)


def c_trace(steps: Sequence[Step], run: RunResult) -> inv.Trace:
    """The C's trace of a run, as a Judge builds it step by step: its operations up to
    the first crash, the compare steps left out."""
    trace: List[inv.TraceStep] = []
    now = 0
    for step, result in zip(steps, run.steps):
        if result.crash is not None:
            break
        if isinstance(step, CompareKeys):
            continue
        trace.append(inv.TraceStep(step, now, result.now, result.emitted, result.table))
        now = result.now
    return trace


def judge_run(policy: Policy, catalog: Catalog, ignored: FrozenSet[int],
              steps: Sequence[Step], run: RunResult) -> Tuple[Optional[Violation], Judge]:
    """The verdict on a run that came back whole (Driver.run_batch of @steps): the first
    violation of an invariant not in @ignored, if any, and the judge with its records."""
    judge = Judge(policy, catalog, ignored)
    whole = c_trace(steps, run)
    if clean(run, policy, catalog, steps, whole):
        return None, judge
    # A trace check's violation at a step stays one on every longer trace (each check
    # walks the trace step by step, with what the steps before left), so a check that
    # finds nothing on the whole run finds nothing after any of its steps either: it is
    # not asked after each one (that costs the square of the run's length).
    judge.checks = tuple((number, check) for number, check in judge.checks if check(whole))
    return judge_steps(judge, steps, run), judge


def judge_steps(judge: Judge, steps: Sequence[Step], run: RunResult) -> Optional[Violation]:
    """@judge given a whole run step by step, up to its first violation (returned) or
    the end of the C's run."""
    try:
        for step, result in zip(steps, run.steps):
            judge.take(step, result)
            if judge.c_ended:
                break
    except Violation as violation:
        return violation
    return None
