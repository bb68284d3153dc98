"""The stateful engine: the compiled C and the reference model, side by side, on
timelines drawn from the schema.

Timelines come from engines/sampling.py (the engine's rules, values from the
schema's strategies; the first two batches ask the key laws and the probes directly,
before any timeline is drawn); they go to the C in batches (Driver.run_batch: a whole batch
per round trip, results per step, a crash costs one run) and every run ends quiet
(the clock run past the last window), so that leaks are looked for in every run.
Each run is judged by engines/judge.py: after each step, the invariants of
model/invariants.py on the C's trace, then the C against the model (a difference is
charged to the invariant it breaks: mismatch_invariant). A failure is made short by
the project's own minimiser (engines/minimise.py: delta debugging over the
operations, merged clock steps, plain values), replaying the candidates on the C in
batches; the short timeline is then replayed once more, one step at a time, for the
counterexample. To report every broken invariant, not just the first, the search goes
on with the invariants already found set aside (a violation of one of those ends or
passes over it, never fails the run), with a new budget of runs: a new search.

The engine takes the target's policy as an argument (derived from the code by
proofs/policy.py); where the derivation left an event's key UNKNOWN, the
invariants that judge runs by the policy's keys (5, 6) are UNKNOWN too, never
judged against a guessed key.
"""
from __future__ import annotations

import json
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (
    Callable,
    Deque,
    Dict,
    FrozenSet,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

from qthrottle.core import Interrupted, check_interrupted
from qthrottle.engines.bounds import (
    CRASH_WAIT,
    FIRST_BATCH,
    IN_FLIGHT,
    KEY_LAW_RUNS,
    SEARCH_BATCH,
    Profile,
    quiet_interval,
)
from qthrottle.engines.generate import EventsUnderTest, events_under_test
from qthrottle.engines.judge import CompareKeys as CompareKeys
from qthrottle.engines.judge import Counterexample as Counterexample
from qthrottle.engines.judge import Judge as Judge
from qthrottle.engines.judge import Step as Step
from qthrottle.engines.judge import StepRecord as StepRecord
from qthrottle.engines.judge import Violation as Violation
from qthrottle.engines.judge import command, judge_run
from qthrottle.engines.judge import trace_checks as trace_checks
from qthrottle.engines.minimise import (
    FirstFailing,
    answered_once,
    minimise_batched,
    plain_values_batched,
    shorten,
)
from qthrottle.engines.sampling import Sampler
from qthrottle.harness.build import build
from qthrottle.harness.driver import Batch, Driver, HarnessFailure, RunResult
from qthrottle.harness.target import Target
from qthrottle.model import invariants as inv
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.timeline import Advance, Emission, Queue, format_event, format_ns


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
KEY_LAWS = frozenset({1, 2})  # what the callbacks answer directly (the compare rule)
PROBED = frozenset({3, 4, 5})  # what the probes ask directly (Sampler.probes)


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


def replay(subject: Subject, ignored: FrozenSet[int], operations: Sequence[Step]
           ) -> Tuple[Optional[Violation], Judge]:
    """One timeline on a fresh run, one step at a time (sanitizer reports symbolized):
    the violation it raises, if any, and the judge with its records. The next run's
    reset is sent as it returns (Driver.reset_ahead): nothing reads this run again."""
    judge = Judge(subject.policy, subject.catalog, ignored)
    subject.driver.reset()
    violation: Optional[Violation] = None
    try:
        for step in operations:
            judge.take(step, subject.driver.keys(step.check()) if isinstance(step, CompareKeys)
                       else subject.driver.apply(step))
            if judge.c_ended:  # a crash set aside ends the run, as in a batch
                break
    except Violation as raised:
        violation = raised
    subject.driver.reset_ahead()
    return violation, judge


def run_batched(subject: Subject, timelines: Sequence[List[Step]], settle: int = 0
                ) -> Iterator[Tuple[List[Step], RunResult]]:
    """Each timeline run on the C, in batches, in order: the steps run (with the settling
    clock step, if any) and the run."""
    for start in range(0, len(timelines), SEARCH_BATCH):
        chunk = timelines[start:start + SEARCH_BATCH]
        runs = subject.driver.run_batch([[command(s) for s in t] for t in chunk], settle)
        for steps, run in zip(chunk, runs):
            yield ([*steps, Advance(settle)] if run.settled else list(steps)), run


def failing_prefix(steps: Sequence[Step], judge: Judge) -> List[Step]:
    """A failing run's steps up to the one that broke the invariant (the judge's last
    record): the C and the judge are deterministic, so the prefix fails the same way,
    and the minimiser never replays the steps after it (a crash after the violation
    costs a sanitizer report per candidate)."""
    return list(steps[:len(judge.records)])


def first_failing_on_c(subject: Subject, ignored: FrozenSet[int], invariant: int
                       ) -> FirstFailing:
    """The minimiser's question, "which candidate first fails @invariant", answered on
    the C: the candidates go in batches of one, then two, four, ... so that the C runs
    at most 2k + 1 of them when the first failing one is the k-th (from 0). A batch
    runs all of its timelines, and a failure that crashes the C costs a sanitizer
    report and a fresh process per candidate that still fails.

    Each candidate runs with the settling clock step, as a search's timelines do, but
    is judged on its own steps only: a run that ends with the throttle not quiet can
    only go on in a fresh process (harness/shims/driver.c), a fork that costs as much
    as a crash, while the steps before the settling one answer as they would alone."""
    settle = quiet_interval(subject.policy.rates.values())

    def first(candidates: Sequence[List[Step]]) -> Optional[int]:
        # A candidate of no steps breaks nothing (the judge has no step to check), so it
        # is answered without a run.
        asked = [i for i, steps in enumerate(candidates) if steps]
        start, size = 0, 1
        while start < len(asked):
            chunk = [candidates[i] for i in asked[start:start + size]]
            for index, steps, (_, run) in zip(asked[start:start + size], chunk,
                                              run_batched(subject, chunk, settle)):
                violation, _ = judge_run(subject.policy, subject.catalog, ignored, steps, run)
                if violation is not None and violation.invariant == invariant:
                    return index
            start, size = start + size, 2 * size
        return None
    return first


def minimize(subject: Subject, ignored: FrozenSet[int], invariant: int,
             operations: Sequence[Step]) -> List[Step]:
    """The timeline made 1-minimal, shorter where it can be and plain (engines/minimise.py)
    for the same broken invariant, each round's candidates replayed on the C
    (``first_failing_on_c``)."""
    first_failing = answered_once(first_failing_on_c(subject, ignored, invariant))
    shortest = shorten(minimise_batched(operations, first_failing), first_failing)
    return plain_values_batched(shortest, subject.catalog.events, first_failing)


def _record(subject: Subject, result: SearchResult, failure: _Failure,
            minimised: bool) -> Optional[int]:
    """A failing run minimised and replayed for its counterexample (or, not @minimised,
    as it was found), recorded; the invariant, or None when it did not fail again the
    same way. What was found meanwhile is set aside too."""
    ignored = failure.ignored | frozenset(result.falsified)
    final: Optional[Violation] = failure.violation
    replayed = failure.judge
    if minimised:
        final, replayed = replay(subject, ignored, minimize(
            subject, ignored, failure.violation.invariant, failure.steps))
    if final is None:  # the C did not fail again the same way
        result.unknown = f"invariant {failure.violation.invariant}: the failure did not replay"
        return None
    result.falsified[final.invariant] = Counterexample(
        final.invariant, final.message, list(replayed.records), replayed.crash)
    return final.invariant


def search(subject: Subject, profile: Profile, seed_value: int,
           progress: Callable[[str], None] = lambda _: None,
           set_aside: FrozenSet[int] = frozenset(), stop_at_first: bool = False,
           minimised: bool = True) -> SearchResult:
    """Find a minimal counterexample for every invariant the target breaks.

    Invariants in @set_aside are not searched for (found by another engine, or
    not asked for); the search stops when no other invariant is left, or when a
    search has run the profile's runs without finding one.
    @stop_at_first: stop at the first invariant broken (qthrottle mutate needs one
    counterexample, not all of them). Not @minimised: a counterexample is the run as
    found (for detection rates, where only finding counts).
    """
    result = SearchResult(profile, seed_value, events=subject.events.describe())
    start = time.perf_counter()
    settle = quiet_interval(subject.policy.rates.values())
    if subject.undecided:
        why = "; ".join(f"{event}: {reason}" for event, reason in subject.undecided.items())
        result.undecided = {number: f"the key of the throttle policy is UNKNOWN ({why})"
                            for number in KEYED_INVARIANTS}
        set_aside = set_aside | KEYED_INVARIANTS

    def searched_for() -> FrozenSet[int]:
        return frozenset(inv.INVARIANTS) - set_aside - frozenset(result.falsified)

    # Batches in flight: the C runs the next ones while this process judges one.
    in_flight: Deque[Tuple[List[List[Step]], Batch]] = deque()
    try:
        try:
            sampler = Sampler(subject.events, subject.policy, profile.steps, seed_value)
            result.searches, left, size = 1, profile.runs, FIRST_BATCH
            # The first batches ask directly what needs no timeline: the key laws (one-step
            # compare runs), then the probes; both go to the C at once (IN_FLIGHT).
            first_batches: List[Callable[[], List[List[Step]]]] = [
                *([lambda: [sampler.compare() for _ in range(KEY_LAW_RUNS)]]
                  if KEY_LAWS & searched_for() else []),
                *([sampler.probes] if PROBED & searched_for() else [])]

            def start_next() -> None:
                nonlocal left, size
                if first_batches:
                    timelines = first_batches.pop(0)()[:left]
                else:
                    # Batches grow: a bug found in the first runs is found without the rest.
                    timelines = [sampler.timeline() for _ in range(min(size, left))]
                    size = min(2 * size, SEARCH_BATCH)
                left -= len(timelines)
                in_flight.append((timelines, subject.driver.start_batch(
                    [[command(s) for s in t] for t in timelines], settle)))

            # Crashes wait to be minimised while quicker failures may still come: until
            # no other invariant is left to look for, or CRASH_WAIT runs have gone by.
            postponed: List[Tuple[int, _Failure]] = []  # (runs judged when found, failure)
            judged = 0

            def looked_for() -> FrozenSet[int]:
                return searched_for() - {f.violation.invariant for _, f in postponed}

            def recorded(failure: _Failure) -> bool:
                """@failure recorded; whether the search goes on."""
                nonlocal left
                found = _record(subject, result, failure, minimised)
                if found is None or stop_at_first or not searched_for():
                    return False
                progress(f"invariant {found} falsified")
                result.searches, left = result.searches + 1, profile.runs
                return True

            while looked_for() and (in_flight or left > 0):
                # The next batch starts once this one is judged: a failure in it is then
                # minimised with one batch running on the C, not two.
                while len(in_flight) < IN_FLIGHT and left > 0:
                    start_next()
                timelines, batch = in_flight.popleft()
                runs = subject.driver.finish_batch(batch)
                judged += len(runs)
                for failure in _failures(subject, looked_for(), timelines, runs, settle):
                    if failure.crashed and not stop_at_first:
                        postponed.append((judged, failure))
                    elif not recorded(failure):
                        return _finish(subject, in_flight, result, start)
                while postponed and judged - postponed[0][0] >= CRASH_WAIT:
                    if not recorded(postponed.pop(0)[1]):
                        return _finish(subject, in_flight, result, start)
            for _, failure in postponed:
                found = _record(subject, result, failure, minimised)
                if found is None:
                    break
                progress(f"invariant {found} falsified")
            return _finish(subject, in_flight, result, start)
        except HarnessFailure as failure:
            check_interrupted()  # a signal that arrived is the cause, not the C
            result.unknown = f"the harness could not decide: {failure}"
            for _, batch in in_flight:
                subject.driver.cancel_batch(batch)
    except Interrupted as stop:  # what was found so far, for the command to print
        result.unknown = f"interrupted by {stop}"
        stop.partial = _done(result, start)
        raise
    return _done(result, start)


@dataclass
class _Failure:
    """A run that broke an invariant, before it is minimised."""

    order: Tuple[int, int, int]  # the quickest to minimise first (see _failures)
    ignored: FrozenSet[int]
    violation: Violation
    steps: List[Step]
    judge: Judge

    @property
    def crashed(self) -> bool:
        return self.judge.crash is not None


def _failures(subject: Subject, wanted: FrozenSet[int], timelines: List[List[Step]],
              runs: List[RunResult], settle: int) -> List[_Failure]:
    """Each invariant of @wanted a batch's runs break, at its first failing run, the
    quickest to minimise first: a key law a compare step broke (one step), then the
    failures without a crash, from the shortest (up to the violation), then the crashes
    (each candidate that still fails costs a sanitizer report and a fresh process).

    A run may break several: it is judged again with each one it broke set aside."""
    failures: List[_Failure] = []
    for steps, run in zip(timelines, runs):
        full = [*steps, Advance(settle)] if run.settled else list(steps)
        while True:
            ignored = frozenset(inv.INVARIANTS) - wanted | {
                f.violation.invariant for f in failures}
            violation, judge = judge_run(subject.policy, subject.catalog, ignored, full, run)
            if violation is None:
                break
            kind = (2 if judge.crash is not None
                    else 0 if isinstance(judge.records[-1].operation, CompareKeys) else 1)
            failures.append(_Failure((kind, len(judge.records), len(failures)), ignored,
                                     violation, failing_prefix(full, judge), judge))
    return sorted(failures, key=lambda f: f.order)


def _finish(subject: Subject, in_flight: Deque[Tuple[List[List[Step]], Batch]],
            result: SearchResult, start: float) -> SearchResult:
    """The search ended: the batches still in flight (drawn, not judged) read back."""
    for _, batch in in_flight:
        subject.driver.finish_batch(batch)
    return _done(result, start)


def _done(result: SearchResult, start: float) -> SearchResult:
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
