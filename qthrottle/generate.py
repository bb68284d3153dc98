"""Schema-driven event generation for the stateful engine and the dynamic diff.

Every event of the schema can be drawn (the throttled ones first, so that
shrinking prefers them); every member of an event is drawn independently of the
others; optional members are present or absent; enum members take every value
of their enum. Strings come from a small universe per member so that keys
collide, plus two distinct strings with equal g_str_hash values, so that a
hash/equality disagreement can surface. Integers range over their QAPI type as
C reads it (negatives, 0, the bounds), with a few values drawn often so that
integer keys collide too.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from hypothesis import strategies as st

from qthrottle.model.qapi_schema import INTEGER_RANGES, Catalog, Event, Member

# g_str_hash is djb2 (h = h * 33 + c): these differ in their last two bytes,
# which add up to the same hash ('b' * 33 + 'Z' == 'c' * 33 + '9').
G_STR_HASH_TWINS = ("bZ", "c9")

STRING_UNIVERSE: Dict[str, List[str]] = {
    "qom-path": ["/machine/peripheral/disk0", "/machine/peripheral/disk1"],
    "id": ["vs0", "vs1"],
    "node-name": ["node0", "node1"],
    "device": ["disk0", "disk1"],
}


def g_str_hash(text: str) -> int:
    """GLib's g_str_hash on UTF-8 text (for tests of the generator)."""
    value = 5381
    for byte in text.encode("utf-8"):
        value = (value * 33 + byte) & 0xFFFFFFFF
    return value


def string_values(member: str) -> List[str]:
    base = STRING_UNIVERSE.get(member, [f"{member}-a", f"{member}-b"])
    prefix = base[0][:-1] if member == "qom-path" else f"{member}-"
    return base + [prefix + twin for twin in G_STR_HASH_TWINS]


def member_value(member: Member) -> st.SearchStrategy[Any]:
    if member.enum_values:
        return st.sampled_from(member.enum_values)
    if member.type == "str":
        return st.sampled_from(string_values(member.name))
    if member.type == "bool":
        return st.booleans()
    if member.type in INTEGER_RANGES:
        low, high = INTEGER_RANGES[member.type]
        bounds = [v for v in (low, low + 1, -1, 0, 1, high - 1, high) if low <= v <= high]
        return st.one_of(st.sampled_from([v for v in (0, 1) if low <= v <= high]),
                         st.sampled_from(sorted(set(bounds))), st.integers(low, high))
    if member.type == "number":
        return st.just(0.5)
    return st.just({})  # structs, lists, 'any': the throttle never reads into them


def event_data(event: Event) -> st.SearchStrategy[Optional[Dict[str, Any]]]:
    if not event.members:
        return st.none()
    parts: Dict[str, st.SearchStrategy[Any]] = {}
    for member in event.members:
        value = member_value(member)
        # An absent optional member is drawn as None and dropped below.
        parts[member.name] = st.one_of(st.none(), value) if member.optional else value

    def present(data: Dict[str, Any]) -> Dict[str, Any]:
        return {m.name: data[m.name] for m in event.members if data[m.name] is not None}

    return st.fixed_dictionaries(parts).map(present)


def events_under_test(catalog: Catalog, throttled: Sequence[str],
                      extra: Sequence[str] = ("BLOCK_IO_ERROR",)) -> List[Event]:
    """Every event of the schema: the throttled ones and those the suite requires
    first, then the others in schema order."""
    chosen = [e for e in catalog.events.values() if e.name in throttled or e.name in extra]
    return chosen + [e for e in catalog.events.values() if e not in chosen]
