"""Seeded bugs: a deliberately broken reference, to show that CrossHair can fail.

Each bug subclasses the real model (model/throttle.py's ThrottleModel) and
overrides one method (bugs.py); it names the invariant it breaks and the
contracts that must find a counterexample (CrossHair qualnames of
ThrottleModel methods). ``qthrottle selfcheck`` fails unless CrossHair catches
every one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

PACKAGE = "qthrottle.engines.seeded.bugs"


@dataclass(frozen=True)
class SeededBug:
    name: str
    invariant: int  # the invariant (model/invariants.py) it breaks
    what: str
    targets: Tuple[str, ...]  # qualnames under PACKAGE whose contracts must catch it


SEEDED = (
    SeededBug("key-ignores-member", 5,
              "the key function ignores the key member (one window per event name), so the "
              "model no longer finds its policy's windows", ("WindowPerEvent._queue",)),
    SeededBug("stop-throttled", 4,
              "a BLOCK_IO_ERROR with action=stop is throttled like any other (2155d2dd)",
              ("StopThrottled._queue",)),
    SeededBug("expiry-forgets-pending", 5,
              "the timer expiry forgets the held-back event and closes the window",
              ("ExpiryForgetsPending._fire_next",)),
    SeededBug("idle-window-stays-open", 3,
              "the timer expiry re-arms an idle window instead of closing it",
              ("IdleWindowStaysOpen._fire_next",)),
)
