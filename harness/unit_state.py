"""The throttle's own state outside the heap: the global variables of the extracted code.

The driver starts a run over in the same process, instead of forking a fresh one,
only when that is exactly a fresh process (shims/driver.c); part of that is that
the throttle's globals are as its init function left them, and that it keeps no
state in static locals, which the driver cannot see. ``state_glue`` is the C that
lets the driver save, compare and restore those globals.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import tree_sitter_c
from tree_sitter import Language, Node, Parser

from .extract import Extraction, node_text, walk

_PARSER = Parser(Language(tree_sitter_c.language()))


@dataclass(frozen=True)
class UnitState:
    """The extracted code's global variables, and the functions with static locals."""

    globals: Tuple[str, ...]
    static_locals: Tuple[str, ...]  # functions declaring one


def _declared(declarator: Node) -> Iterator[str]:
    """The name a declarator declares (x, *x, x[N], x = init); none for a prototype."""
    current: Optional[Node] = declarator
    while current is not None and current.type != "identifier":
        if current.type == "function_declarator":
            return
        current = current.child_by_field_name("declarator")
    if current is not None:
        yield node_text(current)


def _storage(declaration: Node) -> List[str]:
    return [node_text(c) for c in declaration.children if c.type == "storage_class_specifier"]


def unit_state(extraction: Extraction) -> UnitState:
    names: List[str] = []
    static_locals: List[str] = []
    for chunk in extraction.chunks:
        root = _PARSER.parse(chunk.text.encode("utf-8")).root_node
        if chunk.kind == "variable":
            for node in root.children:
                if node.type == "declaration" and "extern" not in _storage(node):
                    for declarator in node.children_by_field_name("declarator"):
                        names += [n for n in _declared(declarator) if n not in names]
        elif chunk.kind == "function":
            body = [n for n in walk(root) if n.type == "compound_statement"]
            if body and any(n.type == "declaration" and "static" in _storage(n)
                            for n in walk(body[0])):
                static_locals.append(chunk.name)
    return UnitState(tuple(names), tuple(static_locals))


def state_glue(state: UnitState) -> str:
    """qthrottle_glue_state_size/save/equals/restore over the globals, and whether there
    are static locals. A global is written back only when it differs, so that a const
    one (never different) is never written."""
    size = " + ".join(["0", *(f"sizeof({n})" for n in state.globals)])
    save = "".join(f"    memcpy(to, (const void *)&{n}, sizeof({n})); to += sizeof({n});\n"
                   for n in state.globals)
    equals = "".join(f"    if (memcmp((const void *)&{n}, from, sizeof({n}))) {{\n"
                     f"        return false;\n    }}\n    from += sizeof({n});\n"
                     for n in state.globals)
    restore = "".join(f"    if (memcmp((const void *)&{n}, from, sizeof({n}))) {{\n"
                      f"        memcpy((void *)&{n}, from, sizeof({n}));\n    }}\n"
                      f"    from += sizeof({n});\n" for n in state.globals)
    return (
        f"size_t qthrottle_glue_state_size(void) {{ return {size}; }}\n"
        f"void qthrottle_glue_state_save(unsigned char *to)\n{{\n    (void)to;\n{save}}}\n"
        "bool qthrottle_glue_state_equals(const unsigned char *from)\n"
        f"{{\n    (void)from;\n{equals}    return true;\n}}\n"
        "void qthrottle_glue_state_restore(const unsigned char *from)\n"
        f"{{\n    (void)from;\n{restore}}}\n"
        "/* Functions with static locals: "
        f"{', '.join(state.static_locals) or 'none'}. */\n"
        f"const bool qthrottle_glue_static_locals = {'true' if state.static_locals else 'false'};\n")
