"""The throttle policy of one implementation: rate per event, key members per event.

A datatype only: where a policy comes from (the C, read by harness/policy_scan.py) is
another layer's business; the reference model and the invariants read it.
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

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
