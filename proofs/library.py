"""Models of the QEMU and GLib functions the throttle code calls, for the translator.

QDict reads are reads of a symbolic record's members: qdict_get_str/int/bool
abort QEMU when the member is absent or of another type (an obligation of
invariant 7, after which the path assumes the read passed); the _try_ getters
return NULL or their default instead. strcmp & co compare z3 strings (C strings
hold no NUL: the records say so) and crash on NULL, another obligation.
g_str_hash is an uninterpreted function: a proof holds for every hash function.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List

import z3
from tree_sitter import Node

from .execution import FALSE, TRUE, Abort, State, Term, conj, named, neg, text
from .values import (
    CBool,
    CInt,
    CStr,
    DataDict,
    EventQDict,
    Ordering,
    Value,
    ctype,
    describe,
    merge,
    to_int,
)

if TYPE_CHECKING:
    from .translate import Executor

ABORTING_READERS = {"qdict_get_str": "str", "qdict_get_int": "int", "qdict_get_bool": "bool"}
TRY_READERS = {"qdict_get_try_str": "str", "qdict_get_try_int": "int",
               "qdict_get_try_bool": "bool"}
STRING_FUNCTIONS = frozenset({"strcmp", "strncmp", "g_str_equal", "g_strcmp0", "g_str_hash"})


def qobject_to(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    """Only qobject_to(QDict, qdict_get(<the event's QDict>, "data"))."""
    inner = args[1] if len(args) == 2 and text(args[0]) == "QDict" else None
    if inner is not None and inner.type == "call_expression" and text(
            inner.child_by_field_name("function")) == "qdict_get":
        inner_args = named(inner.child_by_field_name("arguments") or inner)
        if len(inner_args) == 2 and ex.member_name(inner_args[1]) == "data":
            container = ex.eval(inner_args[0], state, guard)
            if isinstance(container, EventQDict):
                return DataDict(container.record)
    raise ex.unsupported(node, "qobject_to() of something else than the event's "
                         "\"data\" (qobject_to(QDict, qdict_get(qdict, \"data\")))")


def read(ex: Executor, node: Node, name: str, args: List[Node], state: State,
         guard: Term) -> Value:
    if len(args) < 2:
        raise ex.unsupported(node, f"{name}() with {len(args)} argument(s)")
    container = ex.eval(args[0], state, guard)
    member = ex.member_name(args[1])
    if member is None:
        raise ex.unsupported(node, f"{name}() with a member name that is not a "
                             "string literal")
    if not isinstance(container, DataDict):
        raise ex.unsupported(node, f"{name}() on {describe(container)} (only the "
                             "event's data dict is modelled)")
    record = container.record
    present = record.present(member)
    if name == "qdict_haskey":
        return CBool(present)
    kind = ABORTING_READERS.get(name) or TRY_READERS[name]
    readable = conj(present, record.kind_ok(member, kind))
    value = record.value(member, kind)
    if name in ABORTING_READERS:
        ex.aborts.append(Abort(
            ex.role, ex.frames[-1].function, node.start_point[0] + 1, record, member,
            conj(state.pc, guard), neg(present), conj(present, neg(readable)), text(node)))
        state.pc = conj(state.pc, z3.Implies(guard, readable))
        readable = TRUE
    if kind == "str":
        return CStr(value, neg(readable), (record, member))
    read: Value = CInt(value, True) if kind == "int" else CBool(value)
    if name in ABORTING_READERS:
        return read
    if len(args) < 3:
        raise ex.unsupported(node, f"{name}() without a default value")
    default = ex.converted(args[2], ex.eval(args[2], state, guard),
                           ctype("int64_t" if kind == "int" else "bool", False))
    return merge([(readable, read), (neg(readable), default)])


def string_call(ex: Executor, node: Node, name: str, args: List[Node], state: State,
                guard: Term) -> Value:
    values = [ex.eval(a, state, guard) for a in args]
    count = 1 if name == "g_str_hash" else 2
    strings = [v for v in values[:count] if isinstance(v, CStr)]
    if len(values) < count or len(strings) != count:
        raise ex.unsupported(node, f"{name}() on something else than strings")
    a = strings[0]
    if name == "g_str_hash":
        not_null(ex, node, strings, state, guard)
        ex.ctx.hashed.append(a.text)
        return CInt(ex.ctx.str_hash(a.text), False)
    b = strings[1]
    if name == "g_strcmp0":  # NULL sorts before every string
        return Ordering(z3.If(a.null, z3.Not(b.null), z3.If(b.null, FALSE, a.text < b.text)),
                        z3.If(a.null, b.null, z3.If(b.null, FALSE, a.text == b.text)),
                        ex.ctx.magnitude(a.text, b.text))
    not_null(ex, node, strings, state, guard)
    if name == "g_str_equal":
        return CBool(a.text == b.text)
    left, right = a.text, b.text
    if name == "strncmp":
        if len(values) != 3:
            raise ex.unsupported(node, "strncmp() without a length")
        length = z3.simplify(to_int(values[2]).term)
        if not z3.is_bv_value(length):
            raise ex.unsupported(node, "strncmp() with a length that is not a constant")
        count_term = z3.IntVal(length.as_long())
        left = z3.SubString(left, 0, count_term)
        right = z3.SubString(right, 0, count_term)
    return Ordering(left < right, left == right, ex.ctx.magnitude(left, right))


def not_null(ex: Executor, node: Node, strings: List[CStr], state: State, guard: Term) -> None:
    """Passing NULL to strcmp & co crashes QEMU: an obligation, like an absent member."""
    for string in strings:
        if z3.is_false(z3.simplify(string.null)):
            continue
        record, member = string.origin if string.origin is not None else (None, None)
        ex.aborts.append(Abort(ex.role, ex.frames[-1].function, node.start_point[0] + 1,
                               record, member, conj(state.pc, guard), string.null, FALSE,
                               text(node)))
        state.pc = conj(state.pc, z3.Implies(guard, z3.Not(string.null)))
