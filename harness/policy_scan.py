"""A throttle's policy read from its C: rates from the extracted rate table, keys from a
syntactic scan of the hash and equality callbacks (tree-sitter):

* a *read* is a call ``qdict_get*(X, "member")`` or ``qdict_haskey(X, "member")``
  whose second argument is a string literal;
* it is attributed to the events of the innermost enclosing condition that
  names events: ``if (x->event == QAPI_EVENT_A || x->event == QAPI_EVENT_B)``
  (read in the condition or in its then-branch), ``c ? a : b`` likewise, or
  ``case QAPI_EVENT_A:`` (with the empty case labels that fall through to it).
  A read under no such condition applies to every throttled event;
* its *side* is the callback parameter X derives from (directly or through a
  local ``T *lhs = a;``): 0 is GLib's stored key, 1 the lookup key.

A member is a key of an event when the hash reads it, or when the equality
reads it from both records (it compares them). A member read from one record
only, such as stop-irreflexive's ``action`` test that returns FALSE, is a read
(``members_read`` reports it, for invariant 7) but not a key.

Limits, by design (the z3 translation of the proofs is exact where this is
not): only ``==`` against QAPI_EVENT_ constants attributes a read; ``!=``,
early-return guards (``if (e != X) return ...; read``) and else-branches do
not, so such reads count for every throttled event. Reads inside helper
functions the callbacks call, and member names that are not string literals,
are not seen.
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Optional

from tree_sitter import Node

from qthrottle.model.policy import Policy

from .extract import EVENT_PREFIX, Extraction, function_node, node_text, walk

ALL_EVENTS = "*"  # attribution of a read under no event condition


@dataclass(frozen=True)
class MemberRead:
    """One read of an event data member in a callback."""

    role: str  # "hash" or "equal"
    member: str
    events: frozenset[str]  # {ALL_EVENTS} when under no event condition
    side: Optional[int]  # callback parameter: 0 stored key, 1 lookup key; None unknown
    line: int  # in the extraction's source file


def member_reads(extraction: Extraction) -> tuple[MemberRead, ...]:
    """Every member read of the hash and equality callbacks, in source order per role."""
    reads: list[MemberRead] = []
    for role in ("hash", "equal"):
        function = function_node(extraction, extraction.roles[role])
        params = _parameter_aliases(function)
        for call, member, dict_arg in _reader_calls(function):
            variable = next((node_text(n) for n in walk(dict_arg) if n.type == "identifier"), "")
            reads.append(MemberRead(role, member, _events_for(call), params.get(variable),
                                    call.start_point[0] + 1))
    return tuple(reads)


def members_read(extraction: Extraction) -> dict[str, set[str]]:
    """Event -> members its hash or equality callback reads (invariant 7)."""
    result: dict[str, set[str]] = {}
    for read in member_reads(extraction):
        for event in _expand(read.events, extraction.rates):
            result.setdefault(event, set()).add(read.member)
    return result


def policy_from_extraction(extraction: Extraction) -> Policy:
    rates = {event: rate for event, rate in extraction.rates.items() if rate}
    reads = member_reads(extraction)
    keys: dict[str, list[str]] = {}
    # Equality first: its order of comparison is the natural order of a key.
    for read in sorted(reads, key=lambda r: r.role != "equal"):
        for event in _expand(read.events, rates):
            if event in rates and read.member not in keys.get(event, []) and _is_key(
                    read, reads, event):
                keys.setdefault(event, []).append(read.member)
    return Policy(rates=rates, keys={event: tuple(members) for event, members in keys.items()})


def _is_key(read: MemberRead, reads: tuple[MemberRead, ...], event: str) -> bool:
    """Hashed, or compared: read by the equality from both records (or an unknown one)."""
    same = [r for r in reads if r.member == read.member
            and (event in r.events or ALL_EVENTS in r.events)]
    if any(r.role == "hash" for r in same):
        return True
    sides = {r.side for r in same if r.role == "equal"}
    return None in sides or {0, 1} <= sides


def _expand(events: frozenset[str], rates: Mapping[str, int]) -> set[str]:
    if ALL_EVENTS in events:
        return {event for event, rate in rates.items() if rate}
    return set(events)


# ------------------------------------------------------------- syntax scan

def _string_literal(node: Node) -> Optional[str]:
    if node.type != "string_literal":
        return None
    return "".join(node_text(c) for c in node.named_children if c.type == "string_content")


def _reader_calls(function: Node) -> Iterator[tuple[Node, str, Node]]:
    """(call, member, dict argument) for each qdict_get*/qdict_haskey with a literal member."""
    for node in walk(function):
        if node.type != "call_expression":
            continue
        callee = node.child_by_field_name("function")
        args = node.child_by_field_name("arguments")
        if callee is None or args is None:
            continue
        name = node_text(callee)
        if not (name.startswith("qdict_get") or name == "qdict_haskey"):
            continue
        arguments = [a for a in args.named_children if a.type != "comment"]
        member = _string_literal(arguments[1]) if len(arguments) >= 2 else None
        if member is not None:
            yield node, member, arguments[0]


def _parameter_aliases(function: Node) -> dict[str, int]:
    """Parameter names and locals initialised from them -> parameter index."""
    aliases: dict[str, int] = {}
    declarator = function.child_by_field_name("declarator")
    while declarator is not None and declarator.type != "function_declarator":
        declarator = declarator.child_by_field_name("declarator")
    params = declarator.child_by_field_name("parameters") if declarator else None
    for index, param in enumerate(p for p in (params.named_children if params else [])
                                  if p.type == "parameter_declaration"):
        name = _declared_name(param.child_by_field_name("declarator"))
        if name:
            aliases[name] = index
    for node in walk(function):
        target: Optional[Node] = None
        value: Optional[Node] = None
        if node.type == "init_declarator":
            target, value = node.child_by_field_name("declarator"), node.child_by_field_name(
                "value")
        elif node.type == "assignment_expression":  # `x = a`, not `x->f = a`
            target, value = node.child_by_field_name("left"), node.child_by_field_name("right")
            target = target if target is not None and target.type == "identifier" else None
        source = next((node_text(n) for n in walk(value) if n.type == "identifier"), None) \
            if value is not None else None
        name = _declared_name(target)
        if name and source in aliases:
            aliases.setdefault(name, aliases[source])
    return aliases


def _declared_name(declarator: Optional[Node]) -> Optional[str]:
    while declarator is not None and declarator.type != "identifier":
        declarator = declarator.child_by_field_name("declarator")
    return node_text(declarator) if declarator is not None else None


def _within(node: Node, ancestor: Optional[Node]) -> bool:
    return (ancestor is not None and ancestor.start_byte <= node.start_byte
            and node.end_byte <= ancestor.end_byte)


def _events_compared(condition: Node) -> set[str]:
    """QAPI events that appear as an operand of == in @condition."""
    events: set[str] = set()
    for node in walk(condition):
        operator = node.child_by_field_name("operator") if node.type == "binary_expression" \
            else None
        if operator is None or node_text(operator) != "==":
            continue
        for side in ("left", "right"):
            operand = node.child_by_field_name(side)
            if operand is not None and operand.type == "identifier" \
                    and node_text(operand).startswith(EVENT_PREFIX):
                events.add(node_text(operand)[len(EVENT_PREFIX):])
    return events


def _case_events(case: Node) -> set[str]:
    """Events of a case label and of the empty labels that fall through to it."""
    events: set[str] = set()
    label: Optional[Node] = case
    while label is not None and label.type == "case_statement":
        value = label.child_by_field_name("value")
        if value is not None and node_text(value).startswith(EVENT_PREFIX):
            events.add(node_text(value)[len(EVENT_PREFIX):])
        label = label.prev_named_sibling
        if label is not None and label.type == "case_statement" and any(
                c.type.endswith("statement") or c.type == "declaration"
                for c in label.named_children[1:]):
            break  # that label has a body of its own: no fall-through into ours
    return events


def _events_for(read: Node) -> frozenset[str]:
    """Events of the innermost enclosing condition that names any."""
    node = read
    while node.parent is not None and node.type != "function_definition":
        parent = node.parent
        events: set[str] = set()
        if parent.type in ("if_statement", "conditional_expression"):
            condition = parent.child_by_field_name("condition")
            branch = parent.child_by_field_name("consequence")
            if condition is not None and (_within(read, condition) or _within(read, branch)):
                events = _events_compared(condition)
        elif parent.type == "case_statement":
            events = _case_events(parent)
        if events:
            return frozenset(events)
        node = parent
    return frozenset({ALL_EVENTS})
