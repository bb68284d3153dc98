"""The seeded bugs: each overrides one method of the real reference (see __init__.py).

CrossHair finds a method by qualname only in its class's own __dict__, so a bug
whose broken method is not the one whose contract catches it binds that method
again (``_queue = ThrottleModel._queue``).
"""
# mypy does not map qthrottle.model to model/ (the package-dir mapping), so it
# sees the base classes as Any: hence the ignores on the class lines.

from __future__ import annotations

from qthrottle.model.throttle import Key, ThrottleModel, Window
from qthrottle.model.timeline import Emission, EventData, Queue


class WindowPerEvent(ThrottleModel):
    def key(self, event: str, data: EventData) -> Key:
        return (event,)

    _queue = ThrottleModel._queue


class StopThrottled(ThrottleModel):
    def throttled(self, op: Queue) -> bool:
        throttled: bool = self.policy.throttled(op.event)
        return throttled

    _queue = ThrottleModel._queue


class ExpiryForgetsPending(ThrottleModel):
    def _fire_next(self) -> list[Emission]:
        self._next_timer()[1].pending = None
        emitted: list[Emission] = super()._fire_next()
        return emitted


class IdleWindowStaysOpen(ThrottleModel):
    def _fire_next(self) -> list[Emission]:
        key, window = self._next_timer()
        idle = window.pending is None
        emitted: list[Emission] = super()._fire_next()
        if idle:  # re-armed instead of closed
            self.windows[key] = Window(self.now + self.policy.rate(key[0]), None, window.armed)
        return emitted


MODELS = (WindowPerEvent, StopThrottled, ExpiryForgetsPending, IdleWindowStaysOpen)
