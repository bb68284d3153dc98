"""A counterexample as a picture, in plain data: what qthrottle/review/html.py draws.

The adapters of qthrottle/review/views.py build it from a replayed counterexample
(the C against the reference model) or from a dynamic diff's divergence (OLD
against NEW); a reviewed patch series is a page with one section per patch. Nothing
here knows the throttle: lanes, marks and windows were decided by the adapters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

# Mark kinds
QUEUED = "queued"  # an operation queued the event (on the lane's top row)
COMPARED = "compared"  # a record the hash and equality callbacks were called on
EMITTED = "emitted"  # a side sent the event to the QMP monitors
HELD = "held"  # a side had not emitted it when the timeline ended
DROPPED = "dropped"  # a side will never emit it (replaced by a newer event, or a crash)

# Highlight kinds
VIOLATION = "violation"  # an invariant broke at this step
DIVERGENCE = "divergence"  # the two sides part ways at this step


@dataclass(frozen=True)
class Lane:
    """One throttle key (event name and key members), or the unthrottled events."""

    title: str  # "BLOCK_IO_ERROR", or "unthrottled events"
    key: str  # "qom-path = /machine/peripheral/disk0", "one key per event name", ""
    detail: str  # "rate 1 s", "emitted at once"


@dataclass(frozen=True)
class Mark:
    """One event on one row of a lane."""

    kind: str  # QUEUED, COMPARED, EMITTED, HELD or DROPPED
    lane: int
    step: int  # the step (1-based) during which it happened
    t: int  # virtual time, ns
    side: Optional[int]  # EMITTED, HELD, DROPPED: 0 or 1 (Timeline.sides); else None
    label: str  # what is printed on it: the number of the step that queued it, "a", "?"
    tag: str  # a few characters that tell the lane's events apart ("stop")
    text: str  # the text alternative: what happened to this event, in words
    qmp: str  # the event as QMP JSON


@dataclass(frozen=True)
class Window:
    """A key's throttle window: open from an emission to its deadline."""

    lane: int
    side: Optional[int]  # the row it belongs to; None: the whole lane
    start: int  # ns
    end: int  # the deadline, ns
    step: int  # the step during which it opened (or was re-armed)
    text: str


@dataclass(frozen=True)
class Step:
    """One operation of the timeline, as the table under the picture lists it."""

    number: int
    before: int  # virtual time before the step, ns
    after: int  # and after it (an advance moves it)
    operation: str  # "queue BLOCK_IO_ERROR {...}", "advance 1 s"
    kind: str  # "queue", "advance" or "compare"
    cells: Tuple[str, str]  # per side: what it emitted and its table size
    tables: Tuple[Optional[int], Optional[int]]  # per side: table size after it, if known
    note: str = ""  # what the engine said at this step


@dataclass(frozen=True)
class Highlight:
    step: int
    kind: str  # VIOLATION or DIVERGENCE
    title: str  # "invariant 4 broken", "the C and the model part ways"
    text: str  # the details, in words


@dataclass(frozen=True)
class Timeline:
    """The picture: lanes over virtual time, two sides, what each side emitted."""

    sides: Tuple[str, str]  # ("C", "model") or ("old", "new")
    side_notes: Tuple[str, str]  # what each side is, for the legend
    window_note: str  # where the windows come from, for the legend
    lanes: Tuple[Lane, ...]
    marks: Tuple[Mark, ...]
    windows: Tuple[Window, ...]
    steps: Tuple[Step, ...]
    highlights: Tuple[Highlight, ...]
    unit: int  # the duration the time axis is scaled to (the largest rate), ns
    story: Tuple[str, ...]  # what happens at the highlighted steps, in words
    silent_from: Tuple[Optional[int], Optional[int]] = (None, None)  # per side: the
    # step after which that side is no longer shown (the model stopped predicting the C)


@dataclass(frozen=True)
class Block:
    """Text shown as it is, under the picture: a sanitizer report, a replay, a pytest."""

    title: str
    text: str


@dataclass(frozen=True)
class Section:
    """One counterexample, or one version pair of a diff."""

    anchor: str  # the fragment that links to it
    title: str
    headline: str  # the finding, in one sentence
    facts: Tuple[str, ...]  # lines under the headline
    timeline: Optional[Timeline]
    blocks: Tuple[Block, ...] = ()


@dataclass(frozen=True)
class Page:
    title: str
    facts: Tuple[str, ...]  # the command, the target, the seed, the bounds
    table: Tuple[Tuple[str, ...], ...]  # a header row, then one row per invariant
    sections: Tuple[Section, ...]
    verdict: str  # the exit code and what it means
