"""End to end: the reference model against a real qemu-system binary, under qtest.

Every other engine drives the throttle functions extracted from monitor.c inside
the harness's shims (QDict, timers, the emit path). This one checks that the
reference model predicts what a real QEMU process sends to a QMP client, exactly:
event, data, and the virtual time to the nanosecond.

A timeline is drawn with the stateful engine's strategies (event data from the
QAPI schema, engines/generate.py; clock steps around window ends, engines/bounds.py),
each queued event turned into what a guest can do to make QEMU queue it
(harness/qemu_machine.py). Each step goes to three sides:

* QEMU: a fresh process per timeline under qtest; the guest's port I/O, or the
  virtual clock stepped through qtest. Its events are read from QMP; a QMP round
  trip after each qtest command orders them, and bare ``clock_step`` commands,
  one per timer deadline that the model or the harness expects, time them to the
  nanosecond (the throttle's timers are the only ones on the machine's virtual
  clock). The times of QEMU's timers are compared too: after the last step the
  clock is stepped from deadline to deadline until QEMU has no timer left.
* the harness driver: the same monitor.c compiled with the shims;
* the reference model, with the policy of that monitor.c.

A step where the three do not all agree ends the timeline; the disagreement says
which side differs: QEMU against the harness and the model (the shims do not
behave like QEMU), the model against both (a model or policy bug), or the harness
alone. hypothesis shrinks the timeline; the report is the timeline, one line per
step, the QEMU command line and the qtest/QMP transcript.
"""
from __future__ import annotations

import json
import tempfile
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from hypothesis import errors, given, seed
from hypothesis import strategies as st

from qthrottle.engines.bounds import Profile, clock_steps, search_settings
from qthrottle.engines.generate import event_data, events_under_test
from qthrottle.harness.driver import Driver, HarnessFailure, StepResult
from qthrottle.harness.qemu_machine import (
    DiskIo,
    Guest,
    Machine,
    QuorumRead,
    RtcSet,
    Trigger,
    find_libfaketime,
)
from qthrottle.harness.qemu_process import QemuError
from qthrottle.harness.target import Target
from qthrottle.model.members import string_values
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog, Event
from qthrottle.model.throttle import ThrottleModel
from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, Queue, format_ns

QEMU_TIMEOUT_S = 10.0
DRAIN_LIMIT = 1000  # timer deadlines after the last step, at most
_LONGEST_REPLY = 240  # characters of a QMP reply shown in a transcript
TRIGGERED = ("RTC_CHANGE", "BLOCK_IO_ERROR", "QUORUM_REPORT_BAD")


@dataclass(frozen=True)
class Drain:
    """After the last step: every remaining timer, deadline by deadline, until none is left."""

    def describe(self) -> str:
        return "every remaining timer, until none is pending"


Step = Union[Trigger, Advance, AdvanceToNext, Drain]


class _Mismatch(Exception):
    """A timeline on which the three sides disagree (hypothesis shrinks it)."""


# ------------------------------------------------------------------- subject

@dataclass
class Subject:
    """What the engine checks: a binary, the monitor.c it was built from, its schema."""

    binary: Path
    target: Target
    policy: Policy
    catalog: Catalog
    machine: Machine
    libfaketime: Optional[Path]
    driver: Driver
    bios: Path

    @property
    def kinds(self) -> Tuple[str, ...]:
        """The event kinds the guest can make QEMU queue (RTC_CHANGE needs libfaketime)."""
        return tuple(k for k in TRIGGERED if k != "RTC_CHANGE" or self.libfaketime is not None)


@contextmanager
def open_subject(binary: Path, target: Target, steps: int,
                 policy: Policy) -> Iterator[Subject]:
    """Build the harness driver of @target and prepare the machine; @policy: the model's
    (what this monitor.c throttles, per which key: derived from its code by the caller)."""
    catalog = target.catalog()
    machine = Machine.create(string_values("qom-path"), string_values("node-name"), steps)
    with tempfile.TemporaryDirectory(prefix="qthrottle-e2e-") as scratch:
        bios = Path(scratch) / "bios.bin"
        bios.write_bytes(bytes(64 * 1024))  # never executed under qtest; pc wants 64 KiB x n
        libfaketime = _effective_libfaketime(binary, machine, bios)
        with Driver(target.build().binary) as driver:
            yield Subject(binary, target, policy, catalog, machine,
                          libfaketime, driver, bios)


def _effective_libfaketime(binary: Path, machine: Machine, bios: Path) -> Optional[Path]:
    """libfaketime, if it freezes the host clock in this binary (not for a static one).

    Starting QEMU once also shows that the binary runs the machine under qtest
    (QemuError otherwise: an input error, before any timeline).
    """
    libfaketime = find_libfaketime()
    with Guest(machine, binary, bios, libfaketime, QEMU_TIMEOUT_S) as guest:
        return libfaketime if libfaketime is not None and guest.clock_frozen() else None


# ------------------------------------------------------------------ timelines

def realize(machine: Machine, op: Queue) -> Trigger:
    """What the guest does so that QEMU queues an event like @op (drawn from the schema).

    The drawn data picks the device (qom-path, node-name) and the action; what
    QEMU then sends is the device's own data (Machine.queued).
    """
    data = op.data or {}
    if op.event == "RTC_CHANGE":
        return RtcSet.of(int(data.get("offset", 0)))
    if op.event == "QUORUM_REPORT_BAD":
        return machine.quorum_read(str(data["node-name"]))
    # QEMU 7.2's BLOCK_IO_ERROR has no qom-path: its device then picks the disk.
    name = str(data.get("qom-path") or data.get("device") or "")
    disk = machine.disk(name) or machine.disks[zlib.crc32(name.encode()) % len(machine.disks)]
    action = data.get("action")
    operation = ("write" if disk.werror == action else
                 "read" if disk.rerror == action else str(data.get("operation", "read")))
    return DiskIo(disk, operation)


def timelines(subject: Subject, steps: int) -> st.SearchStrategy[List[Step]]:
    """Timelines of up to @steps steps, drawn with the stateful engine's strategies."""
    throttled = [e for e, rate in subject.policy.rates.items() if rate]
    events = [e for e in events_under_test(subject.catalog, throttled).all
              if e.name in subject.kinds]

    def triggers(chosen: List[Event]) -> st.SearchStrategy[Trigger]:
        return st.one_of([st.builds(Queue, st.just(e.name), event_data(e)).map(
            lambda op: realize(subject.machine, op)) for e in chosen])

    def both_ways(trigger: Trigger) -> st.SearchStrategy[List[Step]]:
        """A read and a write of one disk, in either order: two actions, one window."""
        if not isinstance(trigger, DiskIo):
            return st.just([trigger])
        pair: List[Step] = [DiskIo(trigger.disk, "read"), DiskIo(trigger.disk, "write")]
        return st.permutations(pair)

    # As the stateful engine has a rule of its own for BLOCK_IO_ERROR, a stop while
    # the same disk's report or ignore window is open comes up often.
    disks = [e for e in events if e.name == "BLOCK_IO_ERROR"] or events
    part: st.SearchStrategy[List[Step]] = st.one_of(
        triggers(events).map(lambda t: [t]), triggers(disks).flatmap(both_ways),
        st.sampled_from(clock_steps(subject.policy.rates.values())).map(lambda ns: [Advance(ns)]),
        st.just([AdvanceToNext()]))
    return st.lists(part, min_size=1, max_size=steps).map(
        lambda parts: [s for p in parts for s in p][:steps])


# ---------------------------------------------------------------- one timeline

@dataclass(frozen=True)
class Seen:
    """One event QEMU sent, and when: exactly at t, or somewhere in [earliest, t]."""

    emission: Emission
    earliest: int

    @property
    def exact(self) -> bool:
        return bool(self.earliest == self.emission.t)


@dataclass
class Side:
    """What one side did in one step: emissions, timer deadlines reached, table size."""

    emitted: Tuple[Emission, ...] = ()
    deadlines: Tuple[int, ...] = ()
    table: Optional[int] = None  # unknown for QEMU

    def observed(self) -> Tuple[Tuple[Emission, ...], Tuple[int, ...]]:
        return self.emitted, self.deadlines


@dataclass
class StepRecord:
    step: Step
    before: int
    after: int
    queued: Tuple[Queue, ...]
    qemu: Side
    harness: Side
    model: Side
    seen: Tuple[Seen, ...] = ()
    transcript: Tuple[int, int] = (0, 0)  # slice of the run's transcript
    note: str = ""

    @property
    def agree(self) -> bool:
        return (self.qemu.observed() == self.harness.observed() == self.model.observed()
                and not self.note)

    def verdict(self) -> str:
        qemu, harness, model = (s.observed() for s in (self.qemu, self.harness, self.model))
        if qemu == harness and harness != model:
            return ("QEMU and the harness driver agree, the model differs: the reference "
                    "model (or the policy it runs with) does not describe this monitor.c")
        if harness == model and qemu != harness:
            return ("the harness driver and the model agree, QEMU differs: the binary was "
                    "not built from this monitor.c, or the harness's shims (QDict, timers, "
                    "the emit path) do not behave like QEMU")
        if qemu == model and harness != model:
            return ("QEMU and the model agree, the harness driver differs: a shim bug")
        if qemu == harness == model:
            return f"QEMU's timers differ from the prediction: {self.note}"
        return "QEMU, the harness driver and the model all differ"


@dataclass
class Run:
    """One timeline on the three sides, up to its first disagreement."""

    records: List[StepRecord]
    command_line: List[str]
    env: Dict[str, str]
    transcript: List[Tuple[str, str]]
    undecided: Optional[str] = None

    @property
    def mismatch(self) -> Optional[int]:
        """The index of the first step where the sides disagree."""
        return next((i for i, r in enumerate(self.records) if not r.agree), None)

    def events(self) -> List[str]:
        """QEMU's events with their virtual times, one line each (for "same seed, same run")."""
        return [f"t={s.earliest}..{s.emission.t} {s.emission.event} "
                f"{json.dumps(s.emission.data, sort_keys=True)}"
                for r in self.records for s in r.seen]


class _Sides:
    """The three sides of one timeline, stepped together."""

    def __init__(self, subject: Subject, guest: Guest) -> None:
        self.subject, self.guest = subject, guest
        self.model = ThrottleModel(subject.policy, subject.catalog)
        self.driver = subject.driver
        self.driver.reset()
        self.harness_next: Optional[int] = None
        self.now = 0

    def _harness(self, op: Union[Queue, Advance, AdvanceToNext]) -> StepResult:
        result = self.driver.apply(op)
        if result.crash is not None:
            raise HarnessFailure(f"the harness driver crashed on {op.describe()}: "
                            f"{result.crash.summary()}")
        self.harness_next = result.next_deadline
        return result

    def step(self, step: Step) -> StepRecord:
        if isinstance(step, (RtcSet, DiskIo, QuorumRead)):
            return self._trigger(step)
        return self._advance(step)

    def _trigger(self, trigger: Trigger) -> StepRecord:
        queued = self.subject.machine.queued(trigger, self.guest.rtc_path)
        model = tuple(e for op in queued for e in self.model.apply(op))
        harness: Tuple[Emission, ...] = ()
        table = 0
        for op in queued:
            result = self._harness(op)
            harness += result.emitted
            table = result.table
        self.guest.apply(trigger)
        seen = tuple(Seen(e, self.now) for e in self._qemu_events(self.now))
        return StepRecord(trigger, self.now, self.now, queued,
                          Side(tuple(s.emission for s in seen)), Side(harness, (), table),
                          Side(model, (), self.model.table_size), seen)

    def _qemu_events(self, t: int) -> List[Emission]:
        return [Emission(t, e["event"], e.get("data")) for e in self.guest.sync()]

    def _model_to(self, target: Optional[int]) -> Side:
        """The model to @target (None: until no timer is left), deadline by deadline."""
        emitted: List[Emission] = []
        deadlines: List[int] = []
        while (self.model.next_deadline is not None and len(deadlines) < DRAIN_LIMIT
               and (target is None or self.model.next_deadline <= target)):
            deadlines.append(self.model.next_deadline)
            emitted += self.model.apply(AdvanceToNext())
        if target is not None and self.model.now < target:
            emitted += self.model.apply(Advance(target - self.model.now))
        return Side(tuple(emitted), tuple(deadlines), self.model.table_size)

    def _harness_to(self, target: Optional[int]) -> Side:
        """The harness driver to @target (None: until no timer is left), deadline by deadline."""
        emitted: List[Emission] = []
        deadlines: List[int] = []
        last: Optional[StepResult] = None
        while (self.harness_next is not None and len(deadlines) < DRAIN_LIMIT
               and (target is None or self.harness_next <= target)):
            last = self._harness(AdvanceToNext())
            deadlines.append(last.now)
            emitted += last.emitted
        now = self.now if last is None else last.now
        if target is not None and now < target:
            last = self._harness(Advance(target - now))
            emitted += last.emitted
        table = last.table if last is not None else self._harness_table()
        return Side(tuple(emitted), tuple(deadlines), table)

    def _harness_table(self) -> int:
        state = self.driver.state()
        return state.table if state.crash is None else -1

    def _advance(self, step: Union[Advance, AdvanceToNext, Drain]) -> StepRecord:
        """A clock step on the three sides; QEMU's timed by bare clock_steps."""
        if isinstance(step, Drain):
            target: Optional[int] = None
        elif isinstance(step, Advance):
            target = self.now + step.ns
        else:  # the model's next deadline, the same step for all three sides
            target = self.model.next_deadline if self.model.next_deadline is not None else self.now
        model, harness = self._model_to(target), self._harness_to(target)
        expected = sorted(set(model.deadlines) | set(harness.deadlines))
        qemu, seen, note, after = self._qemu_to(target, expected)
        record = StepRecord(step, self.now, after, (), qemu, harness, model, seen, note=note)
        self.now = after
        return record

    def _qemu_to(self, target: Optional[int], expected: List[int]
                 ) -> Tuple[Side, Tuple[Seen, ...], str, int]:
        """Step QEMU's clock to @target (None: until it has no timer left).

        A bare clock_step moves to QEMU's next timer and fires it: each expected
        deadline is reached that way, so events are timed exactly; the rest of the
        interval, where no side expects a timer, is one explicit step.
        """
        now, note = self.now, ""
        seen: List[Seen] = []
        deadlines: List[int] = []
        pending = [d for d in expected if d > now]
        while pending or (target is None and len(deadlines) < DRAIN_LIMIT):
            t = self.guest.step_to_next_deadline()
            if t is None:
                if pending:
                    note = f"QEMU had no timer pending; expected one at {format_ns(pending[0])}"
                break
            deadlines.append(t)
            seen += [Seen(e, t) for e in self._qemu_events(t)]
            now = t
            if target is not None and t > target:
                note = (f"QEMU's next timer was at {format_ns(t)}, after this step's end "
                        f"({format_ns(target)}); expected one at {format_ns(pending[0])}")
                break
            pending = [d for d in pending if d > t]
        if target is not None and now < target:
            start, now = now, self.guest.step(target - now)
            seen += [Seen(e, start + 1) for e in self._qemu_events(now)]
        if target is None and len(deadlines) >= DRAIN_LIMIT:
            note = f"QEMU still had timers after {DRAIN_LIMIT} deadlines"
        return (Side(tuple(s.emission for s in seen), tuple(deadlines)), tuple(seen), note,
                now if target is None else max(now, target))


def run_timeline(subject: Subject, timeline: Sequence[Step]) -> Run:
    """One timeline on a fresh QEMU, the harness driver and the model; stops at a mismatch."""
    try:
        guest = Guest(subject.machine, subject.binary, subject.bios, subject.libfaketime,
                      QEMU_TIMEOUT_S)
    except QemuError as error:
        raise HarnessFailure(str(error)) from None
    run = Run([], guest.qemu.command_line, subject.machine.env(subject.libfaketime),
              guest.qemu.transcript)
    with guest:
        sides = _Sides(subject, guest)
        try:
            for step in [*timeline, Drain()]:
                start = len(guest.qemu.transcript)
                record = sides.step(step)
                record.transcript = (start, len(guest.qemu.transcript))
                run.records.append(record)
                if not record.agree:
                    break
        except QemuError as error:
            run.undecided = str(error)
    return run


# ---------------------------------------------------------------------- search

@dataclass
class Coverage:
    """What the timelines exercised, counted on QEMU's side."""

    queued: Counter[str] = field(default_factory=Counter)
    at_once: Counter[str] = field(default_factory=Counter)
    by_timer: Counter[str] = field(default_factory=Counter)
    keys: Dict[str, set[str]] = field(default_factory=dict)
    steps: Counter[str] = field(default_factory=Counter)
    max_windows: int = 0
    stops_in_window: int = 0  # stop events queued while their disk's window was open

    def add(self, run: Run, rate: int) -> None:
        """@rate: BLOCK_IO_ERROR's, for telling when a disk's window is open."""
        opened: Dict[str, int] = {}  # qom-path -> its last throttled BLOCK_IO_ERROR
        for record in run.records:
            self.steps[_step_kind(record.step)] += 1
            self.max_windows = max(self.max_windows, record.model.table or 0)
            for op in record.queued:
                kind, key = _kind(op.event, op.data), _key_member(op.event, op.data)
                self.queued[kind] += 1
                if key:
                    self.keys.setdefault(op.event, set()).add(key)
                if kind == _STOP_KIND and record.before - opened.get(key, -rate) < rate:
                    self.stops_in_window += 1
            timed = self.at_once if record.queued else self.by_timer
            for emission in record.qemu.emitted:
                kind = _kind(emission.event, emission.data)
                timed[kind] += 1
                if kind.startswith("BLOCK_IO_ERROR ") and kind != _STOP_KIND:
                    opened[_key_member(emission.event, emission.data)] = emission.t

    def lines(self) -> List[str]:
        out = []
        for kind in sorted(self.queued):
            queued, now, later = self.queued[kind], self.at_once[kind], self.by_timer[kind]
            out.append(f"  {kind:<30} queued {queued:>4}: emitted at once {now:>4}, "
                       f"by the throttle's timer {later:>4}, replaced {queued - now - later:>4}")
        out.append(f"  {_STOP_KIND} queued while its disk's window was open: "
                   f"{self.stops_in_window}")
        for event, keys in sorted(self.keys.items()):
            out.append(f"  {event} keys: {', '.join(sorted(keys))}")
        out.append("  steps: " + ", ".join(f"{kind} {n}" for kind, n in sorted(self.steps.items()))
                   + f"; at most {self.max_windows} throttle windows open at once")
        return out


_STOP_KIND = "BLOCK_IO_ERROR action=stop"


def _kind(event: str, data: Optional[Dict[str, Any]]) -> str:
    if event == "BLOCK_IO_ERROR" and data:
        return f"BLOCK_IO_ERROR action={data.get('action')}"
    return event


def _key_member(event: str, data: Optional[Dict[str, Any]]) -> str:
    member = {"BLOCK_IO_ERROR": "qom-path", "QUORUM_REPORT_BAD": "node-name"}.get(event)
    return str((data or {}).get(member, "")) if member else ""


def _step_kind(step: Step) -> str:
    if isinstance(step, Advance):
        return "advance"
    if isinstance(step, AdvanceToNext):
        return "advance to the next deadline"
    if isinstance(step, Drain):
        return "drain"
    return "trigger"


@dataclass
class Result:
    seed: int
    bounds: Profile
    runs: int = 0  # timelines run before the first mismatch (all of them if none)
    mismatch: Optional[Run] = None  # the shrunk timeline
    undecided: Optional[str] = None
    undecided_run: Optional[Run] = None
    seconds: float = 0.0
    coverage: Coverage = field(default_factory=Coverage)
    events: List[str] = field(default_factory=list)  # QEMU's, every run, in order


def search(subject: Subject, bounds: Profile, seed_value: int,
           progress: Callable[[int], None] = lambda _: None) -> Result:
    """Run up to bounds.runs generated timelines; shrink the first mismatch."""
    result = Result(seed_value, bounds)
    start = time.perf_counter()
    failing: List[Run] = []

    @search_settings(bounds.runs, bounds.steps)
    @seed(seed_value)
    @given(timelines(subject, bounds.steps))
    def check(timeline: List[Step]) -> None:
        run = run_timeline(subject, timeline)
        if not failing:
            result.runs += 1
            result.coverage.add(run, subject.policy.rate("BLOCK_IO_ERROR"))
            result.events += [f"run {result.runs}: {line}" for line in run.events()]
            progress(result.runs)
        if run.undecided is not None:
            result.undecided_run = run
            raise HarnessFailure(run.undecided)
        if run.mismatch is not None:
            failing.append(run)
            raise _Mismatch()

    try:
        check()
    except _Mismatch:
        result.mismatch = failing[-1]  # hypothesis replays the shrunk timeline last
    except HarnessFailure as undecided:
        result.undecided = str(undecided)
    except errors.Flaky:
        result.undecided = "QEMU did not disagree again when the timeline was replayed"
        result.undecided_run = failing[0] if failing else None
    result.seconds = time.perf_counter() - start
    return result


# ----------------------------------------------------------------- rendering

def _name(emission: Emission, queued_at: Dict[Tuple[str, str], int], exact: bool = True) -> str:
    step = queued_at.get((emission.event, json.dumps(emission.data, sort_keys=True)))
    what = f"#{step} {emission.event}" if step else emission.event
    return f"{what} at {'' if exact else '<= '}{format_ns(emission.t)}"


def _side(side: Side, queued_at: Dict[Tuple[str, str], int],
          seen: Optional[Tuple[Seen, ...]] = None) -> str:
    exact = [s.exact for s in seen] if seen is not None else [True] * len(side.emitted)
    text = ", ".join(_name(e, queued_at, x) for e, x in zip(side.emitted, exact)) or "nothing"
    return text + ("" if side.table is None else f" (table {side.table})")


def format_run(run: Run, indent: str = "    ") -> List[str]:
    """One line per step: time, step, what QEMU, the harness and the model emitted."""
    lines = [f"{indent}#step t=virtual time: step -> events queued  | QEMU: emitted"
             "  | harness: emitted (table)  | model: emitted (table)"]
    queued_at: Dict[Tuple[str, str], int] = {}
    for number, record in enumerate(run.records, 1):
        for op in record.queued:
            if op.data is not None:  # STOP and RESUME are named by their event alone
                queued_at[(op.event, json.dumps(op.data, sort_keys=True))] = number
        when = format_ns(record.before)
        if record.after != record.before:
            when += f" -> {format_ns(record.after)}"
        line = f"{indent}#{number} t={when}: {record.step.describe()}"
        if record.queued:
            line += " -> queue " + ", ".join(
                op.describe()[len("queue "):] for op in record.queued)
        line += (f"  | QEMU: {_side(record.qemu, queued_at, record.seen)}"
                 f"  | harness: {_side(record.harness, queued_at)}"
                 f"  | model: {_side(record.model, queued_at)}")
        lines.append(line)
        sides = (record.qemu.deadlines, record.harness.deadlines, record.model.deadlines)
        if len(set(sides)) > 1:
            lines.append(f"{indent}   timers fired at: QEMU {_times(sides[0])}, harness "
                         f"{_times(sides[1])}, model {_times(sides[2])}")
        if record.note:
            lines.append(f"{indent}   note: {record.note}")
        if not record.agree:
            lines.append(f"{indent}   ^ {record.verdict()}")
    return lines


def report_lines(run: Run) -> List[str]:
    """A disagreement for people: the timeline, then how to replay it by hand."""
    return [*format_run(run),
            "  QEMU command line (the two fds are socket pairs to qthrottle, for qtest and QMP;"
            " -bios: any 64 KiB file, never run under qtest):",
            *format_command_line(run),
            "  qtest/QMP transcript (> sent to QEMU, < received):",
            *format_transcript(run)]


def format_command_line(run: Run, indent: str = "    ") -> List[str]:
    """The environment and the command, one option per line, as a shell would take it."""
    words = [f"{name}={_quote(value)}" for name, value in sorted(run.env.items())]
    words.append(_quote(run.command_line[0]) if run.command_line else "")
    for arg in run.command_line[1:]:  # an option, and its value on the same line
        if arg.startswith("-"):
            words.append(arg)
        else:
            words[-1] += " " + _quote(arg)
    return [f"{indent}{word} \\" for word in words[:-1]] + [f"{indent}{words[-1]}"]


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " {}\"[]") else arg


def _times(deadlines: Tuple[int, ...]) -> str:
    return "[" + ", ".join(format_ns(t) for t in deadlines) + "]"


def format_transcript(run: Run, indent: str = "    ") -> List[str]:
    """The qtest and QMP lines of each step, in order; repeated lines folded ("x256").

    qtest commands are pipelined: a group of commands is followed by their replies.
    """
    spans = [(0, run.records[0].transcript[0] if run.records else len(run.transcript),
              "start (qom-list: where the pc machine's RTC is)")]
    spans += [(*record.transcript, f"#{number}") for number, record in enumerate(run.records, 1)]
    lines: List[str] = []
    for start, end, title in spans:
        lines.append(f"{indent}{title}:")
        entries = run.transcript[start:end]
        index = 0
        while index < len(entries):
            same = index
            while same + 1 < len(entries) and entries[same + 1] == entries[index]:
                same += 1
            channel, text = entries[index]
            if channel.endswith("<") and len(text) > _LONGEST_REPLY:  # qom-list's answer
                text = f"{text[:_LONGEST_REPLY]} ... ({len(text)} characters)"
            times = f"   (x{same - index + 1})" if same > index else ""
            lines.append(f"{indent}  {channel} {text}{times}")
            index = same + 1
    return lines
