"""What the library calls of the throttle code mean: one table, each entry written once.

LIBRARY maps a function (or macro) name to its model: a sentence saying what it
means for the proofs (README.md lists them) and the function that translates a
call. QDict reads are reads of a symbolic record's members: the getters that
abort QEMU on a missing or mistyped member (qdict_get_str/int/bool) leave an
obligation of invariant 7 and the path goes on assuming the read passed; the
_try_ getters return NULL or their default instead. GLib's hash functions are
uninterpreted: a proof holds for every hash function. Locks and trace points
are sequential no-ops; assert & co abort when their condition fails, which is
an obligation of invariant 7 too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

import z3
from tree_sitter import Node

from .execution import FALSE, TRUE, Abort, State, Term, conj, neg, text
from .values import (
    CBool,
    CInt,
    CStr,
    DataDict,
    DataObject,
    EventQDict,
    MemberObject,
    NullPtr,
    Opaque,
    Ordering,
    Pointer,
    Unreachable,
    Value,
    ctype,
    describe,
    merge,
    resize,
    to_int,
)

if TYPE_CHECKING:
    from .translate import Executor

Apply = Callable[["Executor", Node, List[Node], State, Term], Value]


@dataclass(frozen=True)
class Model:
    meaning: str  # for people (README.md's table is checked against it)
    apply: Apply


# ------------------------------------------------------------- QDict reads

GETTER_KINDS = {"QString": "str", "QNum": "int", "QBool": "bool"}


def _member_names(ex: Executor, node: Node, arg: Node, state: State,
                  guard: Term) -> List[Tuple[Term, str]]:
    """The member a reader reads: a string literal, or a string that is one of a few
    literals (a helper returning the key member's name). A NULL name crashes QEMU."""
    literal = ex.member_name(arg)
    if literal is not None:
        return [(TRUE, literal)]
    name = ex.eval(arg, state, guard)
    leaves = _string_constants(name.text) if isinstance(name, CStr) else None
    if leaves is None:
        raise ex.unsupported(node, f"{text(node.child_by_field_name('function'))}() with a "
                             "member name that is neither a literal nor one of a few literals")
    assert isinstance(name, CStr)
    if not z3.is_false(z3.simplify(name.null)):
        _abort(ex, node, state, guard, name.null)
    return [(z3.simplify(name.text == z3.StringVal(leaf)), leaf) for leaf in leaves]


def _string_constants(term: Term) -> Optional[List[str]]:
    """The string literals an if-then-else tree of literals can be (None: not such a tree)."""
    if z3.is_string_value(term):
        return [term.as_string()]
    if z3.is_app_of(term, z3.Z3_OP_ITE):
        left, right = _string_constants(term.arg(1)), _string_constants(term.arg(2))
        if left is None or right is None:
            return None
        return list(dict.fromkeys(left + right))
    return None


def _data(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> DataDict:
    container = ex.eval(args[0], state, guard)
    if not isinstance(container, DataDict):
        raise ex.unsupported(node, f"{text(node.child_by_field_name('function'))}() on "
                             f"{describe(container)} (only the event's data dict is modelled)")
    return container


def _arity(ex: Executor, node: Node, args: List[Node], count: int) -> None:
    if len(args) != count:
        raise ex.unsupported(node, f"{text(node.child_by_field_name('function'))}() with "
                             f"{len(args)} argument(s)")


def _by_member(ex: Executor, node: Node, args: List[Node], state: State, guard: Term,
               read: Callable[[DataDict, str, Term], Value]) -> Value:
    """@read for each member the name argument can be, merged."""
    data = _data(ex, node, args, state, guard)
    choices = _member_names(ex, node, args[1], state, guard)
    return merge([(condition, read(data, member, conj(guard, condition)))
                  for condition, member in choices])


def qdict_get(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 2)
    container = ex.eval(args[0], state, guard)
    if isinstance(container, EventQDict) and ex.member_name(args[1]) == "data":
        return DataObject(container.record)

    def read(data: DataDict, member: str, where: Term) -> Value:
        ex.accessed(node, data.record, member, state, where)
        return MemberObject(data.record, member, data.record.present(member))
    return _by_member(ex, node, args, state, guard, read)


def qdict_get_qdict(ex: Executor, node: Node, args: List[Node], state: State,
                    guard: Term) -> Value:
    _arity(ex, node, args, 2)
    container = ex.eval(args[0], state, guard)
    if isinstance(container, EventQDict) and ex.member_name(args[1]) == "data":
        return DataDict(container.record)
    raise ex.unsupported(node, "qdict_get_qdict() of something else than the event's \"data\"")


def qdict_haskey(ex: Executor, node: Node, args: List[Node], state: State,
                 guard: Term) -> Value:
    _arity(ex, node, args, 2)

    def read(data: DataDict, member: str, where: Term) -> Value:
        ex.accessed(node, data.record, member, state, where)
        return CBool(data.record.present(member))
    return _by_member(ex, node, args, state, guard, read)


def getter(kind: str, aborting: bool) -> Apply:
    """qdict_get_<kind> (aborting) or qdict_get_try_<kind>."""
    def apply(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
        with_default = not aborting and kind != "str"
        _arity(ex, node, args, 3 if with_default else 2)
        default: Optional[Value] = None
        if with_default:
            default = ex.converted(args[2], ex.eval(args[2], state, guard),
                                   ctype("int64_t" if kind == "int" else "bool", False))

        def read(data: DataDict, member: str, where: Term) -> Value:
            record = data.record
            ex.accessed(node, record, member, state, where)
            present = record.present(member)
            readable = conj(present, record.kind_ok(member, kind))
            value = record.value(member, kind)
            if aborting:
                ex.aborts.append(Abort(
                    ex.role, ex.frames[-1].function, node.start_point[0] + 1, record, member,
                    kind, conj(state.pc, where), neg(present), conj(present, neg(readable)),
                    FALSE, text(node)))
                state.pc = conj(state.pc, z3.Implies(where, readable))
                readable = TRUE
            if kind == "str":
                return CStr(value, neg(readable), (record, member))
            found: Value = CInt(value, True) if kind == "int" else CBool(value)
            if default is None:
                return found
            return merge([(readable, found), (neg(readable), default)])
        return _by_member(ex, node, args, state, guard, read)
    return apply


def qobject_to(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    """qobject_to(QDict, <"data">) is the data dict; qobject_to(QString|QNum|QBool,
    <member>) the member when it has that type, else NULL."""
    _arity(ex, node, args, 2)
    wanted = text(args[0])
    obj = ex.eval(args[1], state, guard)
    if wanted == "QDict" and isinstance(obj, DataObject):
        return DataDict(obj.record)
    if wanted in GETTER_KINDS and isinstance(obj, MemberObject) and obj.kind is None:
        kind = GETTER_KINDS[wanted]
        return MemberObject(obj.record, obj.member,
                            conj(obj.live, obj.record.kind_ok(obj.member, kind)), kind)
    if isinstance(obj, NullPtr):
        return obj
    raise ex.unsupported(node, f"qobject_to({wanted}, ...) of {describe(obj)}")


# ---------------------------------------------------------- strings, hashes

def _strings(ex: Executor, node: Node, args: List[Node], state: State, guard: Term,
             count: int) -> List[CStr]:
    values = [ex.eval(a, state, guard) for a in args]
    strings = [v for v in values[:count] if isinstance(v, CStr)]
    if len(strings) != count:
        raise ex.unsupported(node, f"{text(node.child_by_field_name('function'))}() on "
                             "something else than strings")
    return strings


def not_null(ex: Executor, node: Node, strings: List[CStr], state: State, guard: Term) -> None:
    """Passing NULL to strcmp & co crashes QEMU: an obligation, like a missing member."""
    for string in strings:
        null = string.null
        if z3.is_false(z3.simplify(null)):
            continue
        record, member = string.origin if string.origin is not None else (None, None)
        absent = mistyped = FALSE
        if record is not None and member is not None:
            present = record.present(member)
            typed = record.kind_ok(member, "str")
            absent, mistyped = conj(null, neg(present)), conj(null, present, neg(typed))
            null = conj(null, present, typed)
        ex.aborts.append(Abort(ex.role, ex.frames[-1].function, node.start_point[0] + 1,
                               record, member, "str", conj(state.pc, guard), absent, mistyped,
                               null, text(node)))
        state.pc = conj(state.pc, z3.Implies(guard, z3.Not(string.null)))


def g_str_hash(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 1)
    (string,) = _strings(ex, node, args, state, guard, 1)
    not_null(ex, node, [string], state, guard)
    ex.ctx.hashed.append(("g_str_hash", string.text))
    return CInt(ex.ctx.hash_function("g_str_hash", z3.StringSort())(string.text), False)


def _pointed(ex: Executor, node: Node, arg: Node, state: State, guard: Term,
             width: int) -> CInt:
    """The integer a gint* / gint64* argument points to."""
    pointer = ex.eval(arg, state, guard)
    if not isinstance(pointer, Pointer) or not isinstance(pointer.value, (CInt, CBool)):
        raise ex.unsupported(node, f"{text(node.child_by_field_name('function'))}() of "
                             f"{describe(pointer)} (a pointer to an integer is modelled)")
    if pointer.pointee.kind != "int" or pointer.pointee.width != width:
        raise ex.unsupported(node, f"{text(node.child_by_field_name('function'))}() of a "
                             f"pointer to {pointer.pointee.name or 'a value'} (it reads "
                             f"{width // 8} bytes)")
    return resize(to_int(pointer.value), width, True)


def int_hash(width: int) -> Apply:
    name = "g_int_hash" if width == 32 else "g_int64_hash"

    def apply(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
        _arity(ex, node, args, 1)
        value = _pointed(ex, node, args[0], state, guard, width).term
        ex.ctx.hashed.append((name, value))
        return CInt(ex.ctx.hash_function(name, z3.BitVecSort(width))(value), False)
    return apply


def int_equal(width: int) -> Apply:
    def apply(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
        _arity(ex, node, args, 2)
        a, b = (_pointed(ex, node, arg, state, guard, width) for arg in args)
        return CBool(a.term == b.term)
    return apply


def g_direct_hash(ex: Executor, node: Node, args: List[Node], state: State,
                  guard: Term) -> Value:
    _arity(ex, node, args, 1)
    value = ex.eval(args[0], state, guard)
    if not isinstance(value, (CInt, CBool)):
        raise ex.unsupported(node, f"g_direct_hash() of {describe(value)} (the identity of a "
                             "pointer is not modelled; an integer cast to a pointer is)")
    bits = resize(to_int(value), 64, to_int(value).signed).term
    ex.ctx.hashed.append(("g_direct_hash", bits))
    return CInt(ex.ctx.hash_function("g_direct_hash", z3.BitVecSort(64))(bits), False)


def as_pointer(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    """GINT_TO_POINTER & co: the integer, as a pointer-sized value."""
    _arity(ex, node, args, 1)
    value: CInt = ex.value(args[0], to_int, ex.eval(args[0], state, guard))
    return resize(value, 64, value.signed)


def g_str_equal(ex: Executor, node: Node, args: List[Node], state: State,
                guard: Term) -> Value:
    _arity(ex, node, args, 2)
    a, b = _strings(ex, node, args, state, guard, 2)
    not_null(ex, node, [a, b], state, guard)
    return CBool(a.text == b.text)


def strcmp(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 2)
    a, b = _strings(ex, node, args, state, guard, 2)
    not_null(ex, node, [a, b], state, guard)
    return Ordering(a.text < b.text, a.text == b.text, ex.ctx.magnitude(a.text, b.text))


def strncmp(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 3)
    a, b = _strings(ex, node, args, state, guard, 2)
    length = z3.simplify(to_int(ex.eval(args[2], state, guard)).term)
    if not z3.is_bv_value(length):
        raise ex.unsupported(node, "strncmp() with a length that is not a constant")
    not_null(ex, node, [a, b], state, guard)
    count = z3.IntVal(length.as_long())
    left, right = z3.SubString(a.text, 0, count), z3.SubString(b.text, 0, count)
    return Ordering(left < right, left == right, ex.ctx.magnitude(left, right))


def g_strcmp0(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 2)
    a, b = _strings(ex, node, args, state, guard, 2)
    return Ordering(z3.If(a.null, z3.Not(b.null), z3.If(b.null, FALSE, a.text < b.text)),
                    z3.If(a.null, b.null, z3.If(b.null, FALSE, a.text == b.text)),
                    ex.ctx.magnitude(a.text, b.text))


# ------------------------------------------------- no-ops and aborts

def no_op(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    """Arguments evaluated (C evaluates them), nothing else."""
    for arg in args:
        ex.eval(arg, state, guard)
    return Opaque(f"the value of {text(node.child_by_field_name('function'))}()")


def _abort(ex: Executor, node: Node, state: State, guard: Term, condition: Term) -> None:
    """QEMU aborts where @condition holds on this path; the path goes on without it."""
    ex.aborts.append(Abort(ex.role, ex.frames[-1].function, node.start_point[0] + 1, None,
                           None, None, conj(state.pc, guard), FALSE, FALSE, condition,
                           text(node)))
    state.pc = conj(state.pc, z3.Implies(guard, neg(condition)))


def assertion(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _arity(ex, node, args, 1)
    holds = ex.truth(args[0], ex.eval(args[0], state, guard))
    _abort(ex, node, state, guard, neg(holds))
    return Opaque("the value of an assertion")


def aborting(ex: Executor, node: Node, args: List[Node], state: State, guard: Term) -> Value:
    _abort(ex, node, state, guard, TRUE)
    return Unreachable()


SEQUENTIAL = ("no-op: the suite's semantics are sequential, sound while every access to "
              "the throttle state stays under monitor_lock")
ABORTS = "aborts QEMU: reachable for a valid event, a totality violation (invariant 7)"
TRACE = Model("no-op (trace points have no effect on the throttle); arguments evaluated",
              no_op)

LIBRARY: Dict[str, Model] = {
    "qdict_get": Model("the member's QObject: NULL exactly when the member is absent "
                       "(a presence test)", qdict_get),
    "qdict_haskey": Model("whether the member is present", qdict_haskey),
    "qdict_get_str": Model("the member's string; aborts when it is absent or not a string",
                           getter("str", aborting=True)),
    "qdict_get_int": Model("the member's integer; aborts when it is absent or not an integer",
                           getter("int", aborting=True)),
    "qdict_get_bool": Model("the member's boolean; aborts when it is absent or not a boolean",
                            getter("bool", aborting=True)),
    "qdict_get_try_str": Model("the member's string, NULL when it is absent or not a string",
                               getter("str", aborting=False)),
    "qdict_get_try_int": Model("the member's integer, the default when it is absent or not "
                               "an integer", getter("int", aborting=False)),
    "qdict_get_try_bool": Model("the member's boolean, the default when it is absent or not "
                                "a boolean", getter("bool", aborting=False)),
    "qdict_get_qdict": Model("qdict_get_qdict(qdict, \"data\"): the event's data dict",
                             qdict_get_qdict),
    "qobject_to": Model("qobject_to(QDict, qdict_get(qdict, \"data\")): the event's data "
                        "dict; qobject_to(QString|QNum|QBool, member): the member when it "
                        "has that type, else NULL", qobject_to),
    "g_str_hash": Model("an uninterpreted function of the string: a proof holds for every "
                        "hash function; aborts on NULL", g_str_hash),
    "g_int_hash": Model("an uninterpreted function of the pointed-to int", int_hash(32)),
    "g_int64_hash": Model("an uninterpreted function of the pointed-to int64",
                          int_hash(64)),
    "g_direct_hash": Model("an uninterpreted function of the pointer's value (an integer "
                           "cast to a pointer)", g_direct_hash),
    "GINT_TO_POINTER": Model("the integer as a pointer value", as_pointer),
    "GUINT_TO_POINTER": Model("the integer as a pointer value", as_pointer),
    "g_str_equal": Model("string equality; aborts on NULL", g_str_equal),
    "g_int_equal": Model("equality of the pointed-to ints", int_equal(32)),
    "g_int64_equal": Model("equality of the pointed-to int64s", int_equal(64)),
    "strcmp": Model("the sign of the strings' order (its magnitude is left open); aborts "
                    "on NULL", strcmp),
    "strncmp": Model("strcmp on the first N bytes, N a constant; aborts on NULL", strncmp),
    "g_strcmp0": Model("strcmp where NULL sorts before every string", g_strcmp0),
    "qemu_mutex_lock": Model(SEQUENTIAL, no_op),
    "qemu_mutex_unlock": Model(SEQUENTIAL, no_op),
    "QEMU_LOCK_GUARD": Model(SEQUENTIAL, no_op),
    "WITH_QEMU_LOCK_GUARD": Model(SEQUENTIAL + "; its block runs once", no_op),
    "assert": Model("aborts when its argument is false: " + ABORTS, assertion),
    "g_assert": Model("aborts when its argument is false: " + ABORTS, assertion),
    "g_assert_not_reached": Model(ABORTS, aborting),
    "abort": Model(ABORTS, aborting),
    "g_error": Model(ABORTS, aborting),
}


def model_of(name: str) -> Optional[Model]:
    """The model of a call to @name (trace_* are all trace points), if there is one."""
    if name.startswith("trace_"):
        return TRACE
    return LIBRARY.get(name)


def listed() -> Dict[str, str]:
    """Name -> meaning, as README.md's table shows them (trace_* as one entry)."""
    return {**{name: model.meaning for name, model in LIBRARY.items()},
            "trace_*": TRACE.meaning}

