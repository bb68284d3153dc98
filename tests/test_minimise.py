"""The one minimiser (engines/minimise.py) on failures whose causes are known: what it
returns still fails, is 1-minimal, keeps the order, and is the same whether the
candidates are checked one at a time or a round at once."""
from __future__ import annotations

from random import Random
from typing import Callable, FrozenSet, List, Optional, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from qthrottle.cases import SCHEMA_DIR
from qthrottle.engines.judge import CompareKeys
from qthrottle.engines.minimise import (
    answered_once,
    minimise,
    minimise_batched,
    one_at_a_time,
    plain_values,
    plain_values_batched,
    shorten,
)
from qthrottle.model.members import filler
from qthrottle.model.qapi_schema import load_schema
from qthrottle.model.timeline import Advance, AdvanceToNext, Queue

CATALOG = load_schema(SCHEMA_DIR)

# A failure needs a set of items, in order (a subsequence), and maybe a count of them.
causes = st.lists(st.integers(0, 30), min_size=1, max_size=4, unique=True).map(sorted)


def needs(cause: Sequence[int]) -> Callable[[List[int]], bool]:
    def fails(candidate: List[int]) -> bool:
        it = iter(candidate)
        return all(any(x == c for x in it) for c in cause)
    return fails


@settings(max_examples=300, derandomize=True)
@given(causes, st.lists(st.integers(0, 30), max_size=40), st.randoms())
def test_the_result_still_fails_is_one_minimal_and_a_subsequence(
        cause: List[int], noise: List[int], random: Random) -> None:
    # The cause, in order, among the noise.
    at = sorted(random.randint(0, len(noise)) for _ in cause)
    items = list(noise)
    for offset, (position, c) in enumerate(zip(at, cause)):
        items.insert(position + offset, c)
    fails = needs(cause)
    assert fails(items)
    result = minimise(items, fails)
    assert fails(result)
    assert all(not fails(result[:i] + result[i + 1:]) for i in range(len(result)))
    assert needs(result)(items)  # a subsequence of the input, in its order
    assert result == cause  # here 1-minimal is the cause itself


@settings(max_examples=100, derandomize=True)
@given(st.lists(st.integers(0, 9), max_size=30), st.frozensets(st.integers(0, 9), max_size=3))
def test_a_round_at_once_gives_what_one_at_a_time_gives(items: List[int],
                                                        wanted: FrozenSet[int]) -> None:
    def fails(candidate: List[int]) -> bool:
        return wanted <= set(candidate)

    def first_failing(candidates: Sequence[List[int]]) -> Optional[int]:
        results = [fails(c) for c in candidates]  # every candidate of the round, at once
        return results.index(True) if True in results else None

    if fails(items):
        assert minimise_batched(items, first_failing) == minimise(items, fails)


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.lists(st.lists(st.integers(0, 3), max_size=3), min_size=1, max_size=6),
                max_size=8),
       st.frozensets(st.integers(0, 3), min_size=1, max_size=2))
def test_a_known_answer_is_not_asked_again_and_stands(rounds: List[List[List[int]]],
                                                      wanted: FrozenSet[int]) -> None:
    """answered_once answers every round as the question itself would, and never asks
    about a candidate it was told about: one that passed, or the one that failed."""
    told: List[str] = []

    def first_failing(candidates: Sequence[List[int]]) -> Optional[int]:
        found = next((i for i, c in enumerate(candidates) if wanted <= set(c)), None)
        told.extend(repr(c) for c in candidates[:len(candidates) if found is None else found + 1])
        return found

    def plain(candidates: Sequence[List[int]]) -> Optional[int]:
        return next((i for i, c in enumerate(candidates) if wanted <= set(c)), None)

    once = answered_once(first_failing)
    for candidates in rounds:
        assert once(candidates) == plain(candidates)
    assert len(told) == len(set(told))


def test_the_minimiser_asks_about_each_candidate_once() -> None:
    """Its passes propose candidates again (ddmin's halves of the pair found first are
    the pair pass's single items): each is checked once."""
    asked: List[List[int]] = []

    def fails(candidate: List[int]) -> bool:
        asked.append(candidate)
        return {5, 15} <= set(candidate)

    assert minimise(list(range(16)), fails) == [5, 15]
    assert sorted(map(repr, asked)) == sorted(set(map(repr, asked)))
    assert asked[-1] == [5]  # [15] was asked in the pair pass: [5] alone is what is left


def test_a_failure_of_the_last_item_and_one_other_takes_one_round() -> None:
    """The shortest candidates first: the last item alone, then with each other one. A
    failing run ends with the step that broke the invariant (stateful.failing_prefix),
    and most bundled bugs need it and one step before it."""
    rounds: List[int] = []

    def first_failing(candidates: Sequence[List[int]]) -> Optional[int]:
        rounds.append(len(candidates))
        return next((i for i, c in enumerate(candidates) if {5, 15} <= set(c)), None)

    assert minimise_batched(list(range(16)), first_failing) == [5, 15]
    assert rounds[0] == 16  # [15], then [0, 15], ..., [14, 15]
    assert rounds[1:] == [2, 2]  # and the checks that the pair is 1-minimal


def test_shorten_merges_clock_steps_that_single_removals_cannot() -> None:
    # Needs 1 s to pass between the two events: two half-second steps are 1-minimal.
    event = Queue("RTC_CHANGE", {"offset": 0, "qom-path": "/r"})
    half = Advance(500_000_000)

    def fails(candidate: List[object]) -> bool:
        if candidate.count(event) != 2:
            return False
        first, second = [i for i, x in enumerate(candidate) if x == event][:2]
        between = candidate[first + 1:second]
        waited = sum(x.ns for x in between if isinstance(x, Advance))
        return waited >= 1_000_000_000 or any(isinstance(x, AdvanceToNext) for x in between)

    timeline = [event, half, half, event]
    assert minimise(timeline, fails) == timeline  # 1-minimal already
    assert shorten(timeline, one_at_a_time(fails)) == [event, Advance(1_000_000_000), event]


def test_plain_values_drop_optional_members_and_take_the_filler() -> None:
    block = CATALOG.events["BLOCK_IO_ERROR"]
    drawn = {"qom-path": "/machine/peripheral/diskbZ", "device": "disk1", "node-name": "node1",
             "operation": "write", "action": "stop", "nospace": True, "reason": "reason-b"}
    timeline = [Queue(block.name, drawn)]

    def fails(candidate: List[Queue]) -> bool:  # the failure needs the stop action
        return candidate[0].data is not None and candidate[0].data.get("action") == "stop"

    [plain] = plain_values(timeline, CATALOG.events, fails)
    assert plain.data == {m.name: filler(m) for m in block.members if not m.optional} | {
        "action": "stop"}


def test_plain_values_try_every_value_plain_at_once_then_all_but_one() -> None:
    """A failure that needs one value that is not plain (a stop event's action) is made
    plain in one round, then one more finds nothing left to rewrite."""
    block = CATALOG.events["BLOCK_IO_ERROR"]
    drawn = {"qom-path": "/machine/peripheral/diskbZ", "device": "disk1", "node-name": "node1",
             "operation": "write", "action": "stop", "nospace": True, "reason": "reason-b"}
    rounds: List[int] = []

    def first_failing(candidates: Sequence[List[Queue]]) -> Optional[int]:
        rounds.append(len(candidates))
        return next((i for i, c in enumerate(candidates)
                     if c[0].data is not None and c[0].data.get("action") == "stop"), None)

    [plain] = plain_values_batched([Queue(block.name, drawn)], CATALOG.events, first_failing)
    assert plain.data == {m.name: filler(m) for m in block.members if not m.optional} | {
        "action": "stop"}
    assert rounds == [1 + len(drawn), 1]  # all at once, all but each one; then the action


def test_shorten_removes_two_steps_that_only_go_together() -> None:
    def fails(candidate: List[str]) -> bool:  # as many x as y, at least one of each
        return candidate.count("x") == candidate.count("y") >= 1

    # (the last item is not part of the failure: no pair with it fails)
    assert minimise(["x", "x", "y", "y", "z"], fails) == ["x", "x", "y", "y"]  # 1-minimal
    assert shorten(["x", "x", "y", "y"], one_at_a_time(fails)) == ["x", "y"]


def test_plain_values_reach_the_events_of_a_compare_step() -> None:
    """A key-law counterexample reads as plainly as a timeline: both compared events
    rewritten, the value they share rewritten in both."""
    block = CATALOG.events["BLOCK_IO_ERROR"]
    a = {"qom-path": "/machine/peripheral/diskbZ", "device": "disk1", "node-name": "node1",
         "operation": "write", "action": "stop", "nospace": True, "reason": "reason-b"}
    b = {**a, "operation": "read", "action": "report", "reason": "reason-c9"}
    timeline = [CompareKeys((block.name, a), (block.name, b))]

    def fails(candidate: List[CompareKeys]) -> bool:  # a stop event, and a shared qom-path
        (_, x), (_, y) = candidate[0].a, candidate[0].b
        return x is not None and y is not None and x.get("action") == "stop" \
            and x.get("qom-path") == y.get("qom-path")

    [plain] = plain_values(timeline, CATALOG.events, fails)
    required = {m.name: filler(m) for m in block.members if not m.optional}
    assert plain.a == (block.name, required | {"action": "stop"})
    assert plain.b == (block.name, required)
