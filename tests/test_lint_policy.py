"""Policy lint (qthrottle/review/lint.py): the schema's view of the throttle policy the
code implements.

Real QEMU trees and the bundled cases get exactly the warnings listed here; the
rules themselves are checked on policies and catalogs built in the test, so no
event name is special to them.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest

from qthrottle.cases import EXPECTED, SCHEMA_DIR
from qthrottle.harness.target import Target, resolve
from qthrottle.model.policy import Policy
from qthrottle.model.qapi_schema import Catalog, Event, Member, load_schema
from qthrottle.review.lint import LintWarning, lint_extraction, lint_policy, member_docs
from qthrottle.review.target_policy import target_policy

SECOND = 1_000_000_000


def summary(warnings: List[LintWarning]) -> List[Tuple[str, str, object]]:
    return [(w.event, w.rule, w.member) for w in warnings]


def line_at(location: object) -> str:
    assert isinstance(location, str)
    file, _, line = location.rpartition(":")
    return Path(file).read_text().splitlines()[int(line) - 1]


def lint_target(target: Target) -> List[LintWarning]:
    """The lint as `qthrottle verify` runs it: on the policy derived from the code."""
    derived = target_policy(target)
    return lint_extraction(target.extract(), target.catalog(), derived.policy,
                           derived.key_reads, derived.unknown)


def lint_tree(tree: Path) -> List[LintWarning]:
    return lint_target(resolve(str(tree)))


# Real QEMU: RTC_CHANGE carries qom-path and QUORUM_FAILURE a reference documented as
# "device name if defined else node name", yet both are throttled per event name.
# Every other throttled event is keyed on a mandatory per-instance member or has none.
REAL_WARNINGS = [("RTC_CHANGE", "global-throttle", "qom-path"),
                 ("QUORUM_FAILURE", "global-throttle", "reference")]


@pytest.mark.real_qemu
def test_qemu_52_memory_devices_share_one_throttle(qemu_tree_52: Path) -> None:
    # In 5.2 RTC_CHANGE has no qom-path yet, and MEMORY_DEVICE_SIZE_CHANGE carries only
    # an optional id, on which its throttle is not keyed: every memory device shares one.
    warnings = lint_tree(qemu_tree_52)
    assert summary(warnings) == [("QUORUM_FAILURE", "global-throttle", "reference"),
                                 ("MEMORY_DEVICE_SIZE_CHANGE", "global-throttle", "id")]
    assert "throttled per event name" in warnings[1].explanation


@pytest.mark.real_qemu
def test_qemu_72_rtc_change_shares_one_throttle(qemu_tree_72: Path) -> None:
    warnings = lint_tree(qemu_tree_72)
    assert summary(warnings) == REAL_WARNINGS
    rtc, quorum = warnings
    assert "'event': 'RTC_CHANGE'" in line_at(rtc.schema)
    assert "[QAPI_EVENT_RTC_CHANGE]" in line_at(rtc.rate_table)
    assert "throttled per event name" in rtc.explanation
    assert "all instances share one throttle" in rtc.explanation
    assert '"device name if defined else node name"' in quorum.explanation


@pytest.mark.real_qemu
def test_qemu_100_rtc_change_shares_one_throttle(qemu_tree_100: Path) -> None:
    # BLOCK_IO_ERROR (10.0.x) is keyed on its mandatory qom-path: no warning for it.
    warnings = lint_tree(qemu_tree_100)
    assert summary(warnings) == REAL_WARNINGS
    assert str(qemu_tree_100 / "qapi" / "misc.json") in str(warnings[0].schema)
    for warning in warnings:
        assert f"'event': '{warning.event}'" in line_at(warning.schema)
        assert f"[QAPI_EVENT_{warning.event}]" in line_at(warning.rate_table)


@pytest.mark.real_qemu
def test_qemu_100_documents_device_as_possibly_empty(qemu_tree_100: Path) -> None:
    """A key on BLOCK_IO_ERROR's device would be shared by every unnamed image."""
    catalog = load_schema(qemu_tree_100 / "qapi")
    event = catalog.event("BLOCK_IO_ERROR")
    docs = {event.name: member_docs(event)}
    assert 'can be empty ("")' in docs[event.name]["device"]
    on_device = Policy({"BLOCK_IO_ERROR": SECOND}, {"BLOCK_IO_ERROR": ("device",)})
    assert summary(lint_policy(catalog, on_device, docs=docs)) == [
        ("BLOCK_IO_ERROR", "empty-key", "device")]
    # "not present if the drive is empty" is about the drive: optional, not empty.
    on_node = Policy({"BLOCK_IO_ERROR": SECOND}, {"BLOCK_IO_ERROR": ("node-name",)})
    assert summary(lint_policy(catalog, on_node, docs=docs)) == [
        ("BLOCK_IO_ERROR", "optional-key", "node-name")]


@pytest.mark.parametrize("case", list(EXPECTED))
def test_bundled_cases(case: str) -> None:
    warnings = lint_target(resolve(case))
    expected = [("RTC_CHANGE", "global-throttle", "qom-path")]
    if case == "optional-key":  # throttled per the optional node-name
        expected.insert(0, ("BLOCK_IO_ERROR", "optional-key", "node-name"))
    assert summary(warnings) == expected
    for warning in warnings:
        assert f"'event': '{warning.event}'" in line_at(warning.schema)
        assert f"[QAPI_EVENT_{warning.event}]" in line_at(warning.rate_table)
    if case == "optional-key":
        assert '"node-name"' in line_at(warnings[0].key_read)


def made_up_catalog() -> Catalog:
    """Events no rule has heard of, to show the rules read the schema, not names."""
    def member(name: str, optional: bool = False) -> Member:
        return Member(name, "str", optional, None)

    events = {
        "LAMP_CHANGE": Event("LAMP_CHANGE", (member("brightness"), member("lamp-qom-path")),
                             "lamps.json:10"),
        "FAN_SPEED": Event("FAN_SPEED", (member("rpm"), member("id", optional=True)),
                           "fans.json:20"),
        "CLOCK_TICK": Event("CLOCK_TICK", (member("ticks"),), "clock.json:30"),
    }
    return Catalog(events=events, enums={})


def test_per_instance_member_with_a_global_key() -> None:
    catalog = made_up_catalog()
    rates = {"LAMP_CHANGE": SECOND, "FAN_SPEED": 2 * SECOND, "CLOCK_TICK": SECOND}
    warnings = lint_policy(catalog, Policy(rates, {"FAN_SPEED": ("rpm",)}),
                           rate_table={"LAMP_CHANGE": "m.c:7"})
    assert summary(warnings) == [("LAMP_CHANGE", "global-throttle", "lamp-qom-path"),
                                 ("FAN_SPEED", "global-throttle", "id")]
    lamp, fan = warnings
    assert (lamp.schema, lamp.rate_table) == ("lamps.json:10", "m.c:7")
    assert "throttled per event name" in lamp.explanation and "within 1 s" in lamp.explanation
    assert "throttled per rpm" in fan.explanation and "within 2 s" in fan.explanation
    assert lamp.lines()[1] == "  at schema lamps.json:10; rate table m.c:7"


def test_per_instance_member_from_documentation() -> None:
    policy = Policy({"CLOCK_TICK": SECOND}, {})
    docs = {"CLOCK_TICK": {"ticks": "device name of the clock, then its count"}}
    assert summary(lint_policy(made_up_catalog(), policy, docs=docs)) == [
        ("CLOCK_TICK", "global-throttle", "ticks")]
    counted = {"CLOCK_TICK": {"ticks": "ticks since the clock was named"}}
    assert lint_policy(made_up_catalog(), policy, docs=counted) == []


def test_keyed_per_instance_or_unthrottled_is_quiet() -> None:
    catalog = made_up_catalog()
    keyed = Policy({"LAMP_CHANGE": SECOND}, {"LAMP_CHANGE": ("lamp-qom-path",)})
    assert lint_policy(catalog, keyed) == []
    unthrottled = Policy({"LAMP_CHANGE": 0}, {})
    assert lint_policy(catalog, unthrottled) == []


def test_optional_key_member() -> None:
    policy = Policy({"FAN_SPEED": SECOND}, {"FAN_SPEED": ("id",)})
    warnings = lint_policy(made_up_catalog(), policy, key_reads={("FAN_SPEED", "id"): "m.c:99"})
    assert summary(warnings) == [("FAN_SPEED", "optional-key", "id")]
    assert warnings[0].key_read == "m.c:99" and "optional in the schema" in warnings[0].explanation


def test_empty_key_member_from_documentation() -> None:
    policy = Policy({"LAMP_CHANGE": SECOND}, {"LAMP_CHANGE": ("lamp-qom-path",)})
    empty = {"LAMP_CHANGE": {"lamp-qom-path": 'QOM path, or "" for the built-in lamp'}}
    assert summary(lint_policy(made_up_catalog(), policy, docs=empty)) == [
        ("LAMP_CHANGE", "empty-key", "lamp-qom-path")]
    named = {"LAMP_CHANGE": {"lamp-qom-path": "QOM path; absent when the room is empty"}}
    assert lint_policy(made_up_catalog(), policy, docs=named) == []


def test_throttled_event_missing_from_the_schema() -> None:
    warnings = lint_policy(made_up_catalog(), Policy({"DOOR_OPEN": SECOND}, {}),
                           rate_table={"DOOR_OPEN": "m.c:8"})
    assert summary(warnings) == [("DOOR_OPEN", "not-in-schema", None)]
    assert warnings[0].schema is None and warnings[0].rate_table == "m.c:8"


def test_member_docs_of_the_bundled_schema() -> None:
    docs = member_docs(load_schema(SCHEMA_DIR).event("BLOCK_IO_ERROR"))
    assert docs["device"] == "name of the block backend, possibly empty"
    assert docs["node-name"].startswith("node where the failure happened; absent when")
    assert docs["node-name"].endswith("so it must not be a throttle key")
