"""The stateful engine finds what each case study breaks, shrunk; no false alarm elsewhere."""
from __future__ import annotations

from typing import Dict

import pytest
from qthrottle.harness.target import resolve
from qthrottle.model.invariants import is_stop_event
from qthrottle.model.timeline import Queue

from qthrottle.stateful import PROFILES, SearchResult, verify_target

SEED = 20261125
_results: Dict[str, SearchResult] = {}


def verify(name: str, profile: str = "quick") -> SearchResult:
    key = f"{name}/{profile}"
    if key not in _results:
        _results[key] = verify_target(resolve(name), PROFILES[profile], SEED)
    return _results[key]


def queued(result: SearchResult, invariant: int) -> list:
    return [op for op in result.falsified[invariant].operations if isinstance(op, Queue)]


def test_stop_irreflexive_dangling_entry_in_at_most_3_operations() -> None:
    result = verify("stop-irreflexive")
    example = result.falsified[3]
    assert len(example.operations) <= 3
    assert "dangling entry" in example.message


def test_stop_irreflexive_delays_a_stop_after_a_report() -> None:
    example = verify("stop-irreflexive").falsified[4]
    assert len(example.operations) <= 3
    last = queued(verify("stop-irreflexive"), 4)[-1]
    assert is_stop_event(last.event, last.data)


def test_stop_irreflexive_equality_is_not_symmetric() -> None:
    assert "equal(" in verify("stop-irreflexive").falsified[1].message


def test_per_device_delays_a_stop_event_in_two_queued_events() -> None:
    result = verify("per-device")
    assert set(result.falsified) == {4}
    assert len(queued(result, 4)) == 2


def test_optional_key_aborts_on_the_absent_member() -> None:
    result = verify("optional-key")
    assert set(result.falsified) == {7}
    crash = result.falsified[7].crash
    assert crash is not None and crash.kind == "missing-member" and "node-name" in crash.report


@pytest.mark.parametrize("name", ["baseline", "stop-bypass"])
def test_correct_cases_pass(name: str) -> None:
    result = verify(name)
    assert result.falsified == {} and result.unknown is None


@pytest.mark.real_qemu
@pytest.mark.parametrize("fixture", ["qemu_tree_72", "qemu_tree_100"])
def test_real_qemu_passes(fixture: str, request: pytest.FixtureRequest) -> None:
    tree = request.getfixturevalue(fixture)
    result = verify_target(resolve(str(tree)), PROFILES["quick"], SEED)
    assert result.falsified == {} and result.unknown is None
