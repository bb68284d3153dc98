"""Schema-driven generation: what the stateful engine feeds the C."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qthrottle.cases import SCHEMA_DIR
from qthrottle.engines.generate import event_data
from qthrottle.harness.driver import Driver
from qthrottle.harness.target import resolve
from qthrottle.model.members import g_str_hash, string_values
from qthrottle.model.qapi_schema import load_schema

CATALOG = load_schema(SCHEMA_DIR)


def test_hash_twins_collide_in_the_real_c_but_are_different_keys() -> None:
    twins = string_values("id")[-2:]
    assert twins[0] != twins[1] and g_str_hash(twins[0]) == g_str_hash(twins[1])
    a, b = ({"id": twin, "open": True} for twin in twins)
    with Driver(resolve("stop-bypass").build().binary) as driver:
        assert driver.hash("VSERPORT_CHANGE", a) == driver.hash("VSERPORT_CHANGE", b)
        assert driver.equal(("VSERPORT_CHANGE", a), ("VSERPORT_CHANGE", b)) is False


@settings(max_examples=200)
@given(st.data())
def test_generated_data_follows_the_schema(data: st.DataObject) -> None:
    event = CATALOG.event(data.draw(st.sampled_from(sorted(CATALOG.events))))
    drawn = data.draw(event_data(event))
    if not event.members:
        assert drawn is None
        return
    assert drawn is not None
    for member in event.members:
        if not member.optional:
            assert member.name in drawn
        if member.name in drawn and member.enum_values:
            assert drawn[member.name] in member.enum_values
    assert set(drawn) <= {m.name for m in event.members}


def test_optional_members_are_sometimes_absent() -> None:
    event = CATALOG.event("BLOCK_IO_ERROR")
    seen = set()

    @settings(max_examples=100)
    @given(event_data(event))
    def collect(drawn: dict) -> None:  # type: ignore[type-arg]
        seen.add("node-name" in drawn)

    collect()
    assert seen == {True, False}
