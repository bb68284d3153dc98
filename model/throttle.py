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

Contracts (PEP 316, in the docstrings) state the invariants that the state and
each transition keep, by calling model/invariants.py: the state invariant is a
pre- and postcondition of each transition (the queue function, the clock
advance, the timer expiry), and each transition has a postcondition of its own.
CrossHair checks each of them, with the model built in the tiny world of
model/bounded.py (qthrottle selfcheck). They cost nothing at run time: docstrings
are not executed. A condition is one line (PEP 316), however long.
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

from qthrottle.model import invariants
from qthrottle.model.invariants import TraceStep, is_stop_event
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog
from qthrottle.model.timeline import Advance, AdvanceToNext, Emission, EventData, Operation, Queue

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
        return (f"{type(self).__name__}({self.policy!r}{catalog}, now={self.now!r}, "
                f"windows={self.windows!r})")

    def __copy__(self) -> ThrottleModel:
        """A snapshot of the state: CrossHair takes a contract's __old__ from a copy."""
        snapshot = object.__new__(type(self))
        snapshot.__dict__.update(self.__dict__, windows={
            key: Window(w.deadline, w.pending, w.armed) for key, w in self.windows.items()})
        return snapshot

    @property
    def table_size(self) -> int:
        return len(self.windows)

    @property
    def next_deadline(self) -> Optional[int]:
        return min((w.deadline for w in self.windows.values()), default=None)

    # The model's key function. Its table is a dict over these keys (tuples), whose
    # equality and hash obey invariants 1 and 2 by construction.
    def key(self, event: str, data: EventData) -> Key:
        key: Key = self.policy.key(event, data)
        return key

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
        """qapi_event_emit.

        pre: _sound(self)
        post[self]: _sound(self)  # invariants 3, 4, 5
        post: invariants.queue_sound(op, self.now, __return__, self.policy, _window(__old__.self, op) is not None, _held(self, op)) == []  # invariants 4, 5, 6
        """
        if self.catalog is not None:
            self.catalog.event(op.event)  # KeyError naming close matches
        if not self.throttled(op):
            return [Emission(self.now, op.event, op.data)]
        key = self.key(op.event, op.data)
        window = self.windows.get(key)
        if window is not None:
            window.pending = op
            return []
        self.windows[key] = Window(self.now + self.policy.rate(op.event), None,
                                   self._next_armed())
        return [Emission(self.now, op.event, op.data)]

    def _advance_to(self, target: int) -> list[Emission]:
        """Move the clock to target, firing the timers due by then in order.

        pre: target >= self.now and _sound(self)
        post[self]: _sound(self)  # invariants 3, 4, 5
        post: invariants.advance_sound(invariants.held_back(__old__.self.windows), target, __return__) == []  # invariants 4, 5, 6
        """
        emitted: list[Emission] = []
        while self.windows and min(w.deadline for w in self.windows.values()) <= target:
            emitted += self._fire_next()
        self.now = max(self.now, target)
        return emitted

    def _next_timer(self) -> tuple[Key, Window]:
        """The window whose timer fires next: deadline order, then arming order."""
        return min(self.windows.items(), key=lambda kw: (kw[1].deadline, kw[1].armed))

    def _fire_next(self) -> list[Emission]:
        """The clock reaches the next deadline and that window's timer callback runs.

        pre: self.windows and _sound(self, due=True)
        post[self]: _sound(self, due=True)  # invariants 3, 4, 5
        post: _expiry_sound(__old__.self, self, __return__)  # invariants 3, 5
        """
        key, window = self._next_timer()
        self.now = max(self.now, window.deadline)
        pending = window.pending
        if pending is None:
            del self.windows[key]
            return []
        window.pending = None
        window.deadline = self.now + self.policy.rate(pending.event)
        window.armed = self._next_armed()
        return [Emission(self.now, pending.event, pending.data)]


# What the contracts read of a model, judged by its policy (what it implements),
# never by the model's own key function.

def _sound(model: ThrottleModel, due: bool = False) -> bool:
    """The state invariant (invariants 3, 4, 5); due: inside a clock advance."""
    return not invariants.windows_sound(model.now, model.windows, model.policy, due)


def _window(model: ThrottleModel, op: Queue) -> Optional[Window]:
    """The open window of op's key, if any."""
    return model.windows.get(model.policy.key(op.event, op.data))


def _held(model: ThrottleModel, op: Queue) -> Optional[Queue]:
    window = _window(model, op)
    return None if window is None else window.pending


def _expiry_sound(before: ThrottleModel, after: ThrottleModel,
                  emitted: Sequence[Emission]) -> bool:
    """Invariants 3 and 5 for the timer that fired: the next one in before."""
    key, window = before._next_timer()
    return not invariants.expiry_sound(window.pending, after.now, after.policy.rate(key[0]),
                                       emitted, after.windows.get(key))
