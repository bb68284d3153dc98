"""Adapters from a counterexample to the picture's plain data (timeline_view.py).

replay_timeline: a counterexample replayed on the C and the reference model (explore).
divergence_timeline: the first divergence of a dynamic diff, OLD against NEW (diff,
and each patch of a reviewed series).

None of them knows the throttle's rules. A lane is a throttle key from the target's
policy (Policy.key); windows and replaced events come from running the reference
model (model/throttle.py) on the timeline, one timer at a time; which emission came
from which queued event is invariants.claim's answer, the one invariant 5 judges
delays by; the invariant named at a step is the engines' own check.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from qthrottle.engines.divergence import Divergence
from qthrottle.engines.stateful import CompareKeys, Step, trace_checks
from qthrottle.harness.driver import StepResult
from qthrottle.model.ghash import Record
from qthrottle.model.invariants import (
    INVARIANTS,
    TraceStep,
    claim,
    crash_invariant,
    no_dangling_entry,
    no_memory_error,
    trace_from_steps,
)
from qthrottle.model.policy import Policy
from qthrottle.model.throttle import ThrottleModel
from qthrottle.model.timeline import (
    Advance,
    AdvanceToNext,
    Emission,
    EventData,
    Queue,
    format_ns,
)
from qthrottle.review.counterexample import Replay, qmp_message
from qthrottle.review.timeline_view import (
    COMPARED,
    DIVERGENCE,
    DROPPED,
    EMITTED,
    HELD,
    QUEUED,
    VIOLATION,
    Highlight,
    Lane,
    Mark,
    Timeline,
    Window,
)
from qthrottle.review.timeline_view import (
    Step as StepRow,
)

DEFAULT_UNIT_NS = 1_000_000_000
TAG_LENGTH = 8  # characters of a mark's tag that fit under it
Key = Tuple[Any, ...]
LaneKey = Tuple[Optional[Key], Optional[Key]]  # per side; (None, None): unthrottled


@dataclass
class SideRun:
    """One side of the picture: what it received and what it emitted, step by step."""

    name: str  # "C", "model", "old", "new"
    note: str  # what it is, for the legend
    policy: Policy  # its rates and keys: its lanes and its windows
    operations: Sequence[Step]  # as this side received them
    emitted: Sequence[Tuple[Emission, ...]]
    tables: Sequence[Optional[int]]  # the table size after each step; None: unknown
    crash: Optional[Tuple[int, str]] = None  # step index and what the sanitizer said
    shown: Optional[int] = None  # steps shown, from the first (None: all)
    fates: Dict[int, Tuple[str, str]] = field(default_factory=dict)  # step index ->
    # (HELD or DROPPED, why) for events this side did not emit, when it knows

    @property
    def length(self) -> int:
        return len(self.operations) if self.shown is None else self.shown


@dataclass
class ModelRun:
    """The reference model on a timeline, observed one timer at a time."""

    windows: List[Tuple[Key, int, int, int]] = field(default_factory=list)  # key, start,
    # deadline, step index: a window opened or re-armed at start
    fates: Dict[int, Tuple[str, str]] = field(default_factory=dict)


def run_model(policy: Policy, operations: Sequence[Step]) -> ModelRun:
    """Windows, and the fate of each event the model holds back, on @operations.

    An advance is taken one deadline at a time (AdvanceToNext while a deadline is
    due, then the rest), so that a window re-armed and closed within one advance
    is seen; the model's own transitions decide everything.
    """
    model = ThrottleModel(policy)
    run = ModelRun()
    queued: Dict[int, Tuple[Queue, int]] = {}  # id of the model's copy -> (copy, step)

    def observe(index: int, operation: Any, fresh: Optional[Queue] = None) -> None:
        before = {key: (w.deadline, w.pending) for key, w in model.windows.items()}
        model.apply(operation)
        for key, window in model.windows.items():
            deadline, pending = before.get(key, (None, None))
            if deadline != window.deadline:
                run.windows.append((key, model.now, window.deadline, index))
            if pending is not None and fresh is not None and window.pending is fresh:
                replaced = queued[id(pending)][1]
                run.fates[replaced] = (DROPPED, f"replaced by #{index + 1} at "
                                       f"{format_ns(model.now)}: dropped, the newest wins")

    for index, op in enumerate(operations):
        if isinstance(op, Queue):
            fresh = Queue(op.event, op.data)  # its own identity, even if the timeline repeats op
            queued[id(fresh)] = (fresh, index)
            observe(index, fresh, fresh)
        elif isinstance(op, Advance):
            target = model.now + op.ns
            while model.next_deadline is not None and model.next_deadline <= target:
                observe(index, AdvanceToNext())
            observe(index, Advance(target - model.now))
        elif not isinstance(op, CompareKeys):
            observe(index, op)
    for window in model.windows.values():
        if window.pending is not None:
            run.fates[queued[id(window.pending)][1]] = (
                HELD, f"held back: its window closes at {format_ns(window.deadline)}, "
                "after the timeline ends")
    return run


# ----------------------------------------------------------------- the builder

def _data_of(op: Step) -> List[Record]:
    if isinstance(op, Queue):
        return [(op.event, op.data)]
    if isinstance(op, CompareKeys):
        return [r for r in (op.a, op.b, op.c) if r is not None]
    return []


def _key(policy: Policy, event: str, data: EventData) -> Optional[Key]:
    return policy.key(event, data) if policy.throttled(event) else None


def _key_text(policy: Policy, event: str, data: EventData) -> str:
    if not policy.throttled(event):
        return "unthrottled"
    members = policy.keys.get(event, ())
    if not members:
        return "one window per event name"
    return ", ".join(f"{m} = {json.dumps((data or {}).get(m))}" for m in members)


def _rate_text(policy: Policy, event: str) -> str:
    return f"rate {format_ns(policy.rate(event))}" if policy.throttled(event) else "at once"


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class _Builder:
    """Lanes, marks and windows of one timeline, from both sides' runs."""

    def __init__(self, sides: Tuple[SideRun, SideRun]) -> None:
        self.sides = sides
        self.lane_keys: List[LaneKey] = []
        self.lanes: List[Lane] = []
        self.marks: List[Mark] = []
        self.windows: List[Window] = []
        self.members: Dict[int, List[Record]] = {}  # lane -> the records it holds

    def lane(self, event: str, data: Sequence[EventData]) -> int:
        """The lane of an event, as each side received it (data per side)."""
        key: LaneKey = tuple(_key(s.policy, event, d)  # type: ignore[assignment]
                             for s, d in zip(self.sides, data))
        if key == (None, None):
            key = (("unthrottled",), ("unthrottled",))
        if key in self.lane_keys:
            return self.lane_keys.index(key)
        self.lane_keys.append(key)
        if key[0] == ("unthrottled",):
            self.lanes.append(Lane("unthrottled events", "", "emitted at once"))
        else:
            keys = [_key_text(s.policy, event, d) for s, d in zip(self.sides, data)]
            rates = [_rate_text(s.policy, event) for s in self.sides]
            names = [s.name for s in self.sides]
            self.lanes.append(Lane(
                event,
                keys[0] if keys[0] == keys[1]
                else "; ".join(f"{n}: {k}" for n, k in zip(names, keys)),
                rates[0] if rates[0] == rates[1]
                else "; ".join(f"{n}: {r}" for n, r in zip(names, rates))))
        return len(self.lane_keys) - 1

    def side_lane(self, side: int, event: str, data: EventData) -> int:
        """The lane of an event only one side saw (an emission no queued event explains)."""
        key = _key(self.sides[side].policy, event, data)
        for index, lane_key in enumerate(self.lane_keys):
            if lane_key[side] == key or (key is None and lane_key[side] == ("unthrottled",)):
                return index
        return self.lane(event, (data, data))

    def tags(self) -> Dict[Tuple[int, str], Tuple[str, str]]:
        """Per lane and record: the members that differ within the lane, as a tag to
        print under a mark (their values, cut short) and in words (member = value)."""
        tags: Dict[Tuple[int, str], Tuple[str, str]] = {}
        for lane, records in self.members.items():
            names = {event for event, _ in records}
            members = sorted({m for _, data in records for m in (data or {})})
            varying = [m for m in members
                       if len({json.dumps((d or {}).get(m)) for _, d in records}) > 1]
            for event, data in records:
                values = [_short((data or {}).get(m, "-")) for m in varying]
                short = " ".join(([event] if len(names) > 1 else []) + values)
                words = ", ".join(f"{m} = {v}" for m, v in zip(varying, values))
                tags[(lane, json.dumps([event, data], sort_keys=True))] = (
                    short[:TAG_LENGTH], f"{event} ({words})" if words else event)
        return tags


def build_timeline(operations: Sequence[Step], befores: Sequence[int], afters: Sequence[int],
                   sides: Tuple[SideRun, SideRun],
                   windows: Sequence[Tuple[Optional[int], ModelRun, Policy]],
                   window_note: str, highlights: Sequence[Highlight],
                   notes: Sequence[str]) -> Timeline:
    """The picture of @operations (as a reader sees them: with every member), the clock
    before and after each step, what each side did, and the model's windows
    (side or None for the whole lane, the model's run, the policy it ran with)."""
    builder = _Builder(sides)
    queued_lane: Dict[int, int] = {}
    for index, op in enumerate(operations):
        per_side = [_data_of(s.operations[index]) for s in sides]
        for position, (event, data) in enumerate(_data_of(op)):
            lane = builder.lane(event, [records[position][1] for records in per_side])
            builder.members.setdefault(lane, []).append((event, data))
            if isinstance(op, Queue):
                queued_lane[index] = lane
    tags = builder.tags()

    def tag(lane: int, event: str, data: EventData) -> str:
        return tags.get((lane, json.dumps([event, data], sort_keys=True)), ("", ""))[0]

    def words(lane: int, event: str, data: EventData) -> str:
        return tags.get((lane, json.dumps([event, data], sort_keys=True)), ("", event))[1]

    fates_text: Dict[int, List[str]] = {}
    cells = [_side_marks(builder, number, side, befores, queued_lane, tag, fates_text)
             for number, side in enumerate(sides)]
    for index, op in enumerate(operations):
        t = befores[index]
        if isinstance(op, Queue):
            lane = queued_lane[index]
            story = "; ".join(fates_text.get(index, []))
            builder.marks.append(Mark(
                QUEUED, lane, index + 1, t, None, str(index + 1), tag(lane, op.event, op.data),
                f"#{index + 1} queued at {format_ns(t)}: {words(lane, op.event, op.data)}. "
                f"{story}",
                json.dumps(qmp_message(op.event, op.data, t), indent=2)))
        elif isinstance(op, CompareKeys):
            records = _data_of(op)
            for position, (event, data) in enumerate(records):
                if (event, data) in records[:position]:
                    continue
                names = "=".join("abc"[p] for p, r in enumerate(records) if r == (event, data))
                lane = builder.lane(event, [data, data])
                builder.marks.append(Mark(
                    COMPARED, lane, index + 1, t, None, names, tag(lane, event, data),
                    f"#{index + 1}: record {names}, {words(lane, event, data)}, passed to "
                    "the hash and equality callbacks",
                    json.dumps(qmp_message(event, data, t), indent=2)))
    for side, run, policy in windows:
        for key, start, deadline, index in run.windows:
            for lane, lane_key in enumerate(builder.lane_keys):
                if key in ((lane_key[side],) if side is not None else lane_key):
                    builder.windows.append(Window(
                        lane, side, start, deadline, index + 1,
                        f"throttle window of {key[0]} ({_rate_text(policy, key[0])}), "
                        f"from {format_ns(start)} to {format_ns(deadline)}: an event of this "
                        "key queued in it is held back until its end"))
    rows = tuple(StepRow(index + 1, befores[index], afters[index], op.describe(),
                         "queue" if isinstance(op, Queue) else
                         "compare" if isinstance(op, CompareKeys) else "advance",
                         (cells[0][index], cells[1][index]),
                         _tables(sides, index), notes[index])
                 for index, op in enumerate(operations))
    rates = [r for s in sides for r in s.policy.rates.values() if r]
    return Timeline(
        (sides[0].name, sides[1].name), (sides[0].note, sides[1].note), window_note,
        tuple(builder.lanes), tuple(builder.marks), tuple(builder.windows), rows,
        tuple(highlights), max(rates, default=DEFAULT_UNIT_NS),
        _story(rows, builder.marks, builder.windows, highlights, sides),
        tuple(None if s.shown is None else s.shown for s in sides))  # type: ignore[arg-type]


def _story(rows: Sequence[StepRow], marks: Sequence[Mark], windows: Sequence[Window],
           highlights: Sequence[Highlight], sides: Tuple[SideRun, SideRun]) -> Tuple[str, ...]:
    """What happens at each highlighted step, in words: why it is highlighted, the event
    queued there (and the window it fell into), what each side did."""
    lines = []
    for number in sorted({h.step for h in highlights}):
        row = rows[number - 1]
        here = [h for h in highlights if h.step == number]
        parts = [f"Step {number} (t = {format_ns(row.before)}), "
                 + " and ".join(h.title for h in here) + "."]
        queued = next((m for m in marks if m.step == number and m.kind == QUEUED), None)
        if queued is None:
            parts.append(f"{row.operation}: {sides[0].name}: {row.cells[0]}; "
                         f"{sides[1].name}: {row.cells[1]}.")
        else:
            parts.append(queued.text.rstrip(".") + ".")
            open_windows = sorted({(w.start, w.end) for w in windows
                                   if w.lane == queued.lane and w.start <= queued.t < w.end
                                   and w.step < number})
            if open_windows:
                start, end = open_windows[0]
                parts.append(f"It was queued while the throttle window of its key was open "
                             f"({format_ns(start)} to {format_ns(end)}).")
            if any(h.kind == DIVERGENCE for h in here):
                parts.append(f"Tables: {sides[0].name} {row.tables[0]}, "
                             f"{sides[1].name} {row.tables[1]}.")
        if row.note and not any(h.kind == VIOLATION for h in here):
            parts.append(f"Note: {row.note}.")
        parts += [h.text for h in here if h.kind == VIOLATION]
        lines.append(" ".join(parts))
    return tuple(lines)


def _tables(sides: Tuple[SideRun, SideRun], index: int) -> Tuple[Optional[int], Optional[int]]:
    shown = [s.tables[index] if index < s.length else None for s in sides]
    return shown[0], shown[1]


def _side_marks(builder: _Builder, number: int, side: SideRun, befores: Sequence[int],
                queued_lane: Dict[int, int], tag: Callable[[int, str, EventData], str],
                stories: Dict[int, List[str]]) -> List[str]:
    """The marks of one side's row: each emission joined to its queued event, and the
    events it did not emit (what happened to each, added to @stories). Returns the
    side's cell of each step for the table: what it emitted, its table size."""
    @dataclass(frozen=True)
    class Queued:
        index: int
        event: str
        data: EventData

    length = side.length
    queued = [Queued(i, op.event, op.data) for i, op in enumerate(side.operations[:length])
              if isinstance(op, Queue)]
    emissions = [(i, e) for i in range(length) for e in side.emitted[i]]
    claimed = claim(queued, emissions)
    source = {id(emission): queued[position] for position, (_, emission) in claimed.items()}
    emitted_text: Dict[int, List[str]] = {}
    for index, emission in emissions:
        event = source.get(id(emission))
        lane = queued_lane[event.index] if event else builder.side_lane(
            number, emission.event, emission.data)
        if event is None:
            label, story = "?", "matching no queued event"
        else:
            delay = emission.t - befores[event.index]
            label = str(event.index + 1)
            story = ("at once" if delay == 0 and index == event.index else
                     f"{format_ns(delay)} after it was queued at "
                     f"{format_ns(befores[event.index])}")
            stories.setdefault(event.index, []).append(
                f"{side.name}: emitted at {format_ns(emission.t)} ({story})")
        emitted_text.setdefault(index, []).append(f"#{label} at {format_ns(emission.t)}")
        builder.marks.append(Mark(
            EMITTED, lane, index + 1, emission.t, number, label,
            tag(lane, emission.event, emission.data),
            f"#{label} emitted by {side.name} at {format_ns(emission.t)}, {story}",
            json.dumps(qmp_message(emission.event, emission.data, emission.t), indent=2)))
    emitted = {q.index for q in (queued[p] for p in claimed)}
    for event in queued:
        if event.index in emitted:
            continue
        if side.crash is not None and side.crash[0] >= event.index:
            kind, why = DROPPED, (f"never emitted: {side.name} crashed at step "
                                  f"{side.crash[0] + 1} ({side.crash[1]})")
        elif event.index in side.fates:
            kind, why = side.fates[event.index]
        else:
            kind, why = HELD, "not emitted by the end of the timeline (held back, merged " \
                "or dropped)"
        stories.setdefault(event.index, []).append(f"{side.name}: {why}")
        lane = queued_lane[event.index]
        builder.marks.append(Mark(
            kind, lane, event.index + 1, befores[event.index], number, str(event.index + 1),
            tag(lane, event.event, event.data), f"#{event.index + 1} on {side.name}: {why}",
            json.dumps(qmp_message(event.event, event.data, befores[event.index]), indent=2)))
    cells = []
    for index, op in enumerate(side.operations):
        if index >= length:
            cells.append("not compared from here")
        elif side.crash is not None and side.crash[0] == index:
            cells.append(f"CRASH: {side.crash[1]}")
        elif isinstance(op, CompareKeys):
            cells.append("callbacks called directly")
        else:
            table = side.tables[index]
            cells.append(", ".join(emitted_text.get(index, ["nothing"]))
                         + ("" if table is None else f" (table {table})"))
    return cells


# ------------------------------------------------------------------ adapters

def replay_timeline(replayed: Replay, policy: Policy, target: str) -> Timeline:
    """A counterexample replayed on the sanitized C of @target and the reference model."""
    records = replayed.records
    operations = [r.operation for r in records]
    befores = [r.before for r in records]
    afters = [r.before if r.after is None else r.after for r in records]
    shown = next((i for i, r in enumerate(records) if not r.model_compared), None)
    model = run_model(policy, operations[:shown])
    crash = None if replayed.crash is None else (len(records) - 1, replayed.crash.summary())
    c_side = SideRun("C", f"the sanitized C of {target}", policy, operations,
                     [r.c_emitted for r in records], [r.c_table for r in records], crash)
    model_side = SideRun("model", "the reference model (model/throttle.py)", policy,
                         operations, [r.model_emitted for r in records],
                         [r.model_table for r in records], shown=shown, fates=model.fates)
    highlights = []
    divergence = next((i for i, r in enumerate(records[:shown])
                       if not isinstance(r.operation, CompareKeys)
                       and (r.c_emitted, r.c_table) != (r.model_emitted, r.model_table)), None)
    if divergence is not None:
        highlights.append(Highlight(divergence + 1, DIVERGENCE, "the C and the model part ways",
                                    "the C and the reference model differ in what they emit "
                                    "or in their table size"))
    violation = replayed.violation
    if violation is not None:
        number = violation.invariant
        step = next((i for i, r in reversed(list(enumerate(records)))
                     if r.note.startswith(f"invariant {number}:")), len(records) - 1)
        highlights.append(Highlight(step + 1, VIOLATION, f"invariant {number} broken",
                                    f"invariant {number} ({INVARIANTS[number]}): "
                                    f"{violation.message}"))
    return build_timeline(
        operations, befores, afters, (c_side, model_side), [(None, model, policy)],
        "throttle windows of the reference model on this timeline, from an emission to "
        "its deadline", highlights, [r.note for r in records])


def first_violation(policy: Policy, steps: Sequence[StepResult]
                    ) -> Optional[Tuple[int, int, str]]:
    """The first step of a C run that breaks an invariant: (step index, invariant, why),
    judged as the stateful engine judges each step (crash, findings, trace checks)."""
    trace: List[TraceStep] = trace_from_steps(steps)
    for index, step in enumerate(steps):
        if step.crash is not None:
            number = crash_invariant(step.crash.kind)
            return None if number is None else (index, number, step.crash.summary())
        for number, findings in ((3, no_dangling_entry(step)), (8, no_memory_error(step))):
            if findings:
                return index, number, findings[0]
        for number, check in trace_checks(policy):
            found = check(trace[:index + 1])
            if found:
                return index, number, found[0]
    return None


def divergence_timeline(diff: Divergence, old_policy: Policy, new_policy: Policy,
                        old_name: str, new_name: str) -> Timeline:
    """The first divergence of a dynamic diff: OLD's C and NEW's C on one timeline."""
    operations = diff.operations
    befores, afters = [], []
    clock = 0
    for index in range(len(operations)):
        befores.append(clock)
        done = [run.steps[index] for run in (diff.new, diff.old)
                if index < len(run.steps) and run.steps[index].crash is None]
        clock = done[0].now if done else clock
        afters.append(clock)
    sides = []
    highlights = [Highlight(diff.step + 1, DIVERGENCE, "OLD and NEW part ways",
                            "the monitors receive different events (or one side crashes)")]
    for name, target, policy, ops, run in (("old", old_name, old_policy, diff.old_operations,
                                            diff.old),
                                           ("new", new_name, new_policy, diff.new_operations,
                                            diff.new)):
        steps = run.steps
        crash = next(((i, s.crash.summary()) for i, s in enumerate(steps) if s.crash), None)
        padded = [steps[i] if i < len(steps) else None for i in range(len(operations))]
        sides.append(SideRun(
            name, f"the sanitized C of {name.upper()}: {target}", policy, ops,
            [() if s is None else s.emitted for s in padded],
            [None if s is None or s.crash else s.table for s in padded], crash,
            shown=len(steps) if len(steps) < len(operations) and crash is None else None))
        found = first_violation(policy, steps)
        if found is not None:
            index, number, why = found
            highlights.append(Highlight(index + 1, VIOLATION,
                                        f"{name.upper()} breaks invariant {number}",
                                        f"{name.upper()}: invariant {number} "
                                        f"({INVARIANTS[number]}): {why}"))
    windows = [(number, run_model(side.policy, side.operations[:side.length]), side.policy)
               for number, side in enumerate(sides)]
    return build_timeline(
        operations, befores, afters, (sides[0], sides[1]), windows,
        "throttle windows of the reference model with each version's rates and keys, from "
        "an emission to its deadline", highlights, [""] * len(operations))
