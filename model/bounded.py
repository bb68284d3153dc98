"""The tiny world in which CrossHair checks the reference (qthrottle selfcheck).

CrossHair runs a function on symbolic inputs and reports a condition
"confirmed over all paths" only when it has explored every execution path, so
its inputs must have finitely many paths. The bounds (BOUNDS, printed with
every selfcheck result):

* policy: VSERPORT_CHANGE throttled per ``id`` (1 s), BLOCK_IO_ERROR per
  ``qom-path`` (2 s, action=stop exempt), everything else unthrottled;
* events (TinyEvent): VSERPORT_CHANGE of port vs0 (open or closed) or vs1,
  BLOCK_IO_ERROR of one disk with action report or stop, and STOP;
* states: the clock and at most one open window, of port vs0 or of the disk,
  holding back nothing or one event of its key; every clock value, deadline
  and clock step is a symbolic integer (unbounded).

The conditions checked in it are the contracts of model/throttle.py
(ThrottleModel's state invariant and its queue, clock-advance and timer-expiry
postconditions): CrossHair analyses those methods directly, building each
``self`` and each Queue argument with the creators that ``register_tiny_world``
registers (the plugin model/crosshair_plugin.py runs it). A transition proved
over all paths keeps its postconditions from every sound tiny state; the state
invariant being one of them, that is an induction step, valid for every reachable
state that stays within the tiny world. Invariants 1 and 2 have no condition: the
model's keys are tuples (policy.key), whose equality and hash obey the laws by
construction, so a check of them could not fail.

CrossHair checks a contract only when it analyses that function: on a call
from another function it assumes the postcondition instead (a failure there
makes it drop the path). So every contract is analysed on its own.

Measured (CrossHair 0.0.113, this 2-core machine, shared): every condition is
proved over all paths in 1 to 7 s CPU (transitions 24 to 114 paths). States with two open windows (one per key) are proved as well,
in 35 to 172 s CPU per transition: too slow to be the default. Whole timelines
are not checked here: rate_respected on two events with a symbolic gap took 162
paths and 33 s CPU. The trace invariants are checked on the model's traces by
tests/test_model.py and on the C's by the stateful engine.
"""
# Optional/Type stay (not "X | None"): CrossHair evaluates these annotations with
# typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Set, Type

from qthrottle.model.policy import Policy
from qthrottle.model.throttle import ThrottleModel, Window
from qthrottle.model.timeline import Queue

SECOND = 1_000_000_000
TINY_POLICY = Policy(rates={"VSERPORT_CHANGE": SECOND, "BLOCK_IO_ERROR": 2 * SECOND},
                     keys={"VSERPORT_CHANGE": ("id",), "BLOCK_IO_ERROR": ("qom-path",)})
DISK = "/machine/peripheral/disk0"

BOUNDS = ("tiny world: VSERPORT_CHANGE per id (1 s), BLOCK_IO_ERROR per qom-path (2 s, "
          "stop exempt), STOP unthrottled; 6 events (ports vs0/vs1, one disk); states with "
          "at most one open window; times symbolic (unbounded)")


class TinyEvent(enum.Enum):
    """The tiny world's events; CrossHair tries every member for an argument."""

    PORT0_OPEN = Queue("VSERPORT_CHANGE", {"id": "vs0", "open": True})
    PORT0_CLOSED = Queue("VSERPORT_CHANGE", {"id": "vs0", "open": False})
    PORT1_OPEN = Queue("VSERPORT_CHANGE", {"id": "vs1", "open": True})
    DISK_REPORT = Queue("BLOCK_IO_ERROR", {"qom-path": DISK, "action": "report"})
    DISK_STOP = Queue("BLOCK_IO_ERROR", {"qom-path": DISK, "action": "stop"})
    STOP = Queue("STOP")

    @property
    def queue(self) -> Queue:
        value: Queue = self.value
        return value


class TinyKey(enum.Enum):
    """The keys whose window a tiny state may hold open, each with its two events."""

    PORT0 = (TinyEvent.PORT0_OPEN, TinyEvent.PORT0_CLOSED)
    DISK = (TinyEvent.DISK_REPORT, TinyEvent.DISK_STOP)


class Held(enum.Enum):
    """What an open window holds back: nothing, or one of its key's two events."""

    NOTHING = None
    FIRST = 0
    SECOND = 1


@dataclass(frozen=True)
class TinyWindow:
    """The open window of a tiny state."""

    key: TinyKey
    deadline: int
    held: Held

    def build(self) -> Window:
        held = None if self.held.value is None else self.key.value[self.held.value].queue
        return Window(self.deadline, held, armed=1)


def tiny_model(model: Type[ThrottleModel], now: int,
               window: Optional[TinyWindow]) -> ThrottleModel:
    """A reference in a tiny state; the state invariant (a precondition) prunes unsound ones."""
    if window is None:
        return model(TINY_POLICY, now=now, windows={})
    first = window.key.value[0].queue
    windows = {TINY_POLICY.key(first.event, first.data): window.build()}
    return model(TINY_POLICY, now=now, windows=windows)


# ---------------------------------------------------- CrossHair's creators

_REGISTERED: Set[type] = set()


def register_tiny_world(*models: Type[ThrottleModel]) -> None:
    """Make CrossHair build every Queue, and every ThrottleModel (or one of models), in
    the tiny world. Only for a CrossHair process (its plugins run this)."""
    from crosshair import register_type

    creators: list[tuple[type, Callable[[Any], object]]] = [(Queue, _tiny_queue)]
    every: List[Type[ThrottleModel]] = [ThrottleModel, *models]
    creators += [(model, _tiny_model_creator(model)) for model in every]
    for typ, creator in creators:
        if typ not in _REGISTERED:
            register_type(typ, creator)
            _REGISTERED.add(typ)


def _tiny_queue(factory: Any) -> Queue:
    event: TinyEvent = factory(TinyEvent, "_event")
    return event.queue


def _tiny_model_creator(model: Type[ThrottleModel]) -> Callable[[Any], ThrottleModel]:
    def create(factory: Any) -> ThrottleModel:
        return tiny_model(model, factory(int, "_now"), factory(Optional[TinyWindow], "_window"))
    return create
