"""The throttle policy of one implementation: rate per event, key members per event.

A datatype only: proofs/policy.py derives it from what the code does (the rate
table as the compiler evaluates it, the key relation from the translated hash
and equality); the review layer hands it to the reference model, the lint,
``qthrottle diff`` and the stateful engine.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from qthrottle.model.timeline import EventData

KeyValue = Any  # a member's value made hashable (None when absent)


@dataclass(frozen=True)
class Policy:
    """rates: ns per event (absent or 0: unthrottled); keys: members a throttled
    event is limited per (absent: limited per event name)."""

    rates: dict[str, int]
    keys: dict[str, tuple[str, ...]]

    def rate(self, event: str) -> int:
        return self.rates.get(event, 0)

    def throttled(self, event: str) -> bool:
        return self.rate(event) > 0

    def key(self, event: str, data: EventData) -> tuple[KeyValue, ...]:
        """The throttle key: the event and the values of its key members."""
        members = self.keys.get(event, ())
        return (event, *(_hashable(data.get(m) if data else None) for m in members))


def _hashable(value: Any) -> KeyValue:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return value
