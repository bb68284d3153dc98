"""Symbolic execution of the extracted C (tree-sitter nodes) into z3 terms.

One function call is executed over symbolic records: a path condition and an
environment of C values (values.py). Both arms of an if, every case of a
switch, both arms of a ternary are executed and their states merged with
if-then-else terms, so the result is one term per function, not one per path.
``return`` and ``break`` park the state they leave and continue dead.

What a translation records, besides the returned value:
* every place that aborts QEMU: a read of a member that is absent or of another
  type (qdict_get_str/int/bool, strcmp & co on a NULL string), an assertion that
  fails, an abort called, a division by zero, a shift by more than the width:
  its condition is the totality obligation of invariant 7, and the path goes on
  assuming it passed;
* every read of a member, with its path condition (where a policy's key is read);
* in the queue function, the decision: a path reaching g_hash_table_lookup is
  throttled; a path emitting first is not; a path ending with neither drops the
  event. Execution stops there, so nothing after the decision is translated.

Library calls mean what library.LIBRARY says; static functions of the same file
are inlined. Anything outside the subset raises Unsupported naming the
construct at the file:line of the user's source (function_node keeps source rows).
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import z3
from tree_sitter import Node

from qthrottle.harness.extract import (
    EVENT_PREFIX,
    SHIMMED,
    TABLE_LOOKUPS,
    Extraction,
    function_node,
)

from . import library
from .execution import (
    FALSE,
    TRUE,
    Abort,
    Frame,
    State,
    Term,
    Unsupported,
    Variable,
    conj,
    disj,
    merge_states,
    named,
    neg,
    satisfiable,
    text,
)
from .space import EventSpace, SymbolicRecord
from .values import (
    ARITHMETIC,
    COMPARISON,
    INTEGER_CTYPES,
    CBool,
    CInt,
    ConfEntry,
    CStr,
    CType,
    DataDict,
    EventQDict,
    NotModelled,
    NullPtr,
    Opaque,
    Ordering,
    Pointer,
    RateTable,
    RecordPtr,
    StructValue,
    Unreachable,
    Value,
    arithmetic,
    compare,
    convert,
    ctype,
    describe,
    merge,
    resize,
    to_int,
    truth,
)

# Limits of stdint.h, limits.h and GLib that code compares with or passes as defaults.
LIMITS = {
    "INT_MAX": (2**31 - 1, 32, True), "INT_MIN": (-2**31, 32, True),
    "UINT_MAX": (2**32 - 1, 32, False), "INT32_MAX": (2**31 - 1, 32, True),
    "INT32_MIN": (-2**31, 32, True), "UINT32_MAX": (2**32 - 1, 32, False),
    "INT64_MAX": (2**63 - 1, 64, True), "INT64_MIN": (-2**63, 64, True),
    "UINT64_MAX": (2**64 - 1, 64, False), "G_MAXINT": (2**31 - 1, 32, True),
    "G_MININT": (-2**31, 32, True), "G_MAXUINT": (2**32 - 1, 32, False),
    "G_MAXINT64": (2**63 - 1, 64, True), "G_MININT64": (-2**63, 64, True),
    "G_MAXUINT64": (2**64 - 1, 64, False),
}
# Types a parenthesised cast may name without the parser knowing them as types.
CAST_TYPES = frozenset(INTEGER_CTYPES) | {"bool", "_Bool"}
LOOKUPS = TABLE_LOOKUPS
MAX_INLINE_DEPTH = 8
CONSTRUCTS = {
    "for_statement": "a for loop", "while_statement": "a while loop",
    "goto_statement": "goto", "labeled_statement": "a label",
    "sizeof_expression": "sizeof",
    "comma_expression": "the comma operator", "compound_literal_expression": "a compound literal",
    "gnu_asm_expression": "inline assembly", "preproc_if": "#if inside a function",
    "preproc_ifdef": "#ifdef inside a function", "preproc_call": "a preprocessor directive",
    "initializer_list": "an initializer list outside a declaration",
}


@dataclass(frozen=True)
class Access:
    """A read of a member (any reader, presence tests included) and where it executes."""

    line: int
    record: SymbolicRecord
    member: str
    reach: Term


@dataclass
class Translation:
    """One call of a function, translated."""

    function: str
    value: Optional[Value]
    aborts: List[Abort]
    decisions: Dict[str, Term]  # queue function: lookup / emit / drop -> condition
    accesses: List[Access]

    def defined(self) -> Term:
        """The call returns (nothing aborts)."""
        return neg(disj(*(conj(a.reach, a.fails) for a in self.aborts)))


class Context:
    """What the translations of one proof share: the target and the string functions."""

    def __init__(self, space: EventSpace, extraction: Extraction) -> None:
        self.space = space
        self.extraction = extraction
        self._hashes: Dict[str, Any] = {}
        self._magnitude = z3.Function("strcmp_magnitude", z3.StringSort(), z3.StringSort(),
                                      z3.BitVecSort(32))
        # (hash function, argument) of every hash call, for readable models
        self.hashed: List[Tuple[str, Term]] = []
        self.functions = {c.name for c in extraction.chunks if c.kind == "function"}
        self._nodes: Dict[str, Node] = {}

    def function(self, name: str) -> Node:
        if name not in self._nodes:
            self._nodes[name] = function_node(self.extraction, name)
        return self._nodes[name]

    def hash_function(self, name: str, domain: Any) -> Any:
        """GLib's hash function @name, uninterpreted: a guint of its argument."""
        if name not in self._hashes:
            self._hashes[name] = z3.Function(name, domain, z3.BitVecSort(32))
        return self._hashes[name]

    def where(self, node: Node) -> str:
        return f"{self.extraction.path}:{node.start_point[0] + 1}"

    def magnitude(self, a: Term, b: Term) -> Term:
        """An arbitrary strcmp result size in [1, 2^30]: only the sign is specified."""
        return z3.ZeroExt(2, z3.Extract(29, 0, self._magnitude(a, b))) + 1


class Executor:
    """Translates one call of the queue, hash or equality function (and what it inlines)."""

    def __init__(self, ctx: Context, role: str) -> None:
        self.ctx = ctx
        self.role = role
        self.aborts: List[Abort] = []
        self.accesses: List[Access] = []
        self.decisions: Dict[str, List[Term]] = {"lookup": [], "emit": [], "drop": []}
        self.frames: List[Frame] = []

    # ------------------------------------------------------------- entry

    def run(self, name: str, args: Sequence[Value]) -> Translation:
        value, _ = self.call(self.ctx.function(name), args, TRUE)
        decisions = {kind: disj(*terms) for kind, terms in self.decisions.items()}
        return Translation(name, value, self.aborts, decisions, self.accesses)

    def call(self, node: Node, args: Sequence[Value], pc: Term) -> Tuple[Value, Term]:
        """Execute function @node from path condition @pc: its value and exit condition."""
        declarator = node.child_by_field_name("declarator")
        pointer = False
        while declarator is not None and declarator.type != "function_declarator":
            pointer |= declarator.type == "pointer_declarator"
            declarator = declarator.child_by_field_name("declarator")
        assert declarator is not None  # function_node returns function definitions
        name = text(declarator.child_by_field_name("declarator"))
        if len(self.frames) >= MAX_INLINE_DEPTH:
            raise self.unsupported(node, f"calls nested deeper than {MAX_INLINE_DEPTH} "
                                   "(recursion?)")
        parameters = declarator.child_by_field_name("parameters")
        assert parameters is not None
        params = [p for p in named(parameters)
                  if p.type == "parameter_declaration" and text(p) != "void"]
        if len(params) != len(args):
            raise self.unsupported(node, f"{name}() called with {len(args)} argument(s)")
        scope: Dict[str, Variable] = {}
        for param, arg in zip(params, args):
            param_name, param_pointer = self.declared(param.child_by_field_name("declarator"))
            param_type = ctype(text(param.child_by_field_name("type")), param_pointer)
            scope[param_name] = Variable(param_type, self.converted(param, arg, param_type))
        frame = Frame(name, ctype(text(node.child_by_field_name("type")), pointer),
                      top=not self.frames)
        self.frames.append(frame)
        body = node.child_by_field_name("body")
        assert body is not None
        end = self.execute(body, State(pc, [scope]))
        if not end.dead:
            if frame.top and self.role == "queue":
                self.decisions["drop"].append(end.pc)
            elif frame.return_type.name == "void":
                frame.returns.append((end.pc, Opaque("the value of a void function")))
            elif satisfiable(end.pc):
                raise self.unsupported(body.children[-1], "control reaching the end of a "
                                       "non-void function without a return")
        self.frames.pop()
        if not frame.returns:
            return Unreachable(), FALSE
        return merge(frame.returns), disj(*(c for c, _ in frame.returns))

    # -------------------------------------------------------- statements

    def execute(self, node: Node, state: State) -> State:
        if state.dead or node.type == "comment":
            return state
        handler = self._statements.get(node.type)
        if handler is None:
            raise self.unsupported(node)
        return handler(self, node, state)

    def _compound(self, node: Node, state: State) -> State:
        state.scopes.append({})
        for child in named(node):
            state = self.execute(child, state)
        state.scopes.pop()
        return state

    def _declaration(self, node: Node, state: State) -> State:
        if any(c.type == "storage_class_specifier" for c in node.children):
            raise self.unsupported(node, "a static or extern local variable")
        type_name = text(node.child_by_field_name("type"))
        for child in node.children_by_field_name("declarator"):
            target: Optional[Node] = child
            init: Optional[Node] = None
            if child.type == "init_declarator":
                target, init = child.child_by_field_name("declarator"), child.child_by_field_name(
                    "value")
            name, pointer = self.declared(target)
            declared = ctype(type_name, pointer)
            value: Value = Opaque(f"the uninitialised variable '{name}'")
            if init is not None and init.type == "initializer_list":
                value = self.initializer(init, state)
            elif init is not None:
                value = self.converted(init, self.eval(init, state, TRUE), declared)
            state.scopes[-1][name] = Variable(declared, value)
        return state

    def _expression_statement(self, node: Node, state: State) -> State:
        children = named(node)
        if children:
            self.eval(children[0], state, TRUE)
        return state

    def _if(self, node: Node, state: State) -> State:
        condition = node.child_by_field_name("condition")
        assert condition is not None
        test = self.truth(condition, self.eval(condition, state, TRUE))
        base = state.pc
        then_state, else_state = state.copy(conj(base, test)), state.copy(conj(base, neg(test)))
        then_start, else_start = then_state.pc, else_state.pc
        consequence = node.child_by_field_name("consequence")
        alternative = node.child_by_field_name("alternative")
        assert consequence is not None
        then_state = self.execute(consequence, then_state)
        if alternative is not None:
            else_state = self.execute(alternative, else_state)
        if then_state.pc is then_start and else_state.pc is else_start:
            return merge_states([then_state, else_state], [test, neg(test)], base)
        return merge_states([then_state, else_state])

    def _else(self, node: Node, state: State) -> State:
        for child in named(node):
            state = self.execute(child, state)
        return state

    def _return(self, node: Node, state: State) -> State:
        frame = self.frames[-1]
        children = named(node)
        value: Value = Opaque("the value of a void function")
        if children:
            value = self.converted(children[0], self.eval(children[0], state, TRUE),
                                   frame.return_type)
        if frame.top and self.role == "queue":
            self.decisions["drop"].append(state.pc)
        else:
            frame.returns.append((state.pc, value))
        return state.copy(FALSE)

    def _switch(self, node: Node, state: State) -> State:
        condition, body = node.child_by_field_name("condition"), node.child_by_field_name("body")
        assert condition is not None and body is not None
        subject = self.value(condition, to_int, self.eval(condition, state, TRUE))
        labels = [c for c in named(body) if c.type == "case_statement"]
        tests: Dict[int, Term] = {}
        for label in labels:
            value = label.child_by_field_name("value")
            if value is not None:
                case = self.eval(value, state, TRUE)
                tests[label.id] = self.value(value, lambda v: compare("==", subject, v), case).term
        no_case = neg(disj(*tests.values()))
        entry = state.copy()
        entry.scopes.append({})
        current = entry.copy(FALSE)
        frame = self.frames[-1]
        frame.breaks.append([])
        for child in named(body):
            if child.type != "case_statement":
                current = self.execute(child, current)
                continue
            arrival = entry.copy(conj(state.pc, tests.get(child.id, no_case)))
            current = merge_states([current, arrival])
            value = child.child_by_field_name("value")
            for statement in named(child):
                if value is None or statement.id != value.id:
                    current = self.execute(statement, current)
        exits = [current] + [State(b.pc, b.scopes[:len(entry.scopes)])
                             for b in frame.breaks.pop()]
        end = merge_states(exits)
        end.scopes = end.scopes[:len(state.scopes)]
        return end

    def _break(self, node: Node, state: State) -> State:
        frame = self.frames[-1]
        if not frame.breaks:
            raise self.unsupported(node, "break outside a switch")
        frame.breaks[-1].append(state.copy())
        return state.copy(FALSE)

    def _continue(self, node: Node, state: State) -> State:
        """In `do { } while (0)`, continue goes to the condition, which ends the loop."""
        frame = self.frames[-1]
        if not frame.loops:
            raise self.unsupported(node, "continue")
        frame.breaks[frame.loops[-1]].append(state.copy())
        return state.copy(FALSE)

    def _do(self, node: Node, state: State) -> State:
        """`do { ... } while (0)`, the macro shape: the body once; break leaves it."""
        body, condition = node.child_by_field_name("body"), node.child_by_field_name(
            "condition")
        assert body is not None and condition is not None
        frame = self.frames[-1]
        frame.breaks.append([])
        frame.loops.append(len(frame.breaks) - 1)
        current = self.execute(body, state.copy())
        frame.loops.pop()
        exits = [current] + [State(b.pc, b.scopes[:len(state.scopes)])
                             for b in frame.breaks.pop()]
        end = merge_states(exits)
        end.scopes = end.scopes[:len(state.scopes)]
        again = z3.simplify(self.truth(condition, self.eval(condition, end, TRUE)))
        if not end.dead and not z3.is_false(again) and satisfiable(conj(end.pc, again)):
            raise self.unsupported(node, "a do/while loop that can run twice (only "
                                   "`do { } while (0)` is modelled)")
        return end

    _statements: Dict[str, Callable[[Executor, Node, State], State]] = {
        "compound_statement": _compound, "declaration": _declaration,
        "expression_statement": _expression_statement, "if_statement": _if,
        "else_clause": _else, "return_statement": _return, "switch_statement": _switch,
        "break_statement": _break, "continue_statement": _continue, "do_statement": _do,
    }

    # ------------------------------------------------------- expressions

    def eval(self, node: Node, state: State, guard: Term) -> Value:
        """The value of expression @node; reads under @guard (short-circuit, ternary arms)."""
        handler = self._expressions.get(node.type)
        if handler is None:
            raise self.unsupported(node)
        try:
            return handler(self, node, state, guard)
        except NotModelled as error:
            raise self.unsupported(node, str(error)) from None

    def _identifier(self, node: Node, state: State, guard: Term) -> Value:
        name = text(node)
        variable = state.find(name)
        if variable is not None:
            return variable.value
        constants: Dict[str, Value] = {
            "NULL": NullPtr(), "TRUE": CInt(z3.BitVecVal(1, 32), True),
            "FALSE": CInt(z3.BitVecVal(0, 32), True), "true": CBool(TRUE), "false": CBool(FALSE)}
        if name in constants:
            return constants[name]
        if name in LIMITS:
            value, width, signed = LIMITS[name]
            return CInt(z3.BitVecVal(value, width), signed)
        space, extraction = self.ctx.space, self.ctx.extraction
        if name.startswith(EVENT_PREFIX):
            event = name[len(EVENT_PREFIX):]
            index = len(space.names) if event == "_MAX" else space.index.get(event)
            if index is not None:
                return CInt(z3.BitVecVal(index, 32), False)
        if name == extraction.rate_table_name:
            return RateTable()
        if name == extraction.table_variable:
            return Opaque("the throttle table")
        raise self.unsupported(node, f"the identifier '{name}' (a global or a macro)")

    def _literal(self, node: Node, state: State, guard: Term) -> Value:
        kind = node.type
        if kind in ("true", "false"):
            return CBool(TRUE if kind == "true" else FALSE)
        if kind == "null":
            return NullPtr()
        raw = text(node).lower()
        digits = raw.rstrip("ul")
        suffix = raw[len(digits):]
        try:
            if kind == "char_literal":
                character = codecs.decode(text(node)[1:-1], "unicode_escape")
                return CInt(z3.BitVecVal(ord(character), 32), True)
            if digits.startswith(("0x", "0b")):
                value = int(digits, 0)
            else:
                value = int(digits, 8 if len(digits) > 1 and digits.startswith("0") else 10)
        except (ValueError, TypeError):
            raise self.unsupported(node, "this literal") from None
        unsigned = "u" in suffix
        limit = 0xFFFFFFFF if unsigned else 0x7FFFFFFF
        width = 64 if "l" in suffix or value > limit else 32
        return CInt(z3.BitVecVal(value, width), not unsigned)

    def _string(self, node: Node, state: State, guard: Term) -> Value:
        return CStr(z3.StringVal(self.string_literal(node)), FALSE)

    def _parenthesized(self, node: Node, state: State, guard: Term) -> Value:
        return self.eval(named(node)[0], state, guard)

    def _unary(self, node: Node, state: State, guard: Term) -> Value:
        operator = text(node.child_by_field_name("operator"))
        argument = node.child_by_field_name("argument")
        assert argument is not None
        value = self.eval(argument, state, guard)
        if operator == "!":
            return CBool(neg(truth(value)))
        integer = to_int(value)
        number = resize(integer, max(32, integer.width), integer.signed)
        if operator == "-":
            return CInt(-number.term, number.signed)
        if operator == "~":
            return CInt(~number.term, number.signed)
        return number

    def _binary(self, node: Node, state: State, guard: Term) -> Value:
        operator = text(node.child_by_field_name("operator"))
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        assert left is not None and right is not None
        a = self.eval(left, state, guard)
        if operator in ("&&", "||"):
            first = self.truth(left, a)
            then = first if operator == "&&" else neg(first)
            second = self.truth(right, self.eval(right, state, conj(guard, then)))
            return CBool(conj(first, second) if operator == "&&" else disj(first, second))
        b = self.eval(right, state, guard)
        if isinstance(a, Unreachable) or isinstance(b, Unreachable):
            return Unreachable()
        if operator in COMPARISON:
            compared: CBool = self.value(node, lambda v: compare(operator, v, b), a)
            return compared
        if operator in ARITHMETIC:
            return self.arithmetic(node, operator, a, b, state, guard)
        raise self.unsupported(node, f"the operator '{operator}'")

    def arithmetic(self, node: Node, operator: str, a: Value, b: Value, state: State,
                   guard: Term) -> Value:
        """a OP b; a zero divisor or a shift beyond the width aborts (SIGFPE, UBSan)."""
        if not all(isinstance(v, (CInt, CBool, Ordering)) for v in (a, b)):
            raise self.unsupported(node, "pointer arithmetic")
        result = arithmetic(operator, a, b)
        if operator in ("/", "%"):
            divisor = to_int(b)
            self.abort_if(node, state, guard, divisor.term == 0)
        elif operator in ("<<", ">>"):
            amount = to_int(b)
            wide = resize(amount, 64, amount.signed).term
            too_far = z3.UGE(wide, result.width) if not amount.signed else z3.Or(
                wide < 0, wide >= result.width)
            self.abort_if(node, state, guard, too_far)
        return result

    def abort_if(self, node: Node, state: State, guard: Term, condition: Term) -> None:
        """QEMU aborts where @condition holds on this path (an obligation of invariant 7)."""
        condition = z3.simplify(condition)
        if z3.is_false(condition):
            return
        self.aborts.append(Abort(self.role, self.frames[-1].function, node.start_point[0] + 1,
                                 None, None, None, conj(state.pc, guard), FALSE, FALSE,
                                 condition, text(node)))
        state.pc = conj(state.pc, z3.Implies(guard, neg(condition)))

    def _conditional(self, node: Node, state: State, guard: Term) -> Value:
        condition = node.child_by_field_name("condition")
        consequence = node.child_by_field_name("consequence")
        alternative = node.child_by_field_name("alternative")
        assert condition is not None and consequence is not None and alternative is not None
        test = truth(self.eval(condition, state, guard))
        yes = self.eval(consequence, state, conj(guard, test))
        no = self.eval(alternative, state, conj(guard, neg(test)))
        return merge([(test, yes), (neg(test), no)])

    def _assignment(self, node: Node, state: State, guard: Term) -> Value:
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        operator = text(node.child_by_field_name("operator"))
        assert left is not None and right is not None
        variable = state.find(text(left)) if left.type == "identifier" else None
        if variable is None:
            raise self.unsupported(node, f"an assignment to '{text(left)}' "
                                   "(only local variables are modelled)")
        value = self.eval(right, state, guard)
        if operator != "=":
            value = self.arithmetic(node, operator[:-1], variable.value, value, state, guard)
        return self.store(left, state, guard, variable, value)

    def _update(self, node: Node, state: State, guard: Term) -> Value:
        argument = node.child_by_field_name("argument")
        operator = text(node.child_by_field_name("operator"))
        variable = state.find(text(argument)) if argument is not None and \
            argument.type == "identifier" else None
        if argument is None or variable is None:
            raise self.unsupported(node, "an increment of something else than a local variable")
        one = CInt(z3.BitVecVal(1, 32), True)
        updated = arithmetic(operator[0], variable.value, one)
        stored = self.store(argument, state, guard, variable, updated)
        prefix = node.children[0].type in ("++", "--")
        return stored if prefix else variable.value

    def store(self, target: Node, state: State, guard: Term, variable: Variable,
              value: Value) -> Value:
        """Assign under @guard: the variable keeps its old value where the guard fails."""
        if variable.address_taken:
            raise self.unsupported(target, f"an assignment to '{text(target)}' after its "
                                   "address was taken (pointers are read at once)")
        value = self.converted(target, value, variable.ctype)
        if not z3.is_true(guard):
            value = merge([(guard, value), (neg(guard), variable.value)])
        state.assign(text(target), value)
        return value

    def _field(self, node: Node, state: State, guard: Term) -> Value:
        argument = node.child_by_field_name("argument")
        assert argument is not None
        base = self.eval(argument, state, guard)
        name = text(node.child_by_field_name("field"))
        if isinstance(base, Unreachable):
            return base
        if isinstance(base, StructValue):
            return base.field(name)
        if isinstance(base, RecordPtr) and name in ("event", "data"):
            record = base.record
            return CInt(record.event, False) if name == "event" else DataDict(record)
        if isinstance(base, ConfEntry) and name == "rate":
            event = resize(base.event, 32, False).term
            return CInt(self.ctx.space.rate(event), True)
        raise self.unsupported(node, f"the field '{name}' of {describe(base)}")

    def _subscript(self, node: Node, state: State, guard: Term) -> Value:
        argument, index = node.child_by_field_name("argument"), node.child_by_field_name("index")
        assert argument is not None and index is not None
        if isinstance(self.eval(argument, state, guard), RateTable):
            return ConfEntry(to_int(self.eval(index, state, guard)))
        raise self.unsupported(node, "an array subscript (only the rate table is modelled)")

    def _pointer(self, node: Node, state: State, guard: Term) -> Value:
        argument = node.child_by_field_name("argument")
        assert argument is not None
        if text(node.child_by_field_name("operator")) == "*":
            pointer = self.eval(argument, state, guard)
            if isinstance(pointer, Pointer):
                return pointer.value
            raise self.unsupported(node, f"a dereference of {describe(pointer)}")
        if argument.type == "subscript_expression":
            return self.eval(argument, state, guard)
        variable = state.find(text(argument)) if argument.type == "identifier" else None
        if variable is not None and isinstance(variable.value, StructValue):
            return variable.value  # &local struct: the struct it points to
        if variable is not None:
            # Read at once by the callee; the variable may not change afterwards (store).
            state.assign(text(argument), variable.value, address_taken=True)
            return Pointer(variable.value, variable.ctype)
        if argument.type == "field_expression":
            field = self.eval(argument, state, guard)
            if isinstance(field, CInt):
                return Pointer(field, CType("int", field.width, field.signed))
        return Opaque(f"the address of '{text(argument)}'")

    def _cast(self, node: Node, state: State, guard: Term) -> Value:
        descriptor, value = node.child_by_field_name("type"), node.child_by_field_name("value")
        assert descriptor is not None and value is not None
        pointer = any(c.type == "abstract_pointer_declarator" for c in descriptor.children)
        target = ctype(text(descriptor.child_by_field_name("type")), pointer)
        return self.cast(node, self.eval(value, state, guard), target)

    def cast(self, node: Node, value: Value, target: CType) -> Value:
        if isinstance(value, Pointer) and target.kind == "pointer":
            pointee = ctype(target.name[:-1].strip(), False)
            if pointee.kind == "int" and (pointee.width, pointee.signed) != (
                    value.pointee.width, value.pointee.signed) or pointee.kind == "bool" \
                    and value.pointee.kind != "bool":
                raise self.unsupported(node, f"a pointer to {value.pointee.name or 'a value'} "
                                       f"read as a pointer to {pointee.name}")
        return self.converted(node, value, target)

    def _call(self, node: Node, state: State, guard: Term) -> Value:
        function, arguments = node.child_by_field_name("function"), node.child_by_field_name(
            "arguments")
        assert function is not None and arguments is not None
        args = named(arguments)
        if function.type == "parenthesized_expression":  # (guint)(x): a cast the parser
            inner = named(function)  # cannot tell from a call without the typedefs
            if len(inner) == 1 and len(args) == 1 and text(inner[0]) in CAST_TYPES:
                return self.cast(node, self.eval(args[0], state, guard),
                                 ctype(text(inner[0]), False))
        if function.type != "identifier":
            raise self.unsupported(node, "a call through a function pointer")
        name = text(function)
        if name in LOOKUPS or name in SHIMMED:
            if self.role != "queue":
                raise self.unsupported(node, f"{name}() in the {self.role} callback")
            self.decisions["lookup" if name in LOOKUPS else "emit"].append(conj(state.pc, guard))
            state.pc = conj(state.pc, neg(guard))
            return Unreachable()
        model = library.model_of(name)
        if model is not None:
            return model.apply(self, node, args, state, guard)
        if name in self.ctx.functions:
            values = [self.eval(a, state, guard) for a in args]
            value, exit_pc = self.call(self.ctx.function(name), values, conj(state.pc, guard))
            state.pc = disj(conj(state.pc, neg(guard)), exit_pc)
            return value
        raise self.unsupported(node, f"a call to {name}()")

    _expressions: Dict[str, Callable[[Executor, Node, State, Term], Value]] = {
        "identifier": _identifier, "number_literal": _literal, "char_literal": _literal,
        "true": _literal, "false": _literal, "null": _literal, "string_literal": _string,
        "concatenated_string": _string, "parenthesized_expression": _parenthesized,
        "unary_expression": _unary, "binary_expression": _binary,
        "conditional_expression": _conditional, "assignment_expression": _assignment,
        "update_expression": _update, "field_expression": _field,
        "subscript_expression": _subscript, "pointer_expression": _pointer,
        "cast_expression": _cast, "call_expression": _call,
    }

    # ------------------------------------------------------------ helpers

    def initializer(self, node: Node, state: State) -> Value:
        fields = []
        for pair in named(node):
            designator = pair.child_by_field_name("designator")
            value = pair.child_by_field_name("value")
            if pair.type != "initializer_pair" or designator is None or value is None \
                    or designator.type != "field_designator":
                raise self.unsupported(pair, "a positional initializer")
            fields.append((text(designator).lstrip("."), self.eval(value, state, TRUE)))
        return StructValue(tuple(fields))

    def declared(self, declarator: Optional[Node]) -> Tuple[str, bool]:
        """The name a declarator declares, and whether it is a pointer."""
        pointer = False
        node = declarator
        while node is not None and node.type != "identifier":
            if node.type in ("array_declarator", "function_declarator"):
                raise self.unsupported(node, "an array or function-pointer variable")
            pointer |= node.type == "pointer_declarator"
            inner = node.child_by_field_name("declarator")
            node = inner if inner is not None else next(iter(named(node)), None)
        if node is None:
            raise self.unsupported(declarator or self.ctx.function(self.frames[-1].function),
                                   "an unnamed parameter")
        return text(node), pointer

    def accessed(self, node: Node, record: SymbolicRecord, member: str, state: State,
                 guard: Term) -> None:
        self.accesses.append(Access(node.start_point[0] + 1, record, member,
                                    conj(state.pc, guard)))

    def member_name(self, node: Node) -> Optional[str]:
        return self.string_literal(node) if node.type == "string_literal" else None

    def string_literal(self, node: Node) -> str:
        if node.type == "concatenated_string":
            return "".join(self.string_literal(c) for c in named(node))
        parts = []
        for child in node.named_children:
            if child.type == "string_content":
                parts.append(text(child))
            elif child.type == "escape_sequence":
                parts.append(codecs.decode(text(child), "unicode_escape"))
        return "".join(parts)

    def truth(self, node: Node, value: Value) -> Term:
        return self.value(node, truth, value)

    def value(self, node: Node, function: Callable[[Value], Any], value: Value) -> Any:
        try:
            return function(value)
        except NotModelled as error:
            raise self.unsupported(node, str(error)) from None

    def converted(self, node: Node, value: Value, target: CType) -> Value:
        converted: Value = self.value(node, lambda v: convert(v, target), value)
        return converted

    def unsupported(self, node: Node, construct: Optional[str] = None) -> Unsupported:
        snippet = text(node).splitlines()[0].strip() if text(node) else node.type
        snippet = snippet if len(snippet) <= 60 else snippet[:57] + "..."
        what = construct or CONSTRUCTS.get(node.type, f"'{node.type}'")
        where = f" in {self.frames[-1].function}()" if self.frames else ""
        return Unsupported(self.ctx.where(node), f"{what}{where}: `{snippet}`")


def translate(ctx: Context, role: str, records: Sequence[SymbolicRecord]) -> Translation:
    """One call of the role's function (queue, hash, equal) on @records."""
    name = ctx.extraction.roles[role]
    args: List[Value]
    if role == "queue":
        (record,) = records
        args = [CInt(record.event, False), EventQDict(record)]
    else:
        args = [RecordPtr(r) for r in records]
    return Executor(ctx, role).run(name, args)
