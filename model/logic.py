"""One logic layer for every engine: plain Python values or z3 terms.

Each invariant in model/ is written once with these connectives. Called on
plain values (hypothesis, CrossHair, the model-vs-C tests) they compute a
bool; called with any z3 expression among their arguments they build the z3
term the proofs hand to the solver.

z3 is never imported here: if no module has imported it yet, no argument can
be a z3 expression, so plain evaluation is the only possible case.
"""
# Optional/Union stay (not "X | None"): hypothesis and CrossHair evaluate annotations
# with typing.get_type_hints, which cannot evaluate "|" on Python 3.9.

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Optional

# A Python bool or a z3 BoolRef; Any because z3 ships no type information.
Bool = Any


# Types no z3 expression has: arguments of only these are plain without asking z3 (the
# engines' judge calls these connectives millions of times per search).
_PLAIN = frozenset({bool, int, str, type(None)})


def _z3_for(args: tuple[Any, ...]) -> Optional[ModuleType]:
    """The z3 module if any argument is a z3 expression, else None."""
    for arg in args:
        if type(arg) not in _PLAIN:
            break
    else:
        return None
    z3 = sys.modules.get("z3")
    if z3 is not None and any(isinstance(arg, z3.ExprRef) for arg in args):
        return z3
    return None


def And(*xs: Bool) -> Bool:
    z3 = _z3_for(xs)
    if z3 is not None:
        return z3.And(*xs)
    return all(bool(x) for x in xs)


def Or(*xs: Bool) -> Bool:
    z3 = _z3_for(xs)
    if z3 is not None:
        return z3.Or(*xs)
    return any(bool(x) for x in xs)


def Not(x: Bool) -> Bool:
    z3 = _z3_for((x,))
    if z3 is not None:
        return z3.Not(x)
    return not x


def Implies(a: Bool, b: Bool) -> Bool:
    z3 = _z3_for((a, b))
    if z3 is not None:
        return z3.Implies(a, b)
    return (not a) or bool(b)


def Ite(c: Bool, a: Any, b: Any) -> Any:
    """If c then a else b (both branches are already evaluated)."""
    z3 = _z3_for((c, a, b))
    if z3 is not None:
        return z3.If(c, a, b)
    return a if c else b


def Eq(a: Any, b: Any) -> Bool:
    z3 = _z3_for((a, b))
    if z3 is not None:
        # Put the z3 side first so that its __eq__ builds the term.
        return a == b if isinstance(a, z3.ExprRef) else b == a
    return bool(a == b)
