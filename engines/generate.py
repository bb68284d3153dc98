"""Schema-driven event generation for the stateful engine and the dynamic diff.

Every event of the schema can be drawn; every member of an event is drawn
independently of the others; optional members are present or absent; enum
members take every value of their enum. Strings come from a small universe per
member so that keys collide, plus two distinct strings with equal g_str_hash
values, so that a hash/equality disagreement can surface. Integers range over
their QAPI type as C reads it (negatives, 0, the bounds), with a few values
drawn often so that integer keys collide too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from hypothesis import strategies as st

from qthrottle.engines.bounds import clock_steps
from qthrottle.model.members import INTEGER_RANGES, string_values
from qthrottle.model.qapi_schema import Catalog, Event, Member
from qthrottle.model.timeline import Advance, AdvanceToNext, Operation, Queue


def member_value(member: Member) -> st.SearchStrategy[Any]:
    if member.enum_values:
        return st.sampled_from(member.enum_values)
    if member.type == "str":
        return st.sampled_from(string_values(member.name))
    if member.type == "bool":
        return st.booleans()
    if member.type in INTEGER_RANGES:
        low, high = INTEGER_RANGES[member.type]
        bounds = [v for v in (low, low + 1, -1, 0, 1, high - 1, high) if low <= v <= high]
        return st.one_of(st.sampled_from([v for v in (0, 1) if low <= v <= high]),
                         st.sampled_from(sorted(set(bounds))), st.integers(low, high))
    if member.type == "number":
        return st.just(0.5)
    return st.just({})  # structs, lists, 'any': the throttle never reads into them


def event_data(event: Event) -> st.SearchStrategy[Optional[Dict[str, Any]]]:
    if not event.members:
        return st.none()
    parts: Dict[str, st.SearchStrategy[Any]] = {}
    for member in event.members:
        value = member_value(member)
        # An absent optional member is drawn as None and dropped below.
        parts[member.name] = st.one_of(st.none(), value) if member.optional else value

    def present(data: Dict[str, Any]) -> Dict[str, Any]:
        return {m.name: data[m.name] for m in event.members if data[m.name] is not None}

    return st.fixed_dictionaries(parts).map(present)


@dataclass(frozen=True)
class EventsUnderTest:
    """The events a search queues (a bound, printed with its result): the throttled ones
    and those the suite requires, and unthrottled ones, queued by a rule of their own
    so that invariant 6 is exercised on them without starving the throttled ones."""

    focus: Tuple[Event, ...]
    unthrottled: Tuple[Event, ...]
    schema_unthrottled: int  # the other events of the schema, all unthrottled

    @property
    def all(self) -> List[Event]:
        return [*self.focus, *self.unthrottled]

    def describe(self) -> str:
        unthrottled = (f"all {self.schema_unthrottled} unthrottled ones of the schema"
                       if len(self.unthrottled) == self.schema_unthrottled else
                       f"{len(self.unthrottled)} of the schema's {self.schema_unthrottled} "
                       "unthrottled ones")
        return f"events: {len(self.focus)} throttled or required, {unthrottled}"


def events_under_test(catalog: Catalog, throttled: Sequence[str],
                      extra: Sequence[str] = ("BLOCK_IO_ERROR",),
                      unthrottled: Optional[int] = None) -> EventsUnderTest:
    """The throttled events, the ones the suite requires, and the unthrottled ones
    (all of them, or the first @unthrottled)."""
    chosen = [e for e in catalog.events.values() if e.name in throttled or e.name in extra]
    others = [e for e in catalog.events.values() if e not in chosen]
    return EventsUnderTest(tuple(chosen), tuple(others[:unthrottled]), len(others))


def queue_operations(events: Sequence[Event]) -> st.SearchStrategy[Queue]:
    """An event of @events queued, with data drawn from its schema."""
    return st.one_of([st.builds(Queue, st.just(e.name), event_data(e)) for e in events])


def timelines(events: Sequence[Event], rates: Iterable[int], steps: int,
              focus: Sequence[Event] = (), unthrottled: Sequence[Event] = (),
              to_next_deadline: bool = True) -> st.SearchStrategy[List[Operation]]:
    """Timelines of 1 to @steps operations: an event of @events queued, or one of the
    @unthrottled ones in a third of those draws (so that the many unthrottled events of
    a schema do not starve the others), those of @focus also by a rule of their own, the
    clock stepped around @rates (engines/bounds.py) and, if asked, to the next timer
    deadline."""
    queued = queue_operations(events)
    if unthrottled:
        # Chosen by flatmap: one_of would flatten the branches into one uniform draw over
        # every event. Built once: building them in the flatmap costs a strategy per draw.
        others = queue_operations(unthrottled)
        queued = st.sampled_from([queued, queued, others]).flatmap(lambda chosen: chosen)
    choices: List[st.SearchStrategy[Operation]] = [queued]
    if focus:
        choices.append(queue_operations(focus))
    choices.append(st.builds(Advance, st.sampled_from(clock_steps(rates))))
    if to_next_deadline:
        choices.append(st.just(AdvanceToNext()))
    return st.lists(st.one_of(choices), min_size=1, max_size=steps)
