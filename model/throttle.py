"""The reference throttle: QEMU's semantics as an executable model.

Per key (event name plus the values of its key members) a window is open or
not. Queueing an unthrottled event emits it. A throttled event with no open
window is emitted and opens one until now + rate; with a window open it
becomes the window's pending event, dropping any earlier pending one. At the
deadline a pending event is emitted and the window re-armed for another
rate; with nothing pending the window closes (the C frees its record). So a
burst keeps a window open for up to two intervals.

Timers fire in deadline order, equal deadlines in the order they were armed,
with the clock set to each deadline: as the harness's virtual clock does.

The model applies the suite's requirement rather than any implementation's
choice: a stop event (invariants.is_stop_event) is never throttled.
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from qthrottle.model.invariants import TraceStep, is_stop_event
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, Operation, Queue

Key = tuple[Any, ...]


@dataclass
class Window:
    """An open throttle window: the C's live state record and its armed timer."""

    deadline: int
    pending: Optional[Queue] = None
    armed: int = 0  # arming order, to break ties between equal deadlines


class ThrottleModel:
    def __init__(self, policy: Policy, catalog: Optional[Catalog] = None, *, now: int = 0,
                 windows: Optional[dict[Key, Window]] = None) -> None:
        self.policy = policy
        self.catalog = catalog
        self.now = now
        self.windows: dict[Key, Window] = dict(windows or {})

    def __repr__(self) -> str:
        catalog = "" if self.catalog is None else f", catalog={self.catalog!r}"
        return (f"ThrottleModel({self.policy!r}{catalog}, now={self.now!r}, "
                f"windows={self.windows!r})")

    @property
    def table_size(self) -> int:
        return len(self.windows)

    @property
    def next_deadline(self) -> Optional[int]:
        return min((w.deadline for w in self.windows.values()), default=None)

    def throttled(self, op: Queue) -> bool:
        return self.policy.throttled(op.event) and not is_stop_event(op.event, op.data)

    def apply(self, op: Operation) -> list[Emission]:
        """Apply one timeline operation; the emissions it causes, in order."""
        if isinstance(op, Queue):
            return self._queue(op)
        if isinstance(op, Advance):
            if op.ns < 0:
                raise ValueError(f"cannot advance the clock by {op.ns} ns")
            return self._advance_to(self.now + op.ns)
        if isinstance(op, AdvanceToNext):
            deadline = self.next_deadline
            return self._advance_to(self.now if deadline is None else deadline)
        raise TypeError(f"not a timeline operation: {op!r}")

    def step(self, op: Operation) -> TraceStep:
        before = self.now
        emitted = tuple(self.apply(op))
        return TraceStep(op, before, self.now, emitted, self.table_size)

    def run(self, ops: Sequence[Operation]) -> list[TraceStep]:
        return [self.step(op) for op in ops]

    def _next_armed(self) -> int:
        return max((w.armed for w in self.windows.values()), default=0) + 1

    def _queue(self, op: Queue) -> list[Emission]:
        if self.catalog is not None:
            self.catalog.event(op.event)  # KeyError naming close matches
        if not self.throttled(op):
            return [Emission(self.now, op.event, op.data)]
        key = self.policy.key(op.event, op.data)
        window = self.windows.get(key)
        if window is not None:
            window.pending = op
            return []
        self.windows[key] = Window(self.now + self.policy.rate(op.event), None,
                                   self._next_armed())
        return [Emission(self.now, op.event, op.data)]

    def _advance_to(self, target: int) -> list[Emission]:
        emitted: list[Emission] = []
        while self.windows:
            key, window = min(self.windows.items(), key=lambda kw: (kw[1].deadline, kw[1].armed))
            if window.deadline > target:
                break
            self.now = max(self.now, window.deadline)
            pending = window.pending
            if pending is None:
                del self.windows[key]
                continue
            emitted.append(Emission(self.now, pending.event, pending.data))
            window.pending = None
            window.deadline = self.now + self.policy.rate(pending.event)
            window.armed = self._next_armed()
        self.now = max(self.now, target)
        return emitted
