"""The dynamic half of `qthrottle diff`: both versions' C on the same timelines.

Both sanitized drivers replay each generated timeline from a fresh start; the
first step where what the monitors receive differs (emissions, their time,
or a crash) is a divergence. The first divergent timeline is made 1-minimal
by greedy deletion (no single operation can be removed and still diverge),
then its events are made plain: optional members dropped, values replaced by
the proofs' readable fillers, wherever the timeline still diverges.

An event is drawn from the members of both schemas (a member only one
version has is generated when that version makes it mandatory); each
version receives the members its own schema has. An event only NEW's schema
has (a patch adds it) is queued to NEW alone, OLD's clock standing still, and
its emissions are not compared: what it can show is a crash. Emissions are
compared on the members both schemas give the event.

Bounds (printed with every result): timelines tried, operations per
timeline, the seed; hypothesis generates the timelines (generate.py's event
values), without shrinking, so that the time is bounded. The clock moves by
fixed steps around the rates of both versions, never "to the next deadline":
the versions' deadlines differ, and the same timeline must mean the same
clock on both sides.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from random import Random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from hypothesis import find
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from qthrottle.engines import generate
from qthrottle.engines.bounds import Profile, search_settings
from qthrottle.engines.generate import events_under_test
from qthrottle.engines.minimise import minimise, plain_values
from qthrottle.harness.driver import Crash, Driver, HarnessFailure, RunResult, StepResult
from qthrottle.harness.target import Target
from qthrottle.model.invariants import crash_invariant
from qthrottle.model.members import string_values
from qthrottle.model.qapi_schema import Catalog, Event
from qthrottle.model.timeline import (
    Advance,
    Emission,
    EventData,
    Operation,
    Queue,
    format_event,
    format_ns,
)


@dataclass(frozen=True)
class Bounds:
    profile: Profile  # timelines generated, operations per timeline, at most
    seed: int

    def describe(self) -> str:
        return (f"seed {self.seed}, up to {self.profile.runs} timelines x "
                f"{self.profile.steps} operations")


@dataclass
class Divergence:
    """A minimal timeline on which the versions differ, and what each did."""

    operations: List[Operation]  # with the members of both schemas
    old_operations: List[Operation]  # as the old version received them
    new_operations: List[Operation]
    old: RunResult
    new: RunResult
    step: int  # index of the first step that differs
    timeline: int  # the generated timeline that diverged first (1-based)
    replays: int  # runs spent minimising


@dataclass
class DynamicDiff:
    bounds: Bounds
    events: List[str]  # the events the timelines queue
    tried: int  # timelines generated
    divergence: Optional[Divergence]
    seconds: float
    unknown: Optional[str] = None
    crashes: Dict[str, Crash] = field(default_factory=dict)  # "old"/"new": first crash seen

    def falsified(self, side: str) -> Dict[int, Crash]:
        """Invariant -> the crash of that version that falsifies it (7 or 8)."""
        crash = self.crashes.get(side)
        number = None if crash is None else crash_invariant(crash.kind)
        return {} if crash is None or number is None else {number: crash}


def merged_event(old: Event, new: Event) -> Event:
    """An event whose data is valid for both schemas (projected onto each by _project)."""
    members = []
    for member in new.members:
        other = old.member(member.name)
        if other is None:
            members.append(member)
            continue
        values = member.enum_values
        if values is not None and other.enum_values is not None:
            values = tuple(v for v in values if v in other.enum_values) or values
        members.append(replace(member, optional=member.optional and other.optional,
                               enum_values=values))
    members += [m for m in old.members if new.member(m.name) is None]
    return Event(new.name, tuple(members), new.source)


def _project(data: EventData, event: Event) -> EventData:
    if data is None or not event.members:
        return None
    return {k: v for k, v in data.items() if event.member(k) is not None}


def _projected(operations: Sequence[Operation], catalog: Optional[Catalog]) -> List[Operation]:
    """The timeline as one version receives it: its own members; an event its schema
    lacks becomes a step of no time, so that the steps of both versions stay aligned."""
    if catalog is None:
        return list(operations)
    return [(Queue(op.event, _project(op.data, catalog.events[op.event]))
             if op.event in catalog.events else Advance(0))
            if isinstance(op, Queue) else op for op in operations]


def shared(event: str, data: EventData, old: Catalog, new: Catalog) -> str:
    """@data on the members both schemas give @event, as a comparable text."""
    in_old, in_new = old.events.get(event), new.events.get(event)
    if data is not None and in_old is not None and in_new is not None:
        data = {k: v for k, v in data.items()
                if in_old.member(k) is not None and in_new.member(k) is not None}
    return json.dumps(data, sort_keys=True)


Observation = Callable[[StepResult], Tuple[Any, ...]]


def monitors_view(old_catalog: Catalog, new_catalog: Catalog) -> Observation:
    """What the QMP monitors see of a step: emissions (on the members both schemas give
    the event) with their times, and a crash. Events only NEW's schema has are queued to
    NEW alone: their emissions are set aside (what they can show is a crash)."""
    def observe(step: StepResult) -> Tuple[Any, ...]:
        emitted = tuple((e.t, e.event, shared(e.event, e.data, old_catalog, new_catalog))
                        for e in step.emitted if e.event in old_catalog.events)
        return emitted, step.crash.kind if step.crash is not None else None
    return observe


class Comparison:
    """The differential runner: two C drivers on the same timelines, compared step by
    step through an observation (what the monitors see, or more)."""

    def __init__(self, old: Driver, new: Driver, observe: Observation,
                 old_catalog: Optional[Catalog] = None,
                 new_catalog: Optional[Catalog] = None) -> None:
        self.old, self.new, self.observe = old, new, observe
        self.old_catalog, self.new_catalog = old_catalog, new_catalog  # None: no projection
        self.runs = 0
        self.crashes: Dict[str, Crash] = {}

    def observed(self, step: Optional[StepResult]) -> Tuple[Any, ...]:
        return ("no step (the run ended)",) if step is None else self.observe(step)

    def run(self, operations: Sequence[Operation], shown: bool = False
            ) -> Tuple[RunResult, RunResult, Optional[int]]:
        """Both sides on @operations; the index of the first differing step, if any.
        Each side's run is a batch of one (Driver.run_batch); a run @shown to people goes
        one step at a time, so that a crash's report is symbolized.

        HarnessFailure when either side's harness could not decide (a hang).
        """
        self.runs += 1

        def on(driver: Driver, operations: List[Operation]) -> RunResult:
            return driver.run(operations) if shown else driver.run_batch([operations])[0]

        old = on(self.old, _projected(operations, self.old_catalog))
        new = on(self.new, _projected(operations, self.new_catalog))
        for run in (old, new):
            crash = run.crash
            if crash is not None and crash_invariant(crash.kind) is None:
                raise HarnessFailure(crash.summary())
        for side, run in (("old", old), ("new", new)):
            if run.crash is not None:
                self.crashes.setdefault(side, run.crash)
        for index in range(max(len(old.steps), len(new.steps))):
            a = old.steps[index] if index < len(old.steps) else None
            b = new.steps[index] if index < len(new.steps) else None
            if self.observed(a) != self.observed(b):
                return old, new, index
        return old, new, None

    def diverges(self, operations: Sequence[Operation]) -> bool:
        return self.run(operations)[2] is not None

    def first_divergence(self, timelines: st.SearchStrategy[List[Operation]], runs: int,
                         seed_value: int) -> Optional[Tuple[List[Operation], int]]:
        """The first generated timeline on which the sides differ, and its number; None
        when @runs timelines (generated from @seed_value, never shrunk) all agree."""
        first: List[int] = []

        def diverges(operations: List[Operation]) -> bool:
            found = self.diverges(operations)
            if found and not first:
                first.append(self.runs)
            return found

        try:
            found = find(timelines, diverges, settings=search_settings(runs, shrink=False),
                         random=Random(seed_value))
        except NoSuchExample:
            return None
        return list(found), first[0]  # find() runs the example it returns once more


def _one_instance(event: Event) -> Event:
    """@event with each free string member held to one value: the focus rule's events
    share their keys, so that a changed decision or key meets a record of its own."""
    return replace(event, members=tuple(
        replace(m, enum_values=(string_values(m.name)[0],))
        if m.enum_values is None and m.type == "str" else m for m in event.members))


def dynamic_diff(old: Target, new: Target, old_catalog: Catalog, new_catalog: Catalog,
                 rates: Sequence[int], throttled: Sequence[str], focus: Sequence[str],
                 bounds: Bounds) -> DynamicDiff:
    """Search for a timeline on which the two versions' C differ, within @bounds.

    @throttled: events either version throttles; @focus: events whose throttle
    changed, queued by a rule of their own (one instance each, see _one_instance) so
    that the search reaches them.
    """
    start = time.perf_counter()
    merged = {name: merged_event(old_catalog.events[name], event)
              if name in old_catalog.events else event
              for name, event in new_catalog.events.items()}
    events = events_under_test(Catalog(merged, {}), [e for e in throttled if e in merged],
                               extra=[e for e in (*focus, "BLOCK_IO_ERROR") if e in merged])
    names = [e.name for e in events.all]
    if not names or bounds.profile.runs <= 0:
        return DynamicDiff(bounds, names, 0, None, time.perf_counter() - start)
    focused = [_one_instance(merged[e]) for e in focus if e in merged] or list(events.focus)

    timelines = generate.timelines(list(events.focus), rates, bounds.profile.steps,
                                   focus=focused, unthrottled=events.unthrottled,
                                   to_next_deadline=False)
    with Driver(old.build().binary) as old_driver, Driver(new.build().binary) as new_driver:
        comparison = Comparison(old_driver, new_driver, monitors_view(old_catalog, new_catalog),
                                old_catalog, new_catalog)
        result = DynamicDiff(bounds, names, 0, None, 0.0)
        try:
            found = comparison.first_divergence(timelines, bounds.profile.runs, bounds.seed)
            if found is None:
                result.tried = comparison.runs
            else:
                result.tried = found[1]
                shortest = plain_values(
                    minimise(found[0], comparison.diverges, keep_one=True), merged,
                    comparison.diverges)
                old_run, new_run, index = comparison.run(shortest, shown=True)
                assert index is not None  # the minimiser keeps only diverging timelines
                result.divergence = Divergence(
                    shortest, _projected(shortest, old_catalog),
                    _projected(shortest, new_catalog), old_run, new_run, index, result.tried,
                    comparison.runs - result.tried - 1)
        except HarnessFailure as failure:
            result.tried = comparison.runs
            result.unknown = f"the harness could not decide: {failure}"
        result.crashes = comparison.crashes
    result.seconds = time.perf_counter() - start
    return result


def side_by_side(diff: Divergence, old_catalog: Catalog, new_catalog: Catalog,
                 indent: str = "    ") -> List[str]:
    """The divergent timeline, one line per step: operation, then old | new."""
    queued_at: Dict[Tuple[str, str], int] = {}

    def key(event: str, data: EventData) -> Tuple[str, str]:
        return event, shared(event, data, old_catalog, new_catalog)

    def emitted(step: Optional[StepResult]) -> str:
        if step is None:
            return "(run over)"
        if step.crash is not None:
            return f"CRASH {step.crash.summary()}"
        names = []
        for e in step.emitted:
            number = queued_at.get(key(e.event, e.data))
            what = f"#{number}" if number else format_event(e.event, e.data)
            names.append(f"{what} at {format_ns(e.t)}")
        return ", ".join(names) or "nothing"

    rows = []
    clock = 0
    for number, op in enumerate(diff.operations, 1):
        if isinstance(op, Queue):
            queued_at[key(op.event, op.data)] = number
        index = number - 1
        old = diff.old.steps[index] if index < len(diff.old.steps) else None
        new = diff.new.steps[index] if index < len(diff.new.steps) else None
        rows.append((f"#{number} t={format_ns(clock)}: {op.describe()}", emitted(old),
                     emitted(new), index == diff.step))
        clock = new.now if new is not None and new.crash is None else clock
    width = max(len(r[1]) for r in rows)
    lines = []
    for what, old_text, new_text, first in rows:
        lines.append(f"{indent}{what}")
        lines.append(f"{indent}    old: {old_text:<{width}} | new: {new_text}"
                     + ("   <- first divergence" if first else ""))
    return lines


def _emission_json(e: Emission) -> Dict[str, Any]:
    return {"t": e.t, "event": e.event, "data": e.data}


def divergence_json(diff: Divergence) -> Dict[str, Any]:
    def side(run: RunResult) -> List[Dict[str, Any]]:
        return [{"emitted": [_emission_json(e) for e in s.emitted],
                 "crash": s.crash.summary() if s.crash else None} for s in run.steps]

    return {"step": diff.step + 1, "timeline": [op.describe() for op in diff.operations],
            "replay_old": repr(diff.old_operations), "replay_new": repr(diff.new_operations),
            "old": side(diff.old), "new": side(diff.new),
            "generated_timeline": diff.timeline, "minimising_replays": diff.replays}
