"""The one minimiser: a failing timeline made 1-minimal, then made plain.

``minimise`` drops operations one at a time, from the first, while the failure
still reproduces: the result is 1-minimal (no single operation can be removed).
``plain_values`` then rewrites event data towards the schema's plainest values
(optional members dropped, model/members.py's filler values) wherever the
failure still reproduces, so a counterexample reads like the proofs' ones.
Every engine that shrinks a timeline (the stateful engine, the dynamic diff,
mutate) calls these with its own notion of "still fails".
"""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Sequence, TypeVar

from qthrottle.model.members import filler
from qthrottle.model.qapi_schema import Event, Member
from qthrottle.model.timeline import Queue

T = TypeVar("T")


def minimise(items: Sequence[T], fails: Callable[[List[T]], bool],
             keep_one: bool = False) -> List[T]:
    """@items without every item whose removal keeps @fails true, one at a time.

    @keep_one: never try the empty list (a failure that needs no operation at all).
    """
    current = list(items)
    changed = True
    while changed:
        changed = False
        for index in range(len(current)):
            candidate = current[:index] + current[index + 1:]
            if (candidate or not keep_one) and fails(candidate):
                current, changed = candidate, True
                break
    return current


def plain_values(operations: Sequence[Any], events: Mapping[str, Event],
                 fails: Callable[[List[Any]], bool]) -> List[Any]:
    """The timeline with optional members dropped and plain values, wherever it still
    fails. A value is replaced everywhere the member has it, so that events sharing a
    key keep sharing it."""
    current = list(operations)

    def rewrite(op: Any, member: Member, value: Any) -> Any:
        if not isinstance(op, Queue) or op.data is None or op.data.get(member.name) != value \
                or events[op.event].member(member.name) != member:
            return op
        return Queue(op.event, {k: filler(member) if k == member.name else v
                                for k, v in op.data.items()
                                if k != member.name or not member.optional})

    for op in list(current):
        if not isinstance(op, Queue) or op.data is None:
            continue
        for member in events[op.event].members:
            value = op.data.get(member.name)
            if member.name not in op.data or (not member.optional
                                              and value == filler(member)):
                continue
            candidate = [rewrite(other, member, value) for other in current]
            if candidate != current and fails(candidate):
                current = candidate
    return current
