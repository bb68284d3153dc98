"""Policy lint: what the QAPI schema says about the throttle policy of an implementation.

The invariants say whether the throttle code is correct for the policy it has;
the lint says whether the policy suits the events. It compares the policy the
code implements (derived by proofs/policy.py: rate per event, key members per
event) with the schema (``load_schema``: the members of each event and their
documentation) and returns warnings, never verdicts. An event whose key could
not be derived gets no key warning (its key is UNKNOWN, and reported so). The
rules:

``global-throttle``
    A throttled event has a per-instance member (see ``is_instance_member``) but
    its key holds none: every instance shares one throttle, so one device's
    events delay and replace another's (RTC_CHANGE carries ``qom-path`` in QEMU
    7.2 and 10.0.x, yet all RTCs share one throttle).
``optional-key``
    A key member is optional in the schema: events without it share one throttle
    (the 2025 VIRTQUEUE_ERROR review). Whether the callbacks test its presence
    before reading it is invariant 7's question, not the lint's.
``empty-key``
    A key member's schema documentation says it can be empty (such as
    BLOCK_IO_ERROR's ``device``: "can be empty ("") if the image does not have a
    device name"): every instance without a name shares the key "".
``not-in-schema``
    A throttled event that the schema does not define: nothing above can be checked.

Per-instance members are recognised by name (QAPI's conventions for naming an
instance): ``qom-path``, ``id``, ``node-name``, ``device``, and names ending in
``-qom-path``, ``-node-name`` or ``-id`` (``job-id``); or by their documentation,
when it says the member is a device name, a node name, a device ID or a QOM
path (QUORUM_FAILURE's ``reference``: "device name if defined else node name").
Member documentation is read from the ``##`` block just before an event
definition; members of an event whose data is a named struct have their
documentation on the struct and are not read.
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from qthrottle.harness.extract import Extraction
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog, Event
from qthrottle.model.timeline import format_ns

INSTANCE_MEMBERS = ("qom-path", "id", "node-name", "device")
INSTANCE_SUFFIXES = ("-qom-path", "-node-name", "-id")
RULES = ("global-throttle", "optional-key", "empty-key", "not-in-schema")

# Documentation saying a string member may be empty; "the drive is empty" is no match.
_MAY_BE_EMPTY = re.compile(
    r'(?:can|may|might|could)\s+(?:also\s+)?be\s+empty|possibly\s+empty|empty\s+string|""',
    re.IGNORECASE)
_MEMBER_DOC = re.compile(r"@([\w-]+):\s*(.*)")
# Documentation saying a member names the instance that emitted the event.
_NAMES_INSTANCE = re.compile(
    r"\b(?:device|node)\s+name\b|\bdevice(?:'s)?\s+(?:ID|identifier)\b|\bQOM\s+(?:tree|path)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class LintWarning:
    """One policy warning, with where to look: the schema event, the rate table, the key read."""

    event: str
    rule: str  # one of RULES
    member: Optional[str]  # the member concerned, if one
    explanation: str  # a sentence that names the event
    schema: Optional[str]  # file:line of the event's definition
    rate_table: Optional[str]  # file:line of the event's entry in the rate table
    key_read: Optional[str] = None  # file:line where a callback reads the key member

    def lines(self) -> List[str]:
        """The warning as a reader sees it: the explanation, then the places."""
        places = [f"{what} {where}" for what, where in (
            ("schema", self.schema), ("rate table", self.rate_table),
            ("key read", self.key_read)) if where]
        return [f"{self.explanation} [{self.rule}]",
                *([f"  at {'; '.join(places)}"] if places else [])]


def is_instance_member(name: str, doc: str = "") -> bool:
    """Do a member's name or documentation say it identifies the emitting instance?"""
    return (name in INSTANCE_MEMBERS or name.endswith(INSTANCE_SUFFIXES)
            or _NAMES_INSTANCE.search(doc) is not None)


def lint_policy(catalog: Catalog, policy: Policy,
                rate_table: Optional[Mapping[str, str]] = None,
                docs: Optional[Mapping[str, Mapping[str, str]]] = None,
                key_reads: Optional[Mapping[Tuple[str, str], str]] = None,
                undecided: Collection[str] = ()) -> List[LintWarning]:
    """Warnings for every throttled event of @policy, in rate-table order.

    @rate_table: event -> file:line of its rate entry; @docs: event -> member ->
    documentation text; @key_reads: (event, member) -> file:line of a callback's
    read. All three only add places and documentation; missing entries are fine.
    @undecided: events whose key is unknown, which get no key warning.
    """
    rate_table = rate_table or {}
    docs = docs or {}
    key_reads = key_reads or {}
    warnings: List[LintWarning] = []
    for name in policy.rates:
        if not policy.throttled(name):
            continue
        rate = format_ns(policy.rate(name))
        event = catalog.events.get(name)
        if event is None:
            warnings.append(LintWarning(
                name, "not-in-schema", None,
                f"{name} is throttled (one per {rate}) but not defined in the QAPI schema, so its "
                "members and key cannot be checked", None, rate_table.get(name)))
            continue
        if name in undecided:
            continue
        key = policy.keys.get(name, ())
        where = (event.source, rate_table.get(name))
        documented = docs.get(name, {})
        instance = [m.name for m in event.members
                    if is_instance_member(m.name, documented.get(m.name, ""))]
        if instance and not any(is_instance_member(member, documented.get(member, ""))
                                for member in key):
            limited = f"per {', '.join(key)}" if key else "per event name"
            shown = [m if is_instance_member(m) else
                     f"{m} (documented as \"{_shorten(documented[m])}\")" for m in instance]
            warnings.append(LintWarning(
                name, "global-throttle", instance[0],
                f"{name} carries per-instance member{'s' if len(instance) > 1 else ''} "
                f"{', '.join(shown)} but is throttled {limited}: all instances share "
                f"one throttle, so within {rate} one instance's event is delayed behind "
                "another's and replaced by the next, and the dropped one never reaches "
                f"the management tool; key the throttle on {instance[0]}", *where))
        for member_name in key:
            member = event.member(member_name)
            if member is None:
                continue  # a read of a member the event lacks: invariant 7's finding
            doc = documented.get(member_name, "")
            read = key_reads.get((name, member_name))
            if member.optional:
                warnings.append(LintWarning(
                    name, "optional-key", member_name,
                    f"{name} is throttled per {member_name}, which is optional in the schema: "
                    f"every {name} without it shares one throttle (whether the callbacks "
                    "test its presence before reading it is invariant 7's question); key it "
                    "on a mandatory member", *where, read))
            elif _MAY_BE_EMPTY.search(doc):
                warnings.append(LintWarning(
                    name, "empty-key", member_name,
                    f"{name} is throttled per {member_name}, which the schema documents as "
                    f"possibly empty (\"{_shorten(doc)}\"): every instance with an empty "
                    f"{member_name} shares one throttle; key it on a member that always "
                    "names the instance", *where, read))
    return warnings


def lint_extraction(extraction: Extraction, catalog: Catalog, policy: Policy,
                    key_reads: Optional[Mapping[Tuple[str, str], str]] = None,
                    undecided: Collection[str] = ()) -> List[LintWarning]:
    """The lint of one implementation: the policy its code implements against its schema."""
    docs = {name: member_docs(event) for name, event in catalog.events.items()
            if policy.throttled(name)}
    return lint_policy(catalog, policy, rate_entries(extraction), docs, key_reads, undecided)


def rate_entries(extraction: Extraction) -> Dict[str, str]:
    """Event -> file:line of its ``[QAPI_EVENT_X] = ...`` entry in the rate table."""
    return {event: f"{extraction.path}:{line}"
            for event, line in extraction.rate_entries.items()}


def member_docs(event: Event) -> Dict[str, str]:
    """Member -> documentation text, from the ``##`` comment block before the event."""
    file, _, line = event.source.rpartition(":")
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()[:int(line) - 1]
    except (OSError, ValueError):
        return {}
    block: List[str] = []
    for text in reversed(lines):
        if not text.lstrip().startswith("#"):
            break
        block.insert(0, text.lstrip()[1:].strip())
    docs: Dict[str, str] = {}
    current: Optional[str] = None
    for text in block:
        match = _MEMBER_DOC.match(text)
        if match:
            current = match.group(1)
            docs[current] = match.group(2)
        elif current is not None and text and not text.startswith("#"):
            docs[current] += " " + text
        else:
            current = None  # a blank line or the block's end closes a member's section
    return docs


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


@dataclass(frozen=True)
class LintDelta:
    """What a change does to the lint: the warnings it introduces, changes and resolves."""

    introduced: Tuple[LintWarning, ...] = ()
    changed: Tuple[Tuple[LintWarning, LintWarning], ...] = ()  # (before, after)
    resolved: Tuple[LintWarning, ...] = ()


def lint_delta(old: Sequence[LintWarning], new: Sequence[LintWarning]) -> LintDelta:
    """Warnings compared by event, rule and member; a changed explanation is a changed
    warning (a new rate, a new key), a moved line is not."""
    def key(warning: LintWarning) -> Tuple[str, str, Optional[str]]:
        return warning.event, warning.rule, warning.member

    before = {key(w): w for w in old}
    after = {key(w): w for w in new}
    return LintDelta(
        tuple(w for k, w in after.items() if k not in before),
        tuple((before[k], w) for k, w in after.items()
              if k in before and before[k].explanation != w.explanation),
        tuple(w for k, w in before.items() if k not in after))
