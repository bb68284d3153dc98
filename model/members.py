"""What an event member's values look like to the C and to a reader.

The C reads a member with one getter family (``member_kind``: qdict_get_str for
strings and enums, qdict_get_int for integers, qdict_get_bool); the engines draw
member values, and the proofs prefer readable counterexamples, from one small
universe per member (``string_values``), so that keys collide and every engine's
counterexample reads alike. ``filler`` is the plainest schema-valid value.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

from qthrottle.model.qapi_schema import Member

KINDS = ("str", "int", "bool")  # the getter families; "other" members are never read
# QAPI's integer types, and the values each can carry as C reads them (qdict_get_int
# returns an int64_t: a uint64 or size beyond INT64_MAX is beyond it).
INTEGER_RANGES: Dict[str, Tuple[int, int]] = {
    "int": (-2**63, 2**63 - 1), "int64": (-2**63, 2**63 - 1),
    "int8": (-2**7, 2**7 - 1), "int16": (-2**15, 2**15 - 1), "int32": (-2**31, 2**31 - 1),
    "uint8": (0, 2**8 - 1), "uint16": (0, 2**16 - 1), "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**63 - 1), "size": (0, 2**63 - 1),
}
INTEGER_TYPES = frozenset(INTEGER_RANGES)

# g_str_hash is djb2 (h = h * 33 + c): these differ in their last two bytes,
# which add up to the same hash ('b' * 33 + 'Z' == 'c' * 33 + '9').
G_STR_HASH_TWINS = ("bZ", "c9")

STRING_UNIVERSE: Dict[str, List[str]] = {
    "qom-path": ["/machine/peripheral/disk0", "/machine/peripheral/disk1"],
    "id": ["vs0", "vs1"],
    "node-name": ["node0", "node1"],
    "device": ["disk0", "disk1"],
}
# Enum values a counterexample prefers where it has the choice: QEMU's default
# error policy reports (rerror=report), so a non-stop I/O error reads best so.
TYPICAL = {"action": "report"}


def member_kind(member: Member) -> str:
    """The C getter family that reads this member: str, int, bool, or other."""
    if member.enum_values is not None or member.type == "str":
        return "str"
    if member.type == "bool":
        return "bool"
    return "int" if member.type in INTEGER_TYPES else "other"


def g_str_hash(text: str) -> int:
    """GLib's g_str_hash on UTF-8 text."""
    value = 5381
    for byte in text.encode("utf-8"):
        value = (value * 33 + byte) & 0xFFFFFFFF
    return value


def string_values(member: str) -> List[str]:
    """The member's universe: two instances, then two strings with one g_str_hash."""
    base = STRING_UNIVERSE.get(member, [f"{member}-a", f"{member}-b"])
    prefix = base[0][:-1] if member == "qom-path" else f"{member}-"
    return base + [prefix + twin for twin in G_STR_HASH_TWINS]


def filler(member: Member) -> Any:
    """A readable schema-valid value for a member nothing constrains."""
    kind = member_kind(member)
    if member.enum_values:
        typical = TYPICAL.get(member.name)
        return typical if typical in member.enum_values else member.enum_values[0]
    if kind == "str":
        return string_values(member.name)[0]
    if kind == "int":
        return 0
    if kind == "bool":
        return False
    return 0.5 if member.type == "number" else {}
