"""The vocabulary every engine shares: timeline operations and emissions.

A counterexample is a list of operations (queue an event, step the virtual
clock); the C driver and the model both consume it and both answer with
emissions. The reprs are valid Python so a failing timeline can be pasted
into a test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

EventData = Optional[Dict[str, Any]]


def format_ns(ns: int) -> str:
    """Virtual time for people, exactly: 1.5 s, 250 ms, 12 ns, 1 s - 1 ns, 1 s + 1 ns.

    The clock steps around a window's end (rate - 1, rate + 1) are the interesting
    ones, so a time is never rounded: it is the nearest value with at most three
    decimals in the largest unit, plus or minus the exact rest.
    """
    if ns < 0:
        return f"-{format_ns(-ns)}"
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        step = scale // 1000
        near = (ns + step // 2) // step * step
        if near >= scale:
            whole, fraction = divmod(near, scale)
            decimals = f"{fraction // step:03d}".rstrip("0")
            head = f"{whole}.{decimals} {unit}" if decimals else f"{whole} {unit}"
            rest = ns - near
            if rest == 0:
                return head
            return f"{head} {'+' if rest > 0 else '-'} {format_ns(abs(rest))}"
    return f"{ns} ns"


def format_event(event: str, data: EventData) -> str:
    """BLOCK_IO_ERROR {"qom-path": "/a", "action": "stop"}, compactly."""
    return event if data is None else f"{event} {json.dumps(data, separators=(', ', ': '))}"


@dataclass(frozen=True)
class Queue:
    """qapi_event_emit(event, data)."""

    event: str
    data: EventData = None

    def describe(self) -> str:
        return "queue " + format_event(self.event, self.data)

    def to_json(self) -> Dict[str, Any]:
        command: Dict[str, Any] = {"op": "queue", "event": self.event}
        if self.data is not None:
            command["data"] = self.data
        return command


@dataclass(frozen=True)
class Advance:
    """Step the virtual clock by ns nanoseconds, firing due timers in order."""

    ns: int

    def describe(self) -> str:
        return f"advance {format_ns(self.ns)}"

    def to_json(self) -> Dict[str, Any]:
        return {"op": "advance", "ns": self.ns}


@dataclass(frozen=True)
class AdvanceToNext:
    """Step the virtual clock exactly to the next timer deadline."""

    def describe(self) -> str:
        return "advance to the next deadline"

    def to_json(self) -> Dict[str, Any]:
        return {"op": "advance_to_next"}


Operation = Union[Queue, Advance, AdvanceToNext]


@dataclass(frozen=True)
class Emission:
    """One event sent to the QMP monitors at virtual time t (ns)."""

    t: int
    event: str
    data: EventData = None

    def describe(self) -> str:
        return f"t={format_ns(self.t)}: {format_event(self.event, self.data)}"
