"""One counterexample format for every engine: a timeline, replayed on the C and the model.

A counterexample is a timeline (queue an event, step the virtual clock, or call
the hash and equality callbacks on records), the invariant it breaks and the
engine that found it. A z3 counterexample (concrete events) becomes a timeline
here, the queue-based ones as proofs/replay.py builds them; a stateful one is
a timeline already. Either is replayed by the stateful engine's own step (the
sanitized C driver and the reference model side by side, model/invariants.py
checked after every step), rendered as one table followed by the sanitizer
report and the QMP events, and written as a standalone pytest file that
replays it the same way on any target.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from qthrottle.engines import stateful
from qthrottle.engines.stateful import CompareKeys, Step, StepRecord, Subject, Violation
from qthrottle.harness.driver import Crash, HarnessFailure
from qthrottle.harness.target import resolve
from qthrottle.model.ghash import Record
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.timeline import EventData, Queue
from qthrottle.proofs.engine import ProofResult
from qthrottle.proofs.replay import removal_timeline, stop_timeline
from qthrottle.proofs.solve import FALSIFIED
from qthrottle.review.target_policy import open_subject

Timeline = Tuple[Step, ...]
CRASH_INVARIANTS = frozenset({7, 8})  # a crash of the C counts, whatever invariant is replayed

# A proof's counterexample as a timeline, by proof (ProofResult.replay_kind). The
# callback laws call the callbacks directly, as GLib would; the others queue events.
PROOF_TIMELINES: Dict[str, Callable[[Dict[str, Record]], Sequence[Step]]] = {
    "reflexive": lambda e: [CompareKeys(e["a"], e["a"])],
    "symmetric": lambda e: [CompareKeys(e["a"], e["b"])],
    "transitive": lambda e: [CompareKeys(e["a"], e["b"], e["c"])],
    "hash consistent": lambda e: [CompareKeys(e["a"], e["b"])],
    "removal": removal_timeline,
    "stop never throttled": stop_timeline,
    # Invariant 7: the event reaches the hash (a lookup) or the queue function's reads
    # when queued; the equality is called directly, the hashes need not collide in C.
    "totality:hash": lambda e: [Queue(*e["a"])],
    "totality:equal": lambda e: [CompareKeys(e["stored"], e["key"])],
    "totality:queue": lambda e: [Queue(*e["event"])],
}


@dataclass(frozen=True)
class Counterexample:
    """A timeline that breaks one invariant, and which engine found it."""

    invariant: int
    message: str
    timeline: Timeline
    engine: str  # "z3" or "stateful"
    law: str = ""  # the z3 proof (reflexive, removal, totality:hash, ...)
    evidence: Tuple[str, ...] = ()  # what the engine saw besides the timeline


def from_proof(result: ProofResult) -> Optional[Counterexample]:
    """A falsified proof's timeline (a run law's own, or one built from its concrete
    events); None if it has none."""
    build = PROOF_TIMELINES.get(result.replay_kind)
    if result.status != FALSIFIED:
        return None
    evidence = (*(f"z3: {fact}" for fact in result.facts),
                *(f"also: {finding}" for finding in result.findings[1:]))
    if result.timeline:
        return Counterexample(result.invariant, result.reason, tuple(result.timeline), "z3",
                              f"{result.replay_kind}, {result.bound}", evidence)
    if not result.events or build is None:
        return None
    return Counterexample(result.invariant, result.reason, tuple(build(result.events)), "z3",
                          result.replay_kind, evidence)


def from_search(example: stateful.Counterexample) -> Counterexample:
    return Counterexample(example.invariant, example.message, tuple(example.operations),
                          "stateful")


@dataclass
class Replay:
    """What one timeline did on the C and the model, checked for one invariant."""

    invariant: int
    records: List[StepRecord]
    violation: Optional[Violation]
    crash: Optional[Crash]
    undecided: Optional[str] = None  # the harness could not decide (timeout, driver died)

    @property
    def holds(self) -> bool:
        """Neither the invariant nor a crash of the C broke, and the harness decided."""
        return self.violation is None and self.undecided is None

    @property
    def confirmed(self) -> bool:
        """The C broke the invariant replayed (not only something else first)."""
        return self.violation is not None and self.violation.invariant == self.invariant

    @property
    def timeline(self) -> Timeline:
        """The steps replayed: the whole timeline, or up to its violation."""
        steps: Timeline = tuple(record.operation for record in self.records)
        return steps

    def table(self, indent: str = "    ") -> List[str]:
        """step, virtual time, operation, C and model emissions and table sizes."""
        example = stateful.Counterexample(self.invariant, "", self.records, self.crash)
        lines = [f"{indent}#step t=virtual time: operation  | C: emitted (table size)"
                 "  | model: emitted (table size)"]
        lines += stateful.format_timeline(example, indent)
        if self.undecided:
            lines.append(f"{indent}UNKNOWN: the harness could not decide: {self.undecided}")
        return lines

    def report(self) -> List[str]:
        """The table, then the sanitizer or shim report if the C crashed."""
        lines = self.table()
        if self.crash is not None:
            lines.append("    sanitizer / shim report:")
            lines += ["      " + line for line in sanitizer_text(self.crash)]
        return lines


def sanitizer_text(crash: Crash) -> List[str]:
    """The report up to its SUMMARY line: the shadow-byte dump after it says nothing more."""
    lines: List[str] = crash.report.strip().splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("SUMMARY: ")), None)
    return lines if end is None else lines[:end + 1]


def replay(subject: Subject, invariant: int, timeline: Sequence[Step]) -> Replay:
    """Replay @timeline on the subject's C and a fresh model; check @invariant and crashes.

    The other invariants are set aside, as the stateful engine sets aside those
    it has already reported: the run goes on past them.
    """
    ignored = frozenset(INVARIANTS) - {invariant} - CRASH_INVARIANTS
    try:
        violation, judge = stateful.replay(subject, ignored, list(timeline))
    except HarnessFailure as failure:
        return Replay(invariant, [], None, None, undecided=str(failure))
    return Replay(invariant, judge.records, violation, judge.crash)


def replay_target(spec: str, invariant: int, timeline: Sequence[Step],
                  qapi_dir: Optional[str] = None) -> Replay:
    """Build a target's sanitized driver and replay one timeline on it (reproducers call this)."""
    with open_subject(resolve(spec, Path(qapi_dir) if qapi_dir else None)) as subject:
        return replay(subject, invariant, timeline)


# ------------------------------------------------------------------ QMP events

def qmp_message(event: str, data: EventData, ns: int) -> Dict[str, Any]:
    """An event as a QMP client reads it; the timestamp is the harness's virtual time."""
    message: Dict[str, Any] = {"event": event}
    if data is not None:
        message["data"] = data
    message["timestamp"] = {"seconds": ns // 1_000_000_000,
                            "microseconds": ns % 1_000_000_000 // 1_000}
    return message


@dataclass
class QmpEvents:
    compared: List[Dict[str, Any]] = field(default_factory=list)  # hash/equal called directly
    queued: List[Dict[str, Any]] = field(default_factory=list)
    emitted: List[Dict[str, Any]] = field(default_factory=list)  # by the C


def qmp_events(records: Sequence[StepRecord]) -> QmpEvents:
    events = QmpEvents()
    for record in records:
        op = record.operation
        if isinstance(op, CompareKeys):
            events.compared += [qmp_message(key[0], key[1], record.before)
                                for key in (op.a, op.b, op.c) if key is not None]
        if isinstance(op, Queue):
            events.queued.append(qmp_message(op.event, op.data, record.before))
        events.emitted += [qmp_message(e.event, e.data, e.t) for e in record.c_emitted]
    return events


# -------------------------------------------------------------------- rendering

def headline(counterexample: Counterexample) -> str:
    law = f", {counterexample.law}" if counterexample.law else ""
    return (f"invariant {counterexample.invariant} FALSIFIED by {counterexample.engine}{law}: "
            f"{counterexample.message}")


def replay_verdict(replayed: Replay) -> str:
    """What the replay on the C says of the counterexample."""
    if replayed.confirmed:
        return "the C breaks it"
    if replayed.undecided:
        return "UNKNOWN, the harness could not decide"
    if replayed.violation is not None:
        return f"the C breaks invariant {replayed.violation.invariant} first"
    return "NOT reproduced by the C"


def render(counterexample: Counterexample, replayed: Replay,
           reproducer: Optional[Path] = None,
           no_reproducer: str = "none (the replay does not break the invariant)") -> List[str]:
    """The whole counterexample for people: engine, table, sanitizer report, QMP, pytest
    (@reproducer: where it is written; else @no_reproducer says why there is none)."""
    lines = [f"  {headline(counterexample)}"]
    lines += [f"    {line}" for line in counterexample.evidence]
    lines.append("    replayed against the sanitized C and the reference model "
                 f"({replay_verdict(replayed)}):")
    lines += replayed.report()
    events = qmp_events(replayed.records)
    lines.append("    QMP events (JSON; timestamps in virtual time):")
    if events.compared:
        lines.append("      compared (a, b[, c] in order: the hash and equality callbacks called on them):")
        lines += [f"        {json.dumps(message)}" for message in events.compared]
    for title, messages in (("queued", events.queued), ("emitted by the C", events.emitted)):
        lines.append(f"      {title}:" + ("" if messages else " none"))
        lines += [f"        {json.dumps(message)}" for message in messages]
    if reproducer is not None:
        lines.append(f"    reproducer: {reproducer} (run: pytest {reproducer}; "
                     "QTHROTTLE_TARGET=... replays it on another target)")
    else:
        lines.append(f"    reproducer: {no_reproducer}")
    return lines


# ------------------------------------------------------------------- reproducer

def version() -> str:
    try:
        return metadata.version("qthrottle")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def reproducer_name(target_name: str, invariant: int) -> str:
    base = Path(target_name.rstrip("/")).name
    base = base[:-2] if base.endswith(".c") else base
    slug = re.sub(r"[^0-9A-Za-z]+", "_", base).strip("_").lower() or "target"
    return f"test_{slug}_invariant_{invariant}.py"


def _docstring(text: str) -> str:
    """@text made safe inside a triple-quoted docstring."""
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def reproducer_source(counterexample: Counterexample, timeline: Timeline, target_name: str,
                      target_spec: str, qapi_dir: Optional[str], seed_value: int,
                      file_name: str) -> str:
    """A standalone pytest file: the timeline as data, replayed with the installed qthrottle.

    @target_spec is what resolve() takes (a case-study name or an absolute path).
    """
    number = counterexample.invariant
    law = f" ({counterexample.law})" if counterexample.law else ""
    used = {type(step).__name__ for step in timeline}
    timeline_names = [n for n in ("Advance", "AdvanceToNext", "Queue") if n in used]
    imports = ["import os", "", "import pytest", "",
               "from qthrottle.review.counterexample import replay_target"]
    if timeline_names:
        imports.append(f"from qthrottle.model.timeline import {', '.join(timeline_names)}")
    if "CompareKeys" in used:
        imports.append("from qthrottle.engines.stateful import CompareKeys")
    steps = "".join(f"    {step!r},\n" for step in timeline)
    return f'''"""qthrottle {version()} explore {_docstring(target_name)}: invariant {number}, \
engine {counterexample.engine}{law}, seed {seed_value}.

Invariant {number}: {INVARIANTS[number]}.
Replays TIMELINE against the sanitized C driver of $QTHROTTLE_TARGET (a case-study
name, a QEMU tree or a monitor.c; default: the target it was found on) and against
the reference model, with the stateful engine's step checks (model/invariants.py),
and asserts that invariant {number} holds and that the C does not crash. It fails on
the target it was found on and passes once the bug is fixed:
    pytest {file_name}
    QTHROTTLE_TARGET=path/to/fixed/qemu pytest {file_name}
"""
from __future__ import annotations

{chr(10).join(imports)}

FOUND_ON, FOUND_QAPI_DIR = {target_spec!r}, {qapi_dir!r}
TARGET = os.environ.get("QTHROTTLE_TARGET", FOUND_ON)
# Another target brings its own schema (its qapi/) unless QTHROTTLE_QAPI_DIR says otherwise.
QAPI_DIR = os.environ.get("QTHROTTLE_QAPI_DIR", FOUND_QAPI_DIR if TARGET == FOUND_ON else None)
INVARIANT = {number}
TIMELINE = [
{steps}]


def test_invariant_{number}_holds() -> None:
    replayed = replay_target(TARGET, INVARIANT, TIMELINE, QAPI_DIR)
    if not replayed.holds:
        pytest.fail("\\n".join([f"target {{TARGET}}:", *replayed.report()]), pytrace=False)
'''


def write_reproducer(directory: Path, counterexample: Counterexample, replayed: Replay,
                     target_name: str, target_spec: str, qapi_dir: Optional[str],
                     seed_value: int) -> Path:
    """Write the pytest file for a confirmed counterexample; its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / reproducer_name(target_name, counterexample.invariant)
    path.write_text(reproducer_source(counterexample, replayed.timeline, target_name,
                                      target_spec, qapi_dir, seed_value, path.name))
    return path
