"""C values of the translated subset, as z3 terms, with C's conversions.

Integers are bit-vectors with a signedness (C's usual arithmetic conversions,
modular arithmetic); a comparison is a Bool until it is used as an int; a
string is a z3 String plus a NULL flag; strcmp-like results keep their order
relation so that comparing them with 0 stays exact. Pointers are symbolic
references: to a throttle record, its data dict, the event's QDict, a rate
table entry. Anything a value cannot do raises NotModelled, which the
translator reports as an unsupported construct at file:line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import z3

from .space import SymbolicRecord

Term = Any


class NotModelled(Exception):
    """A value used in a way the translation does not model."""


@dataclass(frozen=True, eq=False)
class CInt:
    term: Term  # a z3 bit-vector
    signed: bool

    @property
    def width(self) -> int:
        return int(self.term.size())


@dataclass(frozen=True, eq=False)
class CBool:
    term: Term


@dataclass(frozen=True, eq=False)
class CStr:
    text: Term
    null: Term
    origin: Optional[Tuple[SymbolicRecord, str]] = None  # the member a NULL comes from


@dataclass(frozen=True, eq=False)
class Ordering:
    """strcmp(a, b) and friends: its sign, and an arbitrary magnitude."""

    less: Term
    equal: Term
    magnitude: Term  # a 32-bit value >= 1


@dataclass(frozen=True)
class RecordPtr:
    record: SymbolicRecord


@dataclass(frozen=True)
class DataDict:
    record: SymbolicRecord


@dataclass(frozen=True)
class EventQDict:
    """The queue function's QDict: the whole event, whose "data" is the record's data."""

    record: SymbolicRecord


@dataclass(frozen=True)
class DataObject:
    """qdict_get(<the event's QDict>, "data"): a QObject, NULL for events without data."""

    record: SymbolicRecord


@dataclass(frozen=True, eq=False)
class MemberObject:
    """qdict_get(data, "member"), or qobject_to(QString|QNum|QBool, it) when @kind is set:
    a QObject that is non-NULL exactly when @live holds."""

    record: SymbolicRecord
    member: str
    live: Term
    kind: Optional[str] = None  # "str", "int" or "bool" after qobject_to


@dataclass(frozen=True, eq=False)
class Pointer:
    """&local, or the address of a record's field: the value it points to, read at once."""

    value: Value
    pointee: CType


@dataclass(frozen=True, eq=False)
class ConfEntry:
    """&rate_table[event] (or the entry itself)."""

    event: CInt


@dataclass(frozen=True)
class RateTable:
    pass


@dataclass(frozen=True)
class NullPtr:
    pass


@dataclass(frozen=True, eq=False)
class StructValue:
    fields: Tuple[Tuple[str, Value], ...]

    def field(self, name: str) -> Value:
        for key, value in self.fields:
            if key == name:
                return value
        raise NotModelled(f"the field '{name}' of a struct initialised without it")


@dataclass(frozen=True)
class Opaque:
    """A value that may be stored but not used (an address, a merged pointer...)."""

    what: str


@dataclass(frozen=True)
class Unreachable:
    """The value of a call after which the path ended (lookup, emit)."""


Value = Union[CInt, CBool, CStr, Ordering, RecordPtr, DataDict, EventQDict, DataObject,
              MemberObject, Pointer, ConfEntry, RateTable, NullPtr, StructValue, Opaque,
              Unreachable]


@dataclass(frozen=True)
class CType:
    """What a declaration or cast converts to."""

    kind: str  # "int", "bool", "pointer" or "other"
    width: int = 32
    signed: bool = True
    name: str = field(default="", compare=False)


_INTEGERS = {
    8: (("char", "signed char", "gchar", "int8_t", "gint8"),
        ("unsigned char", "guchar", "uint8_t", "guint8")),
    16: (("short", "short int", "signed short", "int16_t", "gint16"),
         ("unsigned short", "unsigned short int", "uint16_t", "guint16")),
    32: (("int", "signed", "signed int", "gint", "gboolean", "int32_t", "gint32"),
         ("unsigned", "unsigned int", "guint", "uint32_t", "guint32", "QAPIEvent")),
    64: (("long", "long int", "long long", "long long int", "int64_t", "gint64", "ssize_t",
          "gssize", "glong"),
         ("unsigned long", "unsigned long int", "unsigned long long",
          "unsigned long long int", "uint64_t", "guint64", "size_t", "gsize", "gulong")),
}
INTEGER_CTYPES = {name: CType("int", width, signed, name)
                  for width, groups in _INTEGERS.items()
                  for signed, names in zip((True, False), groups) for name in names}


def ctype(name: str, pointer: bool) -> CType:
    """The CType of a declared type name (qualifiers dropped)."""
    words = [w for w in name.split() if w not in ("const", "volatile", "static", "register")]
    name = " ".join(words)
    if pointer:
        return CType("pointer", name=name + " *")
    if name in ("bool", "_Bool"):
        return CType("bool", name=name)
    return INTEGER_CTYPES.get(name, CType("other", name=name))


def is_zero(value: Value) -> bool:
    if isinstance(value, CInt):
        simple = z3.simplify(value.term)
        return bool(z3.is_bv_value(simple) and simple.as_long() == 0)
    return False


def truth(value: Value) -> Term:
    """C's "is nonzero / non-NULL"."""
    if isinstance(value, CBool):
        return value.term
    if isinstance(value, CInt):
        return value.term != 0
    if isinstance(value, CStr):
        return z3.Not(value.null)
    if isinstance(value, Ordering):
        return z3.Not(value.equal)
    if isinstance(value, (DataDict, DataObject)):
        return value.record.has_data()
    if isinstance(value, MemberObject):
        return value.live
    if isinstance(value, (RecordPtr, EventQDict, ConfEntry, Pointer)):
        return z3.BoolVal(True)
    if isinstance(value, (NullPtr, Unreachable)):
        return z3.BoolVal(False)
    raise NotModelled(describe(value) + " used as a condition")


def to_int(value: Value) -> CInt:
    if isinstance(value, CInt):
        return value
    if isinstance(value, CBool):
        return CInt(z3.If(value.term, z3.BitVecVal(1, 32), z3.BitVecVal(0, 32)), True)
    if isinstance(value, Ordering):
        return CInt(z3.If(value.equal, z3.BitVecVal(0, 32),
                          z3.If(value.less, -value.magnitude, value.magnitude)), True)
    if isinstance(value, Unreachable):
        return CInt(z3.BitVecVal(0, 32), True)
    raise NotModelled(describe(value) + " used as an integer")


def resize(value: CInt, width: int, signed: bool) -> CInt:
    term = value.term
    if value.width > width:
        term = z3.Extract(width - 1, 0, term)
    elif value.width < width:
        extend = z3.SignExt if value.signed else z3.ZeroExt
        term = extend(width - value.width, term)
    return CInt(term, signed)


def convert(value: Value, target: CType) -> Value:
    """Assignment, initialisation, cast or return to @target."""
    if isinstance(value, Unreachable):
        return value
    if target.kind == "bool":
        return CBool(truth(value))
    if target.kind == "int":
        return resize(to_int(value), target.width, target.signed)
    return value


def _promote(value: CInt) -> CInt:
    return resize(value, 32, True) if value.width < 32 else value


def common(a: Value, b: Value) -> Tuple[CInt, CInt]:
    """C's usual arithmetic conversions of two operands."""
    x, y = _promote(to_int(a)), _promote(to_int(b))
    width = max(x.width, y.width)
    wider = x if x.width > y.width else y
    signed = x.signed and y.signed if x.width == y.width else wider.signed
    return (CInt(resize(x, width, x.signed).term, signed),
            CInt(resize(y, width, y.signed).term, signed))


ARITHMETIC = ("+", "-", "*", "/", "%", "^", "&", "|", "<<", ">>")
COMPARISON = ("==", "!=", "<", ">", "<=", ">=")


def arithmetic(operator: str, a: Value, b: Value) -> CInt:
    if operator in ("<<", ">>"):
        left = _promote(to_int(a))
        amount = resize(to_int(b), left.width, False).term
        if operator == "<<":
            return CInt(left.term << amount, left.signed)
        return CInt(left.term >> amount if left.signed else z3.LShR(left.term, amount),
                    left.signed)
    x, y = common(a, b)
    # C divides towards zero: bvsdiv/bvsrem; a zero divisor is the translator's obligation.
    terms = {"+": lambda: x.term + y.term, "-": lambda: x.term - y.term,
             "*": lambda: x.term * y.term, "^": lambda: x.term ^ y.term,
             "&": lambda: x.term & y.term, "|": lambda: x.term | y.term,
             "/": lambda: x.term / y.term if x.signed else z3.UDiv(x.term, y.term),
             "%": lambda: z3.SRem(x.term, y.term) if x.signed else z3.URem(x.term, y.term)}
    if operator not in terms:
        raise NotModelled(f"the operator '{operator}'")
    return CInt(terms[operator](), x.signed)


def compare(operator: str, a: Value, b: Value) -> CBool:
    if isinstance(b, Ordering) and is_zero(a):  # 0 < strcmp(x, y): mirror it
        mirrored = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}.get(operator, operator)
        return compare(mirrored, b, a)
    if isinstance(a, Ordering) and is_zero(b):
        less, equal = a.less, a.equal
        relation = {"==": equal, "!=": z3.Not(equal), "<": less, "<=": z3.Or(less, equal),
                    ">": z3.And(z3.Not(less), z3.Not(equal)), ">=": z3.Not(less)}
        return CBool(relation[operator])
    pointers = (CStr, RecordPtr, DataDict, EventQDict, DataObject, MemberObject, Pointer,
                ConfEntry, NullPtr)
    if isinstance(a, pointers) or isinstance(b, pointers):
        return _compare_pointers(operator, a, b)
    x, y = common(a, b)
    if operator == "==":
        return CBool(x.term == y.term)
    if operator == "!=":
        return CBool(x.term != y.term)
    signed = {"<": lambda: x.term < y.term, ">": lambda: x.term > y.term,
              "<=": lambda: x.term <= y.term, ">=": lambda: x.term >= y.term}
    unsigned = {"<": z3.ULT, ">": z3.UGT, "<=": z3.ULE, ">=": z3.UGE}
    if x.signed:
        return CBool(signed[operator]())
    return CBool(unsigned[operator](x.term, y.term))


def _compare_pointers(operator: str, a: Value, b: Value) -> CBool:
    """Only "is it NULL" is modelled: a pointer's identity is not."""
    if operator not in ("==", "!="):
        raise NotModelled("ordering of pointers")
    if isinstance(a, NullPtr) or is_zero(a):
        a, b = b, a
    if not (isinstance(b, NullPtr) or is_zero(b)):
        raise NotModelled("comparison of two pointers (their identity is not modelled)")
    is_null = z3.Not(truth(a))
    return CBool(is_null if operator == "==" else z3.Not(is_null))


def _ite(pairs: Sequence[Tuple[Term, Term]]) -> Term:
    term = pairs[-1][1]
    for condition, value in reversed(pairs[:-1]):
        term = z3.If(condition, value, term)
    return term


def same(a: Value, b: Value) -> bool:
    """Structurally the same value (z3 terms compared as terms)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (CInt, CBool, CStr, Ordering, ConfEntry, StructValue, MemberObject,
                      Pointer)):
        return a is b or _terms(a) == _terms(b)
    return a == b


def _terms(value: Value) -> List[Any]:
    if isinstance(value, CInt):
        return [value.term.get_id(), value.signed]
    if isinstance(value, CBool):
        return [value.term.get_id()]
    if isinstance(value, CStr):
        return [value.text.get_id(), value.null.get_id(), value.origin]
    if isinstance(value, Ordering):
        return [value.less.get_id(), value.equal.get_id(), value.magnitude.get_id()]
    if isinstance(value, ConfEntry):
        return _terms(value.event)
    if isinstance(value, StructValue):
        return [(k, _terms(v) if not isinstance(v, (RecordPtr, DataDict)) else v)
                for k, v in value.fields]
    if isinstance(value, MemberObject):
        return [value.record, value.member, value.live.get_id(), value.kind]
    if isinstance(value, Pointer):
        return [_terms(value.value), value.pointee]
    return [value]


def merge(pairs: Sequence[Tuple[Term, Value]]) -> Value:
    """The value that is pairs[i][1] when pairs[i][0] holds (the conditions are disjoint)."""
    live = [(c, v) for c, v in pairs if not isinstance(v, Unreachable)]
    if not live:
        return Unreachable()
    first = live[0][1]
    if all(same(first, v) for _, v in live[1:]):
        return first
    values = [v for _, v in live]
    if all(isinstance(v, CBool) for v in values):
        return CBool(_ite([(c, v.term) for c, v in live]))  # type: ignore[union-attr]
    if all(isinstance(v, (CInt, CBool, Ordering)) for v in values):
        ints = [to_int(v) for v in values]
        width = max(i.width for i in ints)
        signed = all(i.signed for i in ints)
        return CInt(_ite([(c, resize(i, width, i.signed).term)
                          for (c, _), i in zip(live, ints)]), signed)
    if all(isinstance(v, (CStr, NullPtr)) for v in values):  # NULL: a string that is NULL
        strings = [v if isinstance(v, CStr) else CStr(z3.StringVal(""), z3.BoolVal(True))
                   for v in values]
        origins = {id(s.origin): s.origin for s in strings}
        return CStr(_ite([(c, s.text) for (c, _), s in zip(live, strings)]),
                    _ite([(c, s.null) for (c, _), s in zip(live, strings)]),
                    next(iter(origins.values())) if len(origins) == 1 else None)
    if all(isinstance(v, Ordering) for v in values):
        orders = [v for v in values if isinstance(v, Ordering)]
        return Ordering(_ite([(c, o.less) for (c, _), o in zip(live, orders)]),
                        _ite([(c, o.equal) for (c, _), o in zip(live, orders)]),
                        _ite([(c, o.magnitude) for (c, _), o in zip(live, orders)]))
    objects = [v for v in values if isinstance(v, MemberObject)]
    if objects and all(isinstance(v, (MemberObject, NullPtr)) for v in values) and all(
            (o.record, o.member, o.kind) == (objects[0].record, objects[0].member,
                                             objects[0].kind) for o in objects):
        return MemberObject(objects[0].record, objects[0].member, _ite(
            [(c, truth(v)) for c, v in live]), objects[0].kind)
    pointers = [v for v in values if isinstance(v, Pointer)]
    if len(pointers) == len(values) and all(p.pointee == pointers[0].pointee
                                            for p in pointers):
        return Pointer(merge([(c, p.value) for (c, _), p in zip(live, pointers)]),
                       pointers[0].pointee)
    return Opaque("a variable that holds different kinds of value on different paths")


def describe(value: Value) -> str:
    """What a value is, for messages about unsupported uses."""
    names = {CStr: "a string", RecordPtr: "the throttle record", DataDict: "the data dict",
             EventQDict: "the event's QDict", DataObject: "the event's \"data\" QObject",
             MemberObject: "a member's QObject", Pointer: "a pointer to a value",
             ConfEntry: "the rate table entry",
             RateTable: "the rate table", StructValue: "a struct", NullPtr: "NULL",
             CInt: "an integer", CBool: "a boolean", Ordering: "a strcmp result"}
    if isinstance(value, Opaque):
        return value.what
    return names.get(type(value), type(value).__name__)


def same_value(a: Value, b: Value) -> Optional[Term]:
    """A z3 term saying two C values (of two translations) are equal; None when they
    cannot be compared."""
    if isinstance(a, CInt) and isinstance(b, CInt):
        return a.term == b.term if (a.width, a.signed) == (b.width, b.signed) else None
    if isinstance(a, CBool) and isinstance(b, CBool):
        return a.term == b.term
    if isinstance(a, CStr) and isinstance(b, CStr):
        return z3.And(a.null == b.null, z3.Or(a.null, a.text == b.text))
    if isinstance(a, Ordering) and isinstance(b, Ordering):
        return z3.And(a.less == b.less, a.equal == b.equal, a.magnitude == b.magnitude)
    if isinstance(a, ConfEntry) and isinstance(b, ConfEntry):
        return same_value(a.event, b.event)
    if isinstance(a, StructValue) and isinstance(b, StructValue):
        if [k for k, _ in a.fields] != [k for k, _ in b.fields]:
            return None
        parts = [same_value(x, y) for (_, x), (_, y) in zip(a.fields, b.fields)]
        return None if any(p is None for p in parts) else z3.And(True, *parts)
    if isinstance(a, (RecordPtr, DataDict, EventQDict, DataObject)) and type(a) is type(b):
        return z3.BoolVal(a.record is b.record)
    if isinstance(a, MemberObject) and isinstance(b, MemberObject):
        if (a.record, a.member, a.kind) != (b.record, b.member, b.kind):
            return None
        return a.live == b.live
    if isinstance(a, Pointer) and isinstance(b, Pointer):
        return same_value(a.value, b.value) if a.pointee == b.pointee else None
    if isinstance(a, (NullPtr, RateTable, Unreachable)) and type(a) is type(b):
        return z3.BoolVal(True)
    if isinstance(a, Opaque) and isinstance(b, Opaque) and a.what == b.what \
            and "different kinds of value" not in a.what:
        return z3.BoolVal(True)
    return None
