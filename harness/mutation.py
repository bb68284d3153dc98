"""C mutation operators for the extracted throttle (``qthrottle mutate``).

A mutant is the original monitor.c with one edit, a byte range replaced, inside
one of the throttle's functions (queue function, timer handler, hash, equality,
table initialisation) or in the rate table's initialiser. Sites are found with
tree-sitter on the source file itself, so a mutant's location is a line of the
user's file. Two edits that give the same tokens (an emptied one-statement
branch, and that statement dropped) make one mutant.

Not mutated, by design:
* trace points and locking (extract.compiles_to_nothing): the harness compiles
  them to nothing, and the z3 translation treats them as having no effect
  (proofs/library.py), so a mutant there says nothing about the verification;
* declarations: a dropped declaration does not compile;
* the operands of ==, != and the other commutative operators: swapped, they give
  a mutant equivalent by C's semantics;
* helpers the roles call (monitor_get_event_clock): glue to QEMU's clocks, and
  the harness has one virtual clock for every clock type.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterator, List, Optional, Sequence, Set, Tuple

import tree_sitter_c
from tree_sitter import Language, Node, Parser

from qthrottle.model.members import member_kind
from qthrottle.model.qapi_schema import Catalog, Member

from .cache import store_file
from .extract import (
    EVENT_PREFIX,
    Extraction,
    compiles_to_nothing,
    named_children,
    node_text,
    walk,
)

_C = Language(tree_sitter_c.language())

NEGATE = "negate a condition"
DROP_BRANCH = "drop a branch"
DROP_STATEMENT = "drop a statement"
COMPARE_OTHER_MEMBER = "compare a different member"
HASH_OTHER_MEMBER = "hash a different member"
SWAP = "swap the operands of a comparison"
NO_REARM = "remove the timer re-arm"
NO_REMOVAL = "remove the table removal"
NO_RELEASE = "remove a reference release"
CHANGE_RATE = "change a rate"
CHANGE_LITERAL = "change a string literal"
OPERATORS = (NEGATE, DROP_BRANCH, DROP_STATEMENT, NO_REARM, NO_REMOVAL, NO_RELEASE,
             COMPARE_OTHER_MEMBER, HASH_OTHER_MEMBER, SWAP, CHANGE_RATE, CHANGE_LITERAL)

MUTATED_ROLES = ("queue", "handler", "hash", "equal", "init")
RATE_ROLE = "rates"  # the role of a rate-table mutant
# Dropping a call statement to one of these is named after what it removes.
DROP_NAMES = {"timer_mod": NO_REARM, "timer_mod_ns": NO_REARM, "timer_mod_anticipate": NO_REARM,
              "timer_mod_anticipate_ns": NO_REARM, "g_hash_table_remove": NO_REMOVAL,
              "qobject_unref": NO_RELEASE}
# Operators whose operands are swapped: those where the order matters.
ORDERED_OPERATORS = ("<", ">", "<=", ">=", "-", "/", "%", "<<", ">>", "&&", "||")
STRING_COMPARES = frozenset({"strcmp", "strncmp", "g_strcmp0", "g_str_equal", "strcasecmp",
                             "g_ascii_strcasecmp"})
GETTER_KINDS = {"qdict_get_str": "str", "qdict_get_try_str": "str", "qdict_get_int": "int",
                "qdict_get_try_int": "int", "qdict_get_bool": "bool",
                "qdict_get_try_bool": "bool"}

Point = Tuple[int, int]


@dataclass(frozen=True)
class Mutant:
    """One edit of the original source."""

    id: str
    operator: str
    role: str  # queue, handler, hash, equal, init, or "rates"
    function: str  # the mutated function, or the rate table
    line: int  # 1-based, in the original source
    start: int  # byte range replaced in the original source
    end: int
    replacement: str
    before: str  # the original text of the edit
    span: Tuple[Point, Point]  # tree-sitter points of the node the edit changes
    calls: FrozenSet[str]  # functions called inside that node

    def apply(self, source: bytes) -> bytes:
        return source[:self.start] + self.replacement.encode("utf-8") + source[self.end:]

    def write(self, source: bytes) -> Path:
        """The mutant of @source as a monitor.c in the cache, at a path fixed by its
        content (so that its build is cached too), written atomically."""
        return store_file("mutants", "monitor.c", self.apply(source))

    @property
    def edit(self) -> str:
        """The one-line diff: before -> after."""
        after = _one_line(self.replacement) if self.replacement.strip(" ;") else "(deleted)"
        return f"{_one_line(self.before)} -> {after}"


def _one_line(text: str, limit: int = 72) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def _callee(call: Node) -> str:
    return node_text(call.child_by_field_name("function"))


def _arguments(call: Node) -> List[Node]:
    args = call.child_by_field_name("arguments")
    return named_children(args) if args is not None else []


def _not_mutated(node: Node) -> bool:
    """A call the operators leave alone (trace point, lock)."""
    return node.type == "call_expression" and compiles_to_nothing(_callee(node))


def _body_nodes(function: Node) -> Iterator[Node]:
    """Nodes of a function body, skipping the inside of calls that are not mutated."""
    body = function.child_by_field_name("body")
    stack = [body] if body is not None else []
    while stack:
        node = stack.pop()
        if _not_mutated(node):
            continue
        yield node
        stack.extend(reversed(node.children))


def _function_name(node: Node) -> Optional[str]:
    declarator = node.child_by_field_name("declarator")
    while declarator is not None and declarator.type != "function_declarator":
        declarator = declarator.child_by_field_name("declarator")
    inner = declarator.child_by_field_name("declarator") if declarator is not None else None
    return node_text(inner) if inner is not None and inner.type == "identifier" else None


def _definition_at(root: Node, name: str, line: int, kinds: Sequence[str]) -> Optional[Node]:
    for node in walk(root):
        if node.type in kinds and node.start_point[0] == line - 1 and (
                node.type != "function_definition" or _function_name(node) == name):
            return node
    return None


class _Sites:
    """Collects the edits of one source file."""

    def __init__(self, data: bytes, catalog: Catalog) -> None:
        self.data = data
        self.catalog = catalog
        self.container: Optional[Node] = None  # the function (or table) being mutated
        self.found: Dict[Tuple[int, int, str], Tuple[str, str, str, Node, Node]] = {}

    def add(self, operator: str, role: str, function: str, subject: Node, start: int, end: int,
            replacement: str) -> None:
        assert self.container is not None
        key = (start, end, replacement)
        if self.data[start:end].decode("utf-8") != replacement:
            self.found.setdefault(key, (operator, role, function, subject, self.container))

    def replace(self, operator: str, role: str, function: str, node: Node,
                replacement: str, subject: Optional[Node] = None) -> None:
        self.add(operator, role, function, subject or node, node.start_byte, node.end_byte,
                 replacement)

    def mutants(self) -> List[Mutant]:
        result: List[Mutant] = []
        seen: Set[Tuple[int, Tuple[str, ...]]] = set()
        for key, value in sorted(self.found.items()):
            start, end, replacement = key
            operator, role, function, subject, container = value
            # Two edits giving the same tokens (`{ x; }` emptied, or `x;` dropped) are one
            # mutant: the first one in source order stands for both.
            mutated = (self.data[container.start_byte:start].decode("utf-8") + replacement
                       + self.data[end:container.end_byte].decode("utf-8"))
            tokens = (container.start_byte, _tokens(mutated))
            if tokens in seen:
                continue
            seen.add(tokens)
            calls = frozenset(_callee(n) for n in walk(subject) if n.type == "call_expression")
            line = self.data[:start].count(b"\n") + 1
            result.append(Mutant(f"m{len(result) + 1:03d}", operator, role, function, line,
                                 start, end, replacement, self.data[start:end].decode("utf-8"),
                                 (tuple(subject.start_point), tuple(subject.end_point)),  # type: ignore[arg-type]
                                 calls))
        return result


def _tokens(source: str) -> Tuple[str, ...]:
    """C tokens, comments left out (close enough for telling duplicate edits apart)."""
    source = re.sub(r"/\*.*?\*/|//[^\n]*", " ", source, flags=re.DOTALL)
    return tuple(re.findall(r'"(?:\\.|[^"\\])*"|\w+|\S', source))


def _negation(expression: Node) -> str:
    if expression.type == "unary_expression" and node_text(
            expression.child_by_field_name("operator")) == "!":
        return node_text(expression.child_by_field_name("argument"))
    if expression.type in ("identifier", "call_expression", "field_expression",
                           "parenthesized_expression"):
        return "!" + node_text(expression)
    return f"!({node_text(expression)})"


def _condition(node: Node) -> Optional[Node]:
    condition = node.child_by_field_name("condition")
    if condition is not None and condition.type == "parenthesized_expression":
        inner = named_children(condition)
        return inner[0] if inner else None
    return condition


def _guard_events(node: Node) -> List[str]:
    """Events named in the innermost enclosing condition that names any (source order)."""
    current = node
    while current.parent is not None and current.type != "function_definition":
        parent = current.parent
        if parent.type in ("if_statement", "conditional_expression"):
            condition = parent.child_by_field_name("condition")
            alternative = parent.child_by_field_name("alternative")
            in_else = alternative is not None and alternative.start_byte <= node.start_byte
            if condition is not None and not in_else:
                names = [node_text(n)[len(EVENT_PREFIX):] for n in walk(condition)
                         if n.type == "identifier" and node_text(n).startswith(EVENT_PREFIX)]
                if names:
                    return list(dict.fromkeys(names))
        current = parent
    return []


def _member_read(node: Node, function: Node) -> Optional[Tuple[Node, str, str]]:
    """(getter call, member, getter) read by @node: the call itself or a local set from it."""
    if node.type == "identifier":
        for sub in walk(function):
            if sub.type == "init_declarator" and _declared(sub) == node_text(node):
                value = sub.child_by_field_name("value")
                return _member_read(value, function) if value is not None else None
        return None
    if node.type != "call_expression":
        return None
    args = _arguments(node)
    name = _callee(node)
    if (name.startswith("qdict_get") or name == "qdict_haskey") and len(args) >= 2 \
            and args[1].type == "string_literal":
        return node, _literal(args[1]), name
    return None


def _declared(declarator: Node) -> str:
    target: Optional[Node] = declarator.child_by_field_name("declarator")
    while target is not None and target.type != "identifier":
        target = target.child_by_field_name("declarator")
    return node_text(target)


def _literal(node: Node) -> str:
    return "".join(node_text(c) for c in node.named_children if c.type == "string_content")


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _member_of(catalog: Catalog, events: Sequence[str], member: str) -> Optional[Member]:
    for event in events:
        definition = catalog.events.get(event)
        found = definition.member(member) if definition is not None else None
        if found is not None:
            return found
    return None


def _other_member(catalog: Catalog, events: Sequence[str], member: str,
                  getter: str) -> Optional[str]:
    """The member read instead: the next one of the first guard event with the same getter
    kind, mandatory ones first (schema order, wrapping around)."""
    definition = catalog.events.get(events[0]) if events else None
    if definition is None:
        return None
    kind = GETTER_KINDS.get(getter)
    members = list(definition.members)
    index = next((i for i, m in enumerate(members) if m.name == member), -1)
    ordered = members[index + 1:] + members[:index + 1]
    usable = [m for m in ordered if m.name != member and (kind is None or member_kind(m) == kind)]
    usable.sort(key=lambda m: m.optional)
    return usable[0].name if usable else None


def _function_sites(sites: _Sites, role: str, name: str, function: Node) -> None:
    data = sites.data
    for node in _body_nodes(function):
        kind = node.type
        if kind in ("if_statement", "while_statement", "do_statement", "conditional_expression"):
            condition = _condition(node)
            if condition is not None:
                sites.replace(NEGATE, role, name, condition, _negation(condition))
        if kind == "binary_expression":
            operator = node_text(node.child_by_field_name("operator"))
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            if left is None or right is None:
                continue
            if operator in ("&&", "||"):
                for operand in (left, right):
                    sites.replace(NEGATE, role, name, operand, _negation(operand))
            if operator in ORDERED_OPERATORS:
                middle = data[left.end_byte:right.start_byte].decode("utf-8")
                sites.add(SWAP, role, name, node, left.start_byte, right.end_byte,
                          node_text(right) + middle + node_text(left))
        elif kind == "unary_expression" and node_text(node.child_by_field_name("operator")) == "!":
            sites.replace(NEGATE, role, name, node, _negation(node))
        elif kind == "if_statement":
            consequence = node.child_by_field_name("consequence")
            alternative = node.child_by_field_name("alternative")
            if consequence is not None:
                empty = "{ }" if consequence.type == "compound_statement" else ";"
                sites.replace(DROP_BRANCH, role, name, consequence, empty)
            if consequence is not None and alternative is not None:
                sites.add(DROP_BRANCH, role, name, alternative, consequence.end_byte,
                          alternative.end_byte, "")
        elif kind == "conditional_expression":
            for branch in ("consequence", "alternative"):
                kept = node.child_by_field_name(branch)
                if kept is not None:
                    sites.replace(DROP_BRANCH, role, name, node, f"({node_text(kept)})")
        elif kind == "expression_statement":
            expression = named_children(node)
            if not expression or _not_mutated(expression[0]):
                continue
            callee = _callee(expression[0]) if expression[0].type == "call_expression" else ""
            inside_block = node.parent is not None and node.parent.type == "compound_statement"
            sites.replace(DROP_NAMES.get(callee, DROP_STATEMENT), role, name, node,
                          "" if inside_block else ";")
        elif kind == "call_expression":
            _call_sites(sites, role, name, node, function)


def _call_sites(sites: _Sites, role: str, name: str, call: Node, function: Node) -> None:
    callee, args = _callee(call), _arguments(call)
    read = _member_read(call, function)
    if read is not None:
        _, member, getter = read
        events = _guard_events(call)
        # Only reads of an event's data member (not the QMP envelope's "data").
        other = _other_member(sites.catalog, events, member, getter) \
            if _member_of(sites.catalog, events, member) is not None else None
        if other is not None:
            operator = HASH_OTHER_MEMBER if role == "hash" else COMPARE_OTHER_MEMBER
            sites.replace(operator, role, name, args[1], _quoted(other), subject=call)
    if callee in STRING_COMPARES and len(args) >= 2:
        first, second = args[0], args[1]
        middle = sites.data[first.end_byte:second.start_byte].decode("utf-8")
        sites.add(SWAP, role, name, call, first.start_byte, second.end_byte,
                  node_text(second) + middle + node_text(first))
        for literal, other_side in ((first, second), (second, first)):
            compared = _member_read(other_side, function)
            if literal.type != "string_literal" or compared is None:
                continue
            getter_call, member, _ = compared
            spec = _member_of(sites.catalog, _guard_events(getter_call), member)
            for value in (spec.enum_values or ()) if spec is not None else ():
                sites.replace(CHANGE_LITERAL, role, name, literal, _quoted(value), subject=call)


def _rate_sites(sites: _Sites, table: Node, name: str) -> None:
    for pair in walk(table):
        designator = pair.child_by_field_name("designator") \
            if pair.type == "initializer_pair" else None
        value = pair.child_by_field_name("value")
        if designator is None or value is None or designator.type != "subscript_designator":
            continue
        inner = named_children(value)[0] if value.type == "initializer_list" and named_children(value) else value
        if inner.type == "initializer_pair":  # { .rate = N }
            inner = inner.child_by_field_name("value") or inner
        if not re.fullmatch(r"0+[uUlL]*", node_text(inner)):
            sites.replace(CHANGE_RATE, RATE_ROLE, name, inner, f"({node_text(inner)}) * 2",
                          subject=pair)
            sites.replace(CHANGE_RATE, RATE_ROLE, name, inner, f"({node_text(inner)}) / 2",
                          subject=pair)
        end = pair.end_byte
        following = pair.next_sibling
        if following is not None and following.type == ",":
            end = following.end_byte
        sites.add(CHANGE_RATE, RATE_ROLE, name, pair, pair.start_byte, end, "")


def mutants(extraction: Extraction, catalog: Catalog) -> List[Mutant]:
    """Every mutant of the throttle of @extraction, numbered in source order."""
    data = extraction.path.read_bytes()
    root = Parser(_C).parse(data).root_node
    sites = _Sites(data, catalog)
    for role in MUTATED_ROLES:
        name = extraction.roles[role]
        function = _definition_at(root, name, extraction.locations[name],
                                  ("function_definition",))
        if function is not None:
            sites.container = function
            _function_sites(sites, role, name, function)
    table_name = extraction.rate_table_name
    table = _definition_at(root, table_name, extraction.locations[table_name], ("declaration",))
    if table is not None:
        sites.container = table
        _rate_sites(sites, table, table_name)
    return sites.mutants()
