"""Find QEMU's QAPI event throttle in a monitor.c and cut it out, with provenance.

The throttle is located by structure, not by line numbers: the queue function
(monitor_qapi_event_queue_no_reenter) names the state table, the timer handler
and the record type; the function that creates the table names the hash and
equality callbacks. Everything those functions need from the same file
(typedefs, the rate table, globals, small static helpers) follows by name.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import tree_sitter_c
from tree_sitter import Language, Node, Parser

from qthrottle.core import QthrottleError, read_input

_C = Language(tree_sitter_c.language())

QUEUE_FUNCTION_NAMES = ("monitor_qapi_event_queue_no_reenter", "monitor_qapi_event_queue")
# Provided by the harness's own shims instead of monitor.c's definition.
SHIMMED = frozenset({"monitor_qapi_event_emit"})
# The queue function decides with one of these: looked up in the table (throttled), or
# emitted at once (the SHIMMED emit).
TABLE_LOOKUPS = frozenset({"g_hash_table_lookup", "g_hash_table_contains",
                           "g_hash_table_lookup_extended"})
LOOKUPS_AND_EMIT = TABLE_LOOKUPS | SHIMMED
# Macros that open a block: `WITH_QEMU_LOCK_GUARD(&lock) { ... }` parses as a call
# missing its ';' followed by the block, which is no syntax error for the compiler.
BLOCK_MACROS = frozenset({"WITH_QEMU_LOCK_GUARD"})
EVENT_PREFIX = "QAPI_EVENT_"
# The monitor lock and its guards: the driver is single-threaded, so the harness compiles
# them to nothing (shims/lock_guard_noop.h), as it does trace points (build.trace_header).
LOCK_CALLS = frozenset({"qemu_mutex_init", "qemu_mutex_lock", "qemu_mutex_unlock",
                        "QEMU_LOCK_GUARD", "WITH_QEMU_LOCK_GUARD"})


def compiles_to_nothing(callee: str) -> bool:
    """A call the harness compiles to nothing: locking and trace points."""
    return callee in LOCK_CALLS or callee.startswith("trace_")


class ExtractionError(QthrottleError):
    """The input is not a monitor.c whose throttle can be extracted."""


@dataclass(frozen=True)
class Chunk:
    """One top-level definition taken from the source."""

    name: str
    kind: str  # "type", "variable" or "function"
    line: int  # 1-based line in the source file
    text: str
    prototype: str = ""  # functions only: their declaration


@dataclass(frozen=True)
class Extraction:
    """The throttle code of one monitor.c, ready to compile with the shims."""

    path: Path
    chunks: Tuple[Chunk, ...]
    roles: Dict[str, str]  # queue, handler, hash, equal, init -> function name
    record_type: str
    table_variable: str
    rate_table_name: str
    rate_entries: Dict[str, int]  # event name -> line of its rate-table entry (the
    # rates themselves are the compiler's: harness.build.compiled_rates)
    events_named: Tuple[str, ...]  # QAPI events the code mentions
    trace_points: Tuple[str, ...]
    locations: Dict[str, int] = field(default_factory=dict)  # name -> line

    def location(self, name: str) -> str:
        """file:line of a function, type or variable of the extraction."""
        return f"{self.path}:{self.locations[name]}"

    @property
    def helpers(self) -> Tuple[str, ...]:
        """Functions pulled in because the throttle calls them."""
        named = set(self.roles.values())
        return tuple(c.name for c in self.chunks if c.kind == "function" and c.name not in named)

    def c_source(self) -> str:
        """The extracted code with #line directives pointing into the source."""
        path = str(self.path).replace("\\", "\\\\").replace('"', '\\"')
        parts: List[str] = []
        for kind in ("type", "variable"):
            for chunk in self.chunks:
                if chunk.kind == kind:
                    parts.append(f'#line {chunk.line} "{path}"\n{chunk.text}\n')
        for chunk in self.chunks:
            if chunk.kind == "function":
                parts.append(f'#line {chunk.line} "{path}"\n{chunk.prototype}\n')
        for chunk in self.chunks:
            if chunk.kind == "function":
                parts.append(f'#line {chunk.line} "{path}"\n{chunk.text}\n')
        return "".join(parts)


def node_text(node: Optional[Node]) -> str:
    """A syntax node's source text ("" for none)."""
    return node.text.decode("utf-8") if node is not None and node.text is not None else ""


def walk(node: Node) -> Iterator[Node]:
    """Every node under @node, @node first, in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def named_children(node: Node) -> List[Node]:
    """A node's named children, comments left out."""
    return [c for c in node.named_children if c.type != "comment"]


def _declared_names(declarator: Optional[Node]) -> List[str]:
    """Names declared by a declarator (x, *x, x[N], x = init, ...)."""
    while declarator is not None and declarator.type not in ("identifier", "type_identifier"):
        if declarator.type == "function_declarator":
            return []
        declarator = declarator.child_by_field_name("declarator")
    return [node_text(declarator)] if declarator is not None else []


def _function_name(node: Node) -> Optional[str]:
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:
        if declarator.type == "function_declarator":
            inner = declarator.child_by_field_name("declarator")
            return node_text(inner) if inner is not None and inner.type == "identifier" else None
        declarator = declarator.child_by_field_name("declarator")
    return None


def _top_level(root: Node) -> Iterator[Node]:
    for child in root.children:
        if child.type in ("preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif"):
            yield from _top_level(child)
        else:
            yield child


@dataclass
class _Definition:
    node: Node
    kind: str


def _index(root: Node) -> Dict[str, _Definition]:
    """Top-level definitions by name (function bodies, typedefs, globals)."""
    index: Dict[str, _Definition] = {}
    for node in _top_level(root):
        if node.type == "function_definition":
            name = _function_name(node)
            if name:
                index[name] = _Definition(node, "function")
        elif node.type == "type_definition":
            for declarator in node.children_by_field_name("declarator"):
                for name in _declared_names(declarator):
                    index[name] = _Definition(node, "type")
            spec = node.child_by_field_name("type")
            if spec is not None and spec.type == "struct_specifier":
                tag = spec.child_by_field_name("name")
                if tag is not None:
                    index.setdefault("struct " + node_text(tag), _Definition(node, "type"))
        elif node.type == "declaration":
            for declarator in node.children_by_field_name("declarator"):
                for name in _declared_names(declarator):
                    index[name] = _Definition(node, "variable")
            spec = node.child_by_field_name("type")
            if spec is not None and spec.type == "struct_specifier" and spec.child_by_field_name("body"):
                tag = spec.child_by_field_name("name")
                if tag is not None:
                    index.setdefault("struct " + node_text(tag), _Definition(node, "type"))
    return index


def _references(node: Node) -> Set[str]:
    names: Set[str] = set()
    for sub in walk(node):
        if sub.type in ("identifier", "type_identifier"):
            names.add(node_text(sub))
        elif sub.type == "struct_specifier" and sub.child_by_field_name("body") is None:
            tag = sub.child_by_field_name("name")
            if tag is not None:
                names.add("struct " + node_text(tag))
    return names


def _calls(node: Node, callee: str) -> List[List[Node]]:
    """Argument lists of every call to @callee inside @node."""
    found = []
    for sub in walk(node):
        if sub.type == "call_expression":
            function = sub.child_by_field_name("function")
            args = sub.child_by_field_name("arguments")
            if function is not None and node_text(function) == callee and args is not None:
                found.append([a for a in args.named_children if a.type != "comment"])
    return found


def _first_error(node: Node) -> Optional[Node]:
    for sub in walk(node):
        if (sub.type == "ERROR" or sub.is_missing) and not _block_macro_call(sub):
            return sub
    return None


def _block_macro_call(missing: Node) -> bool:
    """The ';' a BLOCK_MACROS call lacks before its block (not an error)."""
    statement = missing.parent
    if not missing.is_missing or statement is None or statement.type != "expression_statement":
        return False
    call = statement.named_children[0] if statement.named_children else None
    following = statement.next_named_sibling
    return (call is not None and call.type == "call_expression"
            and node_text(call.child_by_field_name("function")) in BLOCK_MACROS
            and following is not None and following.type == "compound_statement")


def _rate_table(node: Node) -> Optional[Dict[str, int]]:
    """event -> line of each `[QAPI_EVENT_X] = ...` entry of a designated initializer."""
    entries: Dict[str, int] = {}
    pairs = [n for n in walk(node) if n.type == "initializer_pair"]
    if not pairs:
        return None
    for pair in pairs:
        designator = pair.child_by_field_name("designator")
        if designator is None or designator.type != "subscript_designator":
            continue
        event = node_text(designator.named_children[0])
        if not event.startswith(EVENT_PREFIX):
            return None
        entries[event[len(EVENT_PREFIX):]] = pair.start_point[0] + 1
    return entries


def function_node(extraction: Extraction, name: str) -> Node:
    """The tree-sitter function_definition of function @name of an extraction.

    Parsed from the extraction's own chunk (the source file may have changed
    since), padded so that node rows are the rows of the source file.
    """
    chunk = next((c for c in extraction.chunks if c.kind == "function" and c.name == name), None)
    if chunk is None:
        raise ExtractionError(f"{extraction.path}: the extraction has no function '{name}'")
    data = b"\n" * (chunk.line - 1) + chunk.text.encode("utf-8")
    root = Parser(_C).parse(data).root_node
    for node in _top_level(root):
        if node.type == "function_definition" and _function_name(node) == name:
            return node
    raise ExtractionError(f"{extraction.location(name)}: cannot parse function '{name}'")


def read_source(path: Path) -> bytes:
    """The bytes of a C file, or an ExtractionError that says what is wrong with it."""
    if not path.exists():
        raise ExtractionError(f"{path}: no such file or directory")
    if path.is_dir():
        raise ExtractionError(f"{path}: is a directory, not a monitor.c")
    try:
        data = read_input(path, "a monitor.c")
    except OSError as error:
        raise ExtractionError(f"{path}: cannot read: {error.strerror}") from None
    if not data.strip():
        raise ExtractionError(f"{path}: file is empty")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise ExtractionError(f"{path}: not a C source file (binary content)") from None
    if b"\0" in data:
        raise ExtractionError(f"{path}: not a C source file (binary content)")
    return data


def extract(path: Path) -> Extraction:
    """Extract the throttle code of the monitor.c at @path."""
    path = path.resolve() if path.exists() else path
    data = read_source(path)
    root = Parser(_C).parse(data).root_node
    index = _index(root)
    # A file cut short ends inside a definition; said when something is missing.
    end = len(data.rstrip())
    truncated = root.has_error and any(
        (n.type == "ERROR" or n.is_missing) and n.end_byte >= end for n in walk(root))
    hint = " (the file ends inside a definition: truncated, or not C?)" if truncated else ""

    def definition(name: str, role: str) -> Node:
        found = index.get(name)
        if found is None or found.kind != "function":
            raise ExtractionError(f"{path}: no {role} '{name}' defined{hint}")
        broken = _first_error(found.node)
        if broken is not None:
            raise ExtractionError(
                f"{path}:{broken.start_point[0] + 1}: cannot parse {role} '{name}' "
                "(truncated file, or not C?)")
        return found.node

    queue_name = next((n for n in QUEUE_FUNCTION_NAMES
                       if n in index and index[n].kind == "function"), None)
    if queue_name is None:
        raise ExtractionError(
            f"{path}: no QAPI event throttle found (no function "
            f"{' or '.join(QUEUE_FUNCTION_NAMES)}){hint or '; is this QEMU’s monitor/monitor.c?'}")
    queue = definition(queue_name, "queue function")

    def one_call(node: Node, callee: str, what: str) -> List[Node]:
        calls = _calls(node, callee)
        if not calls:
            raise ExtractionError(
                f"{path}:{node.start_point[0] + 1}: the queue function never calls {callee}() "
                f"(needed to find {what}){hint}")
        return calls[0]

    lookup_args = one_call(queue, "g_hash_table_lookup", "the throttle table")
    table_variable = node_text(lookup_args[0])
    timer_args = next((args for callee in ("timer_new_ns", "timer_new_ms", "timer_new")
                       for args in _calls(queue, callee)), None)
    if timer_args is None or len(timer_args) < 2:
        raise ExtractionError(f"{path}: the queue function arms no timer (timer_new_ns){hint}")
    handler_name = node_text(timer_args[1])
    record_args = next((args for callee in ("g_new", "g_new0")
                        for args in _calls(queue, callee)), None)
    if record_args is None:
        raise ExtractionError(
            f"{path}: the queue function allocates no state record (g_new){hint}")
    record_type = node_text(record_args[0])

    init_name = hash_name = equal_name = None
    for name, found in index.items():
        if found.kind != "function":
            continue
        for callee in ("g_hash_table_new", "g_hash_table_new_full"):
            for args in _calls(found.node, callee):
                parent = args[0].parent.parent if args else None  # type: ignore[union-attr]
                assignment = parent.parent if parent is not None else None
                if (assignment is not None and assignment.type == "assignment_expression"
                        and node_text(assignment.child_by_field_name("left")) == table_variable):
                    init_name, hash_name, equal_name = name, node_text(args[0]), node_text(args[1])
    if init_name is None or hash_name is None or equal_name is None:
        raise ExtractionError(
            f"{path}: no function creates the throttle table '{table_variable}' "
            f"with g_hash_table_new(hash, equal){hint}")
    roles = {"queue": queue_name, "handler": handler_name, "hash": hash_name,
             "equal": equal_name, "init": init_name}
    for role, name in roles.items():
        definition(name, {"queue": "queue function", "handler": "timer handler",
                          "hash": "hash callback", "equal": "equality callback",
                          "init": "table initialisation"}[role])

    # Everything the roles need from this file, by name, transitively.
    wanted: Set[str] = set()
    todo = list(roles.values())
    while todo:
        name = todo.pop()
        if name in wanted or name in SHIMMED or name not in index:
            continue
        wanted.add(name)
        todo.extend(_references(index[name].node))
    for name in wanted:
        broken = _first_error(index[name].node)
        if broken is not None:
            raise ExtractionError(
                f"{path}:{broken.start_point[0] + 1}: cannot parse '{name}' "
                "(truncated file, or not C?)")

    rates: Optional[Dict[str, int]] = None
    rate_table_name = ""
    for name in sorted(_references(queue) & wanted):
        if index[name].kind == "variable":
            rates = _rate_table(index[name].node)
            if rates is not None:
                rate_table_name = name
                break
    if rates is None:
        raise ExtractionError(f"{path}: the queue function reads no rate table "
                              f"([QAPI_EVENT_X] = {{ rate }} initialisers){hint}")

    chunks: List[Chunk] = []
    seen: Set[int] = set()
    locations: Dict[str, int] = {}
    for name in sorted(wanted, key=lambda n: index[n].node.start_byte):
        found = index[name]
        locations[name] = found.node.start_point[0] + 1
        if found.node.start_byte in seen:  # one declaration naming several things
            continue
        seen.add(found.node.start_byte)
        prototype = ""
        if found.kind == "function":
            body = found.node.child_by_field_name("body")
            head = data[found.node.start_byte:body.start_byte]  # type: ignore[union-attr]
            prototype = head.decode("utf-8").rstrip() + ";"
        chunks.append(Chunk(name, found.kind, found.node.start_point[0] + 1,
                            node_text(found.node), prototype))

    identifiers: Set[str] = set()
    calls: Set[str] = set()
    for chunk_name in wanted:
        node = index[chunk_name].node
        identifiers |= _references(node)
        for sub in walk(node):
            if sub.type == "call_expression":
                calls.add(node_text(sub.child_by_field_name("function")))
    events = sorted({n[len(EVENT_PREFIX):] for n in identifiers
                     if n.startswith(EVENT_PREFIX) and n != EVENT_PREFIX + "_MAX"}
                    | set(rates))
    traces = sorted(n for n in calls if re.fullmatch(r"trace_\w+", n))
    return Extraction(path=path, chunks=tuple(chunks), roles=roles, record_type=record_type,
                      table_variable=table_variable, rate_table_name=rate_table_name,
                      rate_entries=rates, events_named=tuple(events), trace_points=tuple(traces),
                      locations=locations)
