"""Timelines for the stateful engine's search, drawn fast from the schema's strategies.

The member values come from engines/generate.py's strategies: once per search,
hypothesis draws a pool of values for every member (seeded, so a seed gives the same
pools); an event's data is then put together as generate.event_data puts it, each
member drawn independently and an optional one present or absent alike, from the
pools with a seeded PRNG. A timeline takes microseconds, so the search pays for the
C and the oracle, not for drawing. Each step is one of the engine's rules, with
equal chances:

  queue          an event the search focuses on (the throttled ones, BLOCK_IO_ERROR)
  unthrottled    an unthrottled event of the schema (invariant 6)
  stop           a BLOCK_IO_ERROR (invariant 4: the action is drawn too)
  again          an event of a key queued before in the run, its other members drawn
                 anew: a burst within one window, where the newest must win
  advance        the clock stepped around the rates (engines/bounds.py)
  next           the clock stepped to the next timer deadline
  compare        the callbacks called directly on two events of one name (1, 2),
                 of one key half the time

A search's first runs are not drawn by the rules: compare() runs (the key laws) and
probes() (each throttled event's window, a stop event alone and after one of its key).

``plain_random`` draws the peer the benchmark compares with: every event of the
schema and every kind of step alike, with none of the rules above.
"""
from __future__ import annotations

import functools
from random import Random
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from hypothesis import errors, given, seed
from hypothesis import strategies as st

from qthrottle.core import check_interrupted
from qthrottle.engines.bounds import STOP_PROBES, clock_steps, search_settings
from qthrottle.engines.generate import EventsUnderTest, member_value
from qthrottle.engines.judge import CompareKeys, Step
from qthrottle.model.invariants import STOP_EVENT, is_stop_event
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Event, Member
from qthrottle.model.timeline import Advance, AdvanceToNext, EventData, Queue

POOL_EXAMPLES = 2  # hypothesis examples drawn per pool: the simplest, then one at random
POOL_VALUES = 16  # values per member per example
STOP_DRAWS = 8  # draws of the stop rule for a stop event
PROBE_STOP_DRAWS = 64  # draws of a probe's stop event (one draw in 4 to 11 makes one, by seed)


@functools.lru_cache(maxsize=16)
def member_pools(events: Tuple[Event, ...], seed_value: int) -> Dict[Member, Tuple[Any, ...]]:
    """Values of every member of @events, drawn by hypothesis from generate.member_value
    (seeded: a seed gives the same pools; kept for the next search of the process)."""
    members = sorted({m for e in events for m in e.members}, key=repr)
    pools: Dict[Member, Tuple[Any, ...]] = {m: () for m in members}
    strategy = st.fixed_dictionaries({
        str(i): st.lists(member_value(m), min_size=POOL_VALUES, max_size=POOL_VALUES)
        for i, m in enumerate(members)})

    def keep(drawn: Dict[str, List[Any]]) -> None:
        for i, member in enumerate(members):
            pools[member] += tuple(drawn[str(i)])

    draw = seed(seed_value)(search_settings(POOL_EXAMPLES, shrink=False)(given(strategy)(keep)))
    try:
        draw()
    except errors.Flaky:  # hypothesis's name for an interruption inside a draw
        check_interrupted()
        raise
    return pools


class Values:
    """Event data for @events from the member pools, put together as generate.event_data
    does: each member drawn independently, an optional one present or absent alike."""

    def __init__(self, events: Sequence[Event], seed_value: int, random: Random) -> None:
        self.random = random
        self.pools = member_pools(tuple(events), seed_value)

    def data(self, event: Event) -> EventData:
        if not event.members:
            return None
        return {m.name: self.random.choice(self.pools[m]) for m in event.members
                if not (m.optional and self.random.random() < 0.5)}


class Sampler:
    """The engine's timelines for one target: up to @steps steps, seeded by @seed_value."""

    def __init__(self, events: EventsUnderTest, policy: Policy, steps: int,
                 seed_value: int) -> None:
        self.policy = policy
        self.steps = steps
        self.random = Random(seed_value)
        self.focus = list(events.focus) or events.all
        self.unthrottled = list(events.unthrottled) or self.focus
        self.stop_events = [e for e in self.focus if e.name == STOP_EVENT] or self.focus
        self.events = {e.name: e for e in events.all}
        self.values = Values(events.all, seed_value, self.random)
        self.compared = 0  # one-step compare runs drawn (compare)
        self.clock = clock_steps(policy.rates.values())
        self.rules: List[Callable[[List[Step]], Step]] = [
            lambda _: self._queue(self.focus), lambda _: self._queue(self.unthrottled),
            lambda _: self._stop(), self._again,
            lambda _: Advance(self.random.choice(self.clock)), lambda _: AdvanceToNext(),
            lambda _: self._compare()]

    def _queue(self, events: Sequence[Event]) -> Queue:
        event = self.random.choice(events)
        return Queue(event.name, self.values.data(event))

    def _stop(self) -> Queue:
        """A stop event (model/invariants.is_stop_event: its data decides)."""
        event = self.random.choice(self.stop_events)
        return Queue(event.name, self._stop_data(event))

    def _stop_data(self, event: Event, draws: int = STOP_DRAWS,
                   draw: Optional[Callable[[], EventData]] = None) -> EventData:
        """Data of @event (by @draw, else drawn from the pools), drawn again up to @draws
        times until it makes a stop event (drawn once for another event than
        BLOCK_IO_ERROR: none can make one)."""
        draw = draw or (lambda: self.values.data(event))
        data = draw()
        for _ in range(draws - 1 if event.name == STOP_EVENT else 0):
            if is_stop_event(event.name, data):
                break
            data = draw()
        return data

    def _again(self, so_far: List[Step]) -> Step:
        """An event of a key queued before in this run (another if none was)."""
        queued = [s for s in so_far if isinstance(s, Queue) and self.policy.throttled(s.event)]
        if not queued:
            return self._queue(self.focus)
        earlier = self.random.choice(queued)
        return Queue(earlier.event, self._same_key(earlier.event, earlier.data))

    def _same_key(self, event: str, data: EventData) -> EventData:
        """Data of @event with @data's key members, the others drawn anew."""
        fresh = self.values.data(self.events[event])
        if fresh is None or data is None:
            return data
        for member in self.policy.keys.get(event, ()):
            if member in data:
                fresh[member] = data[member]
            else:
                fresh.pop(member, None)
        return fresh

    def compare(self) -> List[Step]:
        """A one-step run: the compare rule alone, on the events in turn (the key laws of
        each event tried alike, however many there are)."""
        self.compared += 1
        return [self._compare(self.focus[(self.compared - 1) % len(self.focus)])]

    def probes(self) -> List[List[Step]]:
        """Runs of two or three steps that ask directly what the throttle must do, as
        compare() asks the key laws. For each throttled focus event in turn: it, an
        event of its key, and the clock stepped by its rate (the window the second one
        waits out: 5). Then STOP_PROBES times: a stop event alone (its run's
        settling clock step asks that its key, if inserted, is removable: 3) and one
        after an event of its key (never delayed, merged or dropped: 4), its values
        drawn again up to PROBE_STOP_DRAWS times until they make one. A probe that fails
        is at or next to its shortest counterexample already."""
        runs: List[List[Step]] = []
        for event in self.focus:
            rate = self.policy.rates.get(event.name, 0)
            if rate:
                first = self.values.data(event)
                runs.append([Queue(event.name, first),
                             Queue(event.name, self._same_key(event.name, first)),
                             Advance(rate)])
        for event in (e for e in self.focus if e.name == STOP_EVENT):
            for _ in range(STOP_PROBES):
                runs.append([Queue(event.name, self._stop_data(event, PROBE_STOP_DRAWS))])
                first = self.values.data(event)
                of_its_key = functools.partial(self._same_key, event.name, first)
                stop = self._stop_data(event, PROBE_STOP_DRAWS, of_its_key)
                runs.append([Queue(event.name, first), Queue(event.name, stop)])
        return runs

    def _compare(self, event: Optional[Event] = None) -> CompareKeys:
        """Two events of one name (@event's, or drawn), of the same key half the time
        (where equal must hold and the hashes agree), else drawn apart; the first a stop
        event half the time, where its name can make one (the throttle's exception)."""
        event = event or self.random.choice(self.focus)
        a = self._stop_data(event) if self.random.random() < 0.5 else self.values.data(event)
        b = self._same_key(event.name, a) if self.random.random() < 0.5 \
            else self.values.data(event)
        return CompareKeys((event.name, a), (event.name, b))

    def timeline(self) -> List[Step]:
        steps: List[Step] = []
        for _ in range(self.random.randint(1, self.steps)):
            steps.append(self.random.choice(self.rules)(steps))
        return steps


def plain_random(events: EventsUnderTest, policy: Policy, steps: int, seed_value: int
                 ) -> Callable[[], List[Step]]:
    """Plain random timelines, the benchmark's peer: each step, alike, an event of the
    schema queued, the clock stepped around the rates or to the next deadline, or two
    events of one name compared; values from the same pools."""
    random = Random(seed_value)
    values = Values(events.all, seed_value, random)
    clock = clock_steps(policy.rates.values())

    def step() -> Step:
        kind = random.randrange(4)
        event = random.choice(events.all)
        if kind == 0:
            return Queue(event.name, values.data(event))
        if kind == 1:
            return Advance(random.choice(clock))
        if kind == 2:
            return AdvanceToNext()
        return CompareKeys((event.name, values.data(event)), (event.name, values.data(event)))

    return lambda: [step() for _ in range(random.randint(1, steps))]
