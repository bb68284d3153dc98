"""Semantics-preserving rewrites of a monitor.c's throttle functions, made with tree-sitter.

For the metamorphic test (tests/test_metamorphic.py): each rewrite changes how the
hash, the equality or the queue function is written, never what it does, so every
verdict must stay what it was. The rewrites are generated from the syntax tree of
the file at test time (QEMU's own source is an input, never copied here):

* ``!strcmp(a, b)`` as ``strcmp(a, b) == 0``, ``0 == strcmp(a, b)``, ``g_str_equal(a, b)``,
  or ``strcmp(a, b) ? FALSE : TRUE``;
* an if's condition moved into a ``bool`` local;
* a run of ``if (x == QAPI_EVENT_A || x == QAPI_EVENT_B) {...}`` as a ``switch`` with
  fall-through labels, or as an ``else if`` chain;
* early returns as one result variable;
* a member read moved into a local;
* a comparison or a hash of a member extracted into a static helper;
* ``QEMU_LOCK_GUARD`` as explicit ``qemu_mutex_lock``/``qemu_mutex_unlock``, or as
  ``WITH_QEMU_LOCK_GUARD``;
* ``h += x`` as ``h = h + x``, an if's body in ``do { } while (0)``, a hash's seed cast,
  ``A || B`` by De Morgan, ``TRUE``/``FALSE`` as ``1``/``0``, operands of ``==`` swapped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import tree_sitter_c
from tree_sitter import Language, Node, Parser

from qthrottle.harness.extract import Extraction, named_children, node_text, walk

_PARSER = Parser(Language(tree_sitter_c.language()))
Edit = Tuple[int, int, str]  # start byte, end byte, replacement


@dataclass(frozen=True)
class Rewrite:
    kind: str  # the family, as the module docstring lists them
    where: str  # function:line of the site
    source: bytes  # the whole rewritten file


def apply(source: bytes, edits: Sequence[Edit]) -> bytes:
    """@source with @edits (non-overlapping) applied."""
    out = source
    for start, end, text in sorted(edits, key=lambda e: e[0], reverse=True):
        out = out[:start] + text.encode("utf-8") + out[end:]
    return out


def _functions(source: bytes, names: Dict[str, str]) -> Dict[str, Node]:
    """role -> function_definition node, for the roles in @names (role -> function name)."""
    wanted = {name: role for role, name in names.items()}
    found: Dict[str, Node] = {}
    for node in walk(_PARSER.parse(source).root_node):
        if node.type != "function_definition":
            continue
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.type != "function_declarator":
            declarator = declarator.child_by_field_name("declarator")
        name = node_text(declarator.child_by_field_name("declarator")) if declarator else ""
        if name in wanted:
            found[wanted[name]] = node
    return found


def _line(node: Node) -> int:
    return node.start_point[0] + 1


def _indent(source: bytes, node: Node) -> str:
    start = source.rfind(b"\n", 0, node.start_byte) + 1
    prefix = source[start:node.start_byte].decode("utf-8")
    return prefix if not prefix.strip() else " " * len(prefix)


def _callee(node: Node) -> str:
    return node_text(node.child_by_field_name("function")) if node.type == "call_expression" \
        else ""


def _args(call: Node) -> List[Node]:
    args = call.child_by_field_name("arguments")
    return named_children(args) if args is not None else []


def _in_compound(node: Node) -> bool:
    return node.parent is not None and node.parent.type == "compound_statement"


def _statement_of(node: Node) -> Optional[Node]:
    """The statement directly in a block that holds @node."""
    current: Optional[Node] = node
    while current is not None and not (_in_compound(current) and
                                       current.type.endswith("statement")):
        current = current.parent
    return current


# ------------------------------------------------------------------ families
# Each family yields (site node, edits) for one function.

Family = Callable[[bytes, Node], Iterator[Tuple[Node, List[Edit]]]]


def _negated_strcmps(function: Node) -> Iterator[Tuple[Node, Node]]:
    for node in walk(function):
        if node.type == "unary_expression" and node_text(
                node.child_by_field_name("operator")) == "!":
            argument = node.child_by_field_name("argument")
            if argument is not None and _callee(argument) == "strcmp":
                yield node, argument


def strcmp_forms(form: str) -> Family:
    def family(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
        for negation, call in _negated_strcmps(function):
            a, b = (node_text(x) for x in _args(call))
            text = {"== 0": f"strcmp({a}, {b}) == 0", "0 ==": f"0 == strcmp({a}, {b})",
                    "g_str_equal": f"g_str_equal({a}, {b})",
                    "ternary": f"(strcmp({a}, {b}) ? FALSE : TRUE)"}[form]
            yield negation, [(negation.start_byte, negation.end_byte, text)]
    return family


def _ifs(function: Node) -> Iterator[Node]:
    yield from (n for n in walk(function) if n.type == "if_statement" and _in_compound(n))


def condition_in_local(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for number, statement in enumerate(_ifs(function)):
        condition = statement.child_by_field_name("condition")
        assert condition is not None
        name = f"qthrottle_cond{number}"
        yield statement, [
            (statement.start_byte, statement.start_byte,
             f"bool {name} = {node_text(condition)};\n{_indent(source, statement)}"),
            (condition.start_byte, condition.end_byte, f"({name})")]


def _event_tests(condition: Node) -> Optional[Tuple[str, List[str]]]:
    """(subject, events) of `(s == QAPI_EVENT_A || s == QAPI_EVENT_B ...)`."""
    node = named_children(condition)[0] if condition.type == "parenthesized_expression" \
        else condition
    if node.type == "binary_expression" and node_text(node.child_by_field_name(
            "operator")) == "||":
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        assert left is not None and right is not None
        a, b = _event_tests(left), _event_tests(right)
        if a is None or b is None or a[0] != b[0]:
            return None
        return a[0], a[1] + b[1]
    if node.type == "binary_expression" and node_text(node.child_by_field_name(
            "operator")) == "==":
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        if right is not None and node_text(right).startswith("QAPI_EVENT_"):
            return node_text(left), [node_text(right)]
    return None


def _event_runs(function: Node) -> Iterator[List[Tuple[Node, str, List[str]]]]:
    """Maximal runs (2 or more) of consecutive else-less ifs testing one subject's event."""
    body = function.child_by_field_name("body")
    assert body is not None
    run: List[Tuple[Node, str, List[str]]] = []
    for child in named_children(body) + [body]:  # the body itself ends the last run
        test = None
        if child.type == "if_statement" and child.child_by_field_name("alternative") is None:
            condition = child.child_by_field_name("condition")
            test = _event_tests(condition) if condition is not None else None
        if test is not None and (not run or run[0][1] == test[0]):
            run.append((child, *test))
            continue
        if len(run) >= 2:
            yield run
        run = [(child, *test)] if test is not None else []


def _block(node: Node) -> str:
    """The statements of an if's consequence, as text."""
    if node.type == "compound_statement":
        return "\n".join(node_text(c) for c in named_children(node))
    return node_text(node)


def if_chain_as_switch(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for run in _event_runs(function):
        first = run[0][0]
        pad = _indent(source, first)
        cases = []
        for statement, _, events in run:
            body = statement.child_by_field_name("consequence")
            assert body is not None
            labels = "".join(f"{pad}case {e}:\n" for e in events)
            cases.append(f"{labels}{pad}    {{\n{pad}        {_block(body)}\n{pad}    }}\n"
                         f"{pad}    break;\n")
        text = (f"switch ({run[0][1]}) {{\n" + "".join(cases)
                + f"{pad}default:\n{pad}    break;\n{pad}}}")
        yield first, [(first.start_byte, run[-1][0].end_byte, text)]


def if_chain_as_else_if(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for run in _event_runs(function):
        first = run[0][0]
        text = " else ".join(node_text(statement) for statement, _, _ in run)
        yield first, [(first.start_byte, run[-1][0].end_byte, text)]


def result_variable(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    """`if (c) { return e; } ... return f;` (after the declarations) as one result variable."""
    body = function.child_by_field_name("body")
    kind = function.child_by_field_name("type")
    assert body is not None and kind is not None
    statements = [c for c in named_children(body) if c.type != "declaration"]
    if len(statements) < 2 or statements[-1].type != "return_statement":
        return
    arms = []
    for statement in statements[:-1]:
        body_node = statement.child_by_field_name("consequence") \
            if statement.type == "if_statement" else None
        inner = named_children(body_node) if body_node is not None and \
            body_node.type == "compound_statement" else [body_node] if body_node else []
        if statement.child_by_field_name("alternative") is not None or len(inner) != 1 \
                or inner[0] is None or inner[0].type != "return_statement":
            return
        condition = statement.child_by_field_name("condition")
        assert condition is not None
        arms.append((node_text(condition), node_text(named_children(inner[0])[0])))
    pad = _indent(source, statements[0])
    final = node_text(named_children(statements[-1])[0])
    text = f"{node_text(kind)} qthrottle_result;\n\n{pad}"
    text += " else ".join(f"if {c} {{\n{pad}    qthrottle_result = {e};\n{pad}}}"
                          for c, e in arms)
    text += f" else {{\n{pad}    qthrottle_result = {final};\n{pad}}}\n{pad}return qthrottle_result;"
    yield statements[0], [(statements[0].start_byte, statements[-1].end_byte, text)]


def _member_reads(function: Node) -> Iterator[Node]:
    for node in walk(function):
        if _callee(node) == "qdict_get_str" and len(_args(node)) == 2 and \
                _args(node)[1].type == "string_literal":
            yield node


def member_in_local(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for number, read in enumerate(_member_reads(function)):
        statement = _statement_of(read)
        if statement is None or statement.type not in ("expression_statement",
                                                       "return_statement"):
            continue
        name = f"qthrottle_member{number}"
        yield read, [(statement.start_byte, statement.start_byte,
                      f"const char *{name} = {node_text(read)};\n{_indent(source, statement)}"),
                     (read.start_byte, read.end_byte, name)]


HELPER_COMPARE = """static bool qthrottle_same_member(QDict *a, QDict *b, const char *member)
{
    return !strcmp(qdict_get_str(a, member), qdict_get_str(b, member));
}

"""
HELPER_HASH = """static unsigned int qthrottle_member_hash(QDict *data, const char *member)
{
    return g_str_hash(qdict_get_str(data, member));
}

"""


def _compared_members(function: Node) -> Iterator[Tuple[Node, str, str, str]]:
    """`!strcmp(qdict_get_str(A, "m"), qdict_get_str(B, "m"))`: (node, A, B, "m")."""
    for negation, call in _negated_strcmps(function):
        reads = _args(call)
        if len(reads) == 2 and all(_callee(r) == "qdict_get_str" for r in reads):
            (a, m1), (b, m2) = ((_args(r)[0], _args(r)[1]) for r in reads)
            if node_text(m1) == node_text(m2):
                yield negation, node_text(a), node_text(b), node_text(m1)


def compare_in_helper(every: bool) -> Family:
    def family(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
        sites = list(_compared_members(function))
        helper = (function.start_byte, function.start_byte, HELPER_COMPARE)
        groups = [sites] if every and sites else [] if every else [[s] for s in sites]
        for group in groups:
            yield group[0][0], [helper] + [
                (n.start_byte, n.end_byte, f"qthrottle_same_member({a}, {b}, {m})")
                for n, a, b, m in group]
    return family


def hash_in_helper(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    sites = [n for n in walk(function) if _callee(n) == "g_str_hash" and
             _callee(_args(n)[0]) == "qdict_get_str"]
    if sites:
        edits: List[Edit] = [(function.start_byte, function.start_byte, HELPER_HASH)]
        for site in sites:
            data, member = (node_text(a) for a in _args(_args(site)[0]))
            edits.append((site.start_byte, site.end_byte,
                          f"qthrottle_member_hash({data}, {member})"))
        yield sites[0], edits


def _lock_guards(function: Node) -> Iterator[Node]:
    body = function.child_by_field_name("body")
    assert body is not None
    for statement in named_children(body):
        if statement.type == "expression_statement" and named_children(statement) and \
                _callee(named_children(statement)[0]) == "QEMU_LOCK_GUARD":
            yield statement


def explicit_lock(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for guard in _lock_guards(function):
        lock = node_text(_args(named_children(guard)[0])[0])
        body = function.child_by_field_name("body")
        assert body is not None
        returns = [n for n in walk(body) if n.type == "return_statement"
                   and n.start_byte > guard.end_byte]
        if any(not _in_compound(r) for r in returns):
            continue  # a return that is a lone if-body would need braces: not this family's
        edits: List[Edit] = [(guard.start_byte, guard.end_byte, f"qemu_mutex_lock({lock});")]
        edits += [(r.start_byte, r.start_byte,
                   f"qemu_mutex_unlock({lock});\n{_indent(source, r)}") for r in returns]
        close = body.end_byte - 1  # before the closing brace
        edits.append((close, close, f"    qemu_mutex_unlock({lock});\n"))
        yield guard, edits


def with_lock_guard(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for guard in _lock_guards(function):
        lock = node_text(_args(named_children(guard)[0])[0])
        body = function.child_by_field_name("body")
        assert body is not None
        rest = [c for c in named_children(body) if c.start_byte > guard.end_byte]
        if not rest:
            continue
        inner = "\n".join(f"    {line}" if line else line for line in source[
            rest[0].start_byte:rest[-1].end_byte].decode("utf-8").split("\n"))
        yield guard, [(guard.start_byte, rest[-1].end_byte,
                       f"WITH_QEMU_LOCK_GUARD({lock}) {{\n{_indent(source, guard)}    "
                       f"{inner.lstrip()}\n{_indent(source, guard)}}}")]


def accumulate_longhand(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for node in walk(function):
        if node.type == "assignment_expression" and node_text(
                node.child_by_field_name("operator")) == "+=":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            yield node, [(node.start_byte, node.end_byte,
                          f"{node_text(left)} = {node_text(left)} + ({node_text(right)})")]


def body_in_do_while(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for statement in _ifs(function):
        body = statement.child_by_field_name("consequence")
        if body is not None and body.type == "compound_statement" and not any(
                n.type in ("break_statement", "continue_statement") for n in walk(body)):
            yield statement, [(body.start_byte, body.end_byte,
                               f"{{\n{_indent(source, statement)}    do {node_text(body)} "
                               f"while (0);\n{_indent(source, statement)}}}")]


def seed_cast(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    """`T h = e;` (an unsigned accumulator) as `T h = (T)(e);`."""
    for node in walk(function):
        if node.type == "declaration" and node_text(node.child_by_field_name("type")) in (
                "unsigned int", "guint"):
            for declarator in node.children_by_field_name("declarator"):
                value = declarator.child_by_field_name("value")
                if declarator.type == "init_declarator" and value is not None:
                    kind = node_text(node.child_by_field_name("type"))
                    yield node, [(value.start_byte, value.end_byte,
                                  f"({kind})({node_text(value)})")]


def de_morgan(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    for node in walk(function):
        if node.type == "binary_expression" and node_text(
                node.child_by_field_name("operator")) == "||" and \
                node.parent is not None and node.parent.type == "parenthesized_expression":
            left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
            yield node, [(node.start_byte, node.end_byte,
                          f"!(!({node_text(left)}) && !({node_text(right)}))")]


def boolean_literals(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    sites = [n for n in walk(function) if n.type in ("true", "false")
             and node_text(n) in ("TRUE", "FALSE")]
    if sites:
        yield sites[0], [(n.start_byte, n.end_byte, "1" if node_text(n) == "TRUE" else "0")
                         for n in sites]


def swapped_equalities(source: bytes, function: Node) -> Iterator[Tuple[Node, List[Edit]]]:
    sites = [n for n in walk(function) if n.type == "binary_expression"
             and node_text(n.child_by_field_name("operator")) in ("==", "!=")]
    if sites:
        yield sites[0], [(n.start_byte, n.end_byte,
                          f"{node_text(n.child_by_field_name('right'))} "
                          f"{node_text(n.child_by_field_name('operator'))} "
                          f"{node_text(n.child_by_field_name('left'))}") for n in sites
                         if not any(o is not n and o.start_byte <= n.start_byte and
                                    n.end_byte <= o.end_byte for o in sites)]


# family name -> (family, roles it rewrites)
FAMILIES: Dict[str, Tuple[Family, Tuple[str, ...]]] = {
    "!strcmp as strcmp() == 0": (strcmp_forms("== 0"), ("equal", "queue")),
    "!strcmp as 0 == strcmp()": (strcmp_forms("0 =="), ("equal", "queue")),
    "!strcmp as g_str_equal": (strcmp_forms("g_str_equal"), ("equal", "queue")),
    "!strcmp as a ternary": (strcmp_forms("ternary"), ("equal", "queue")),
    "condition in a bool local": (condition_in_local, ("hash", "equal", "queue")),
    "if chain as a switch": (if_chain_as_switch, ("hash", "equal")),
    "if chain as else if": (if_chain_as_else_if, ("hash", "equal")),
    "early returns as a result variable": (result_variable, ("equal",)),
    "member read in a local": (member_in_local, ("hash", "equal")),
    "comparison in a helper": (compare_in_helper(every=False), ("equal",)),
    "every comparison in a helper": (compare_in_helper(every=True), ("equal",)),
    "hash of a member in a helper": (hash_in_helper, ("hash",)),
    "QEMU_LOCK_GUARD as lock/unlock": (explicit_lock, ("queue", "handler")),
    "QEMU_LOCK_GUARD as WITH_QEMU_LOCK_GUARD": (with_lock_guard, ("queue", "handler")),
    "h += x as h = h + x": (accumulate_longhand, ("hash",)),
    "if body in do { } while (0)": (body_in_do_while, ("hash",)),
    "hash seed cast": (seed_cast, ("hash",)),
    "A || B by De Morgan": (de_morgan, ("hash", "equal")),
    "TRUE/FALSE as 1/0": (boolean_literals, ("equal",)),
    "operands of == swapped": (swapped_equalities, ("hash", "equal", "queue")),
}


def rewrites(extraction: Extraction) -> List[Rewrite]:
    """Every rewrite of every family at every site of the extraction's source file."""
    source = extraction.path.read_bytes()
    found: List[Rewrite] = []
    for kind, (family, roles) in FAMILIES.items():
        functions = _functions(source, {r: extraction.roles[r] for r in roles})
        for role in roles:
            function = functions[role]
            for site, edits in family(source, function):
                found.append(Rewrite(kind, f"{extraction.roles[role]}:{_line(site)}",
                                     apply(source, edits)))
    return found
