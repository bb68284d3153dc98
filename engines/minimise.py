"""The one minimiser: a failing timeline made 1-minimal and short, then made plain.

``minimise`` first tries the shortest candidates, the last operation alone and with
each other one (a failing run the stateful engine hands it ends with the step that
broke the invariant, and most throttle bugs need that step and one before it); then delta
debugging (ddmin: Zeller and Hildebrandt, "Simplifying and Isolating Failure-Inducing
Input", 2002) over the operations: it drops halves, then
quarters, ... of the timeline while the failure reproduces, and ends by dropping
single operations until none can go, so the result is 1-minimal (no single operation
can be removed). ``shorten`` then tries what removing one operation cannot: two clock
steps merged into one, a clock step to the next deadline instead of a fixed step,
two operations removed together. ``plain_values`` rewrites event data towards the
schema's plainest values (optional members dropped, model/members.py's filler values:
the first string of a member's universe, the typical or first enum value, 0, false),
in queued events and compared ones alike, wherever the failure still reproduces (every
value at once and all values but one first: one round when the failure needs a single
value that is not plain), so a counterexample reads like the proofs' ones.

Every check is a question about several candidates at once, "the first that still
fails" (FirstFailing), so that an engine can replay a whole round of candidates on
the C in one batch; ``one_at_a_time`` turns a plain "does it still fail" into one.
Every engine that shrinks a timeline (the stateful engine, the dynamic diff, mutate)
calls these with its own notion of "still fails".
"""
from __future__ import annotations

from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, TypeVar

from qthrottle.engines.judge import CompareKeys
from qthrottle.model.members import filler
from qthrottle.model.qapi_schema import Event, Member
from qthrottle.model.timeline import Advance, AdvanceToNext, EventData, Queue

T = TypeVar("T")
FirstFailing = Callable[[Sequence[List[Any]]], Optional[int]]


def one_at_a_time(fails: Callable[[List[Any]], bool]) -> FirstFailing:
    """Candidates checked in order, up to the first that fails."""
    def first(candidates: Sequence[List[Any]]) -> Optional[int]:
        return next((i for i, c in enumerate(candidates) if fails(c)), None)
    return first


def answered_once(first_failing: FirstFailing) -> FirstFailing:
    """@first_failing, never asked about a candidate whose answer it gave before: the
    passes propose some candidates again (ddmin's halves of a pair are the pair pass's
    single items, the single removals of two items are ddmin's halves). Answers are
    deterministic (the C and the judge are), so a known one stands: candidates known to
    pass are left out of the question, and one known to fail ends it. A candidate is
    known by its repr (timelines hold dicts)."""
    known: dict[str, bool] = {}

    def first(candidates: Sequence[List[Any]]) -> Optional[int]:
        keys = [repr(c) for c in candidates]
        end = next((i for i, k in enumerate(keys) if known.get(k)), len(keys))
        asked = [i for i in range(end)  # each unknown one once, as it first comes
                 if keys[i] not in known and keys.index(keys[i]) == i]
        found = first_failing([candidates[i] for i in asked]) if asked else None
        for position, index in enumerate(asked):
            if found is not None and position > found:
                break  # not run, or run after the failing one: not known
            known[keys[index]] = position == found
        if found is not None:
            return asked[found]
        return end if end < len(keys) else None
    return first


def _chunks(items: List[T], count: int) -> List[List[T]]:
    size, extra = divmod(len(items), count)
    bounds = [i * size + min(i, extra) for i in range(count + 1)]
    return [items[bounds[i]:bounds[i + 1]] for i in range(count)]


def minimise(items: Sequence[T], fails: Callable[[List[T]], bool],
             keep_one: bool = False) -> List[T]:
    """@items made 1-minimal for @fails, one check at a time (see ``minimise_batched``)."""
    return minimise_batched(items, answered_once(one_at_a_time(fails)), keep_one)


def minimise_batched(items: Sequence[T], first_failing: FirstFailing,
                     keep_one: bool = False) -> List[T]:
    """@items cut to the last item and one other if such a pair fails, then with every
    part whose removal keeps the failure removed (ddmin), then single items until none
    can go: 1-minimal.

    @keep_one: never try the empty list (a failure that needs no operation at all).
    """
    current = list(items)
    allowed = 1 if keep_one else 0
    if len(current) > 2:  # the shortest candidates first
        last = current[-1]
        pairs = [[last]] + [[x, last] for x in current[:-1]]
        found = first_failing(pairs)
        if found is not None:
            current = pairs[found]
    granularity = 2
    while len(current) >= 2:
        chunks = _chunks(current, min(granularity, len(current)))
        complements = [[x for j, chunk in enumerate(chunks) if j != i for x in chunk]
                       for i in range(len(chunks))] if len(chunks) > 2 else []
        found = first_failing(chunks + complements)
        if found is not None and found < len(chunks):  # a part alone still fails
            current, granularity = chunks[found], 2
            continue
        if found is not None:  # all but a part still fails
            current, granularity = complements[found - len(chunks)], max(granularity - 1, 2)
            continue
        if granularity >= len(current):
            break
        granularity = min(2 * granularity, len(current))
    while len(current) > allowed:
        candidates = [current[:i] + current[i + 1:] for i in range(len(current))]
        found = first_failing(candidates)
        if found is None:
            break
        current = candidates[found]
    return current


def _clock(op: Any) -> bool:
    return isinstance(op, (Advance, AdvanceToNext))


def shorten(operations: Sequence[Any], first_failing: FirstFailing) -> List[Any]:
    """A 1-minimal failing timeline made shorter where single removals cannot: adjacent
    clock steps merged (two fixed steps into their sum, or either into a step to the
    next deadline), then any two operations removed together; each rewrite kept if
    the failure still reproduces, until none applies."""
    current = list(operations)
    while True:
        candidates: List[List[Any]] = []
        for i in range(len(current) - 1):
            first, second = current[i], current[i + 1]
            if not (_clock(first) and _clock(second)):
                continue
            merged: List[Any] = [AdvanceToNext()]
            if isinstance(first, Advance) and isinstance(second, Advance):
                merged.insert(0, Advance(first.ns + second.ns))
            candidates += [current[:i] + [m] + current[i + 2:] for m in merged]
        candidates += [current[:i] + current[i + 1:j] + current[j + 1:]
                       for i in range(len(current)) for j in range(i + 1, len(current))
                       if len(current) > 2]
        found = first_failing(candidates) if candidates else None
        if found is None:
            return current
        current = candidates[found]


def plain_values(operations: Sequence[Any], events: Mapping[str, Event],
                 fails: Callable[[List[Any]], bool]) -> List[Any]:
    """``plain_values_batched``, one check at a time."""
    return plain_values_batched(operations, events, answered_once(one_at_a_time(fails)))


def _records(op: Any) -> List[Tuple[str, EventData]]:
    """The events a step carries: a queued one, or the two or three a compare step
    hands to the callbacks."""
    if isinstance(op, Queue):
        return [(op.event, op.data)]
    if isinstance(op, CompareKeys):
        return [r for r in (op.a, op.b, op.c) if r is not None]
    return []


def _with_records(op: Any, records: List[Tuple[str, EventData]]) -> Any:
    if isinstance(op, Queue):
        return Queue(*records[0])
    return CompareKeys(*records)


def plain_values_batched(operations: Sequence[Any], events: Mapping[str, Event],
                         first_failing: FirstFailing) -> List[Any]:
    """The timeline with optional members dropped and plain values, wherever it still
    fails: the queued events' and the compared ones'. A value is replaced everywhere
    the member has it, so that events sharing a key keep sharing it. A first round tries
    every rewrite together and all of them but one; then each round tries every
    remaining rewrite alone and keeps the first that still fails."""
    current = list(operations)

    def plain(record: Tuple[str, EventData], member: Member, value: Any
              ) -> Tuple[str, EventData]:
        event, data = record
        if data is None or member.name not in data or data[member.name] != value \
                or events[event].member(member.name) != member:
            return record
        return event, {k: filler(member) if k == member.name else v for k, v in data.items()
                       if k != member.name or not member.optional}

    def rewrite(op: Any, member: Member, value: Any) -> Any:
        records = _records(op)
        rewritten = [plain(r, member, value) for r in records]
        return op if rewritten == records else _with_records(op, rewritten)

    def rewrites() -> List[Tuple[Member, Any]]:
        found: List[Tuple[Member, Any]] = []
        for event, data in [r for op in current for r in _records(op)]:
            if data is None:
                continue
            for member in events[event].members:
                value = data.get(member.name)
                if member.name not in data or (not member.optional
                                               and value == filler(member)):
                    continue
                if (member, value) not in found:
                    found.append((member, value))
        return found

    def applied(these: Sequence[Tuple[Member, Any]]) -> List[Any]:
        candidate = current
        for member, value in these:
            candidate = [rewrite(op, member, value) for op in candidate]
        return candidate

    # Every rewrite at once, then all but one: one round when the failure needs at most
    # one value that is not plain (a stop event's action).
    every = rewrites()
    if len(every) > 1:
        candidates = [applied(every)] + [applied(every[:i] + every[i + 1:])
                                         for i in range(len(every))]
        found = first_failing(candidates)
        if found is not None:
            current = candidates[found]
    while True:
        candidates = []
        for member, value in rewrites():
            candidate = applied([(member, value)])
            if candidate != current and candidate not in candidates:
                candidates.append(candidate)
        found = first_failing(candidates) if candidates else None
        if found is None:
            return current
        current = candidates[found]
