"""The throttle policy derived from what the code does (proofs/policy.py), never guessed.

Each case study and each real QEMU release gets the keys its equality implements;
rates are the compiler's; a key that is no comparison of members is UNKNOWN, and
`verify` then says UNKNOWN for the invariants the key judges.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from qthrottle.cases import SCHEMA_DIR
from qthrottle.cli import main
from qthrottle.harness.build import compiled_rates
from qthrottle.harness.target import Target, resolve
from qthrottle.proofs.engine import prove_target
from qthrottle.proofs.policy import DerivedPolicy, derive_policy
from qthrottle.proofs.solve import PROVED
from qthrottle.review.lint import lint_extraction

SECOND = 1_000_000_000
BASELINE_KEYS = {"VSERPORT_CHANGE": ("id",), "QUORUM_REPORT_BAD": ("node-name",),
                 "MEMORY_DEVICE_SIZE_CHANGE": ("qom-path",)}
PER_DEVICE_KEYS = {**BASELINE_KEYS, "BLOCK_IO_ERROR": ("qom-path",)}
EXPECTED_KEYS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "baseline": BASELINE_KEYS, "per-device": PER_DEVICE_KEYS,
    "stop-irreflexive": PER_DEVICE_KEYS, "stop-bypass": PER_DEVICE_KEYS,
    "optional-key": {**BASELINE_KEYS, "BLOCK_IO_ERROR": ("node-name",)},
    # 5.2 keys MEMORY_DEVICE_SIZE_CHANGE on nothing; 10.0.x adds BLOCK_IO_ERROR.
    "qemu-5.2": {"VSERPORT_CHANGE": ("id",), "QUORUM_REPORT_BAD": ("node-name",)},
    "qemu-7.2": BASELINE_KEYS, "qemu-10.0": PER_DEVICE_KEYS,
}
REAL_QEMU = {"qemu-5.2": "qemu_tree_52", "qemu-7.2": "qemu_tree_72",
             "qemu-10.0": "qemu_tree_100"}


def target(name: str, request: pytest.FixtureRequest) -> Target:
    if name in REAL_QEMU:
        return resolve(str(request.getfixturevalue(REAL_QEMU[name])))
    return resolve(name)


def derived(t: Target) -> DerivedPolicy:
    return derive_policy(t.extract(), t.catalog())


def replaced(tmp_path: Path, case: str, old: str, new: str) -> Target:
    source = resolve(case).monitor_c.read_text()
    assert old in source, old
    path = tmp_path / f"{case}.c"
    path.write_text(source.replace(old, new))
    return Target(path.name, path, SCHEMA_DIR)


@pytest.mark.parametrize("name", list(EXPECTED_KEYS))
def test_keys_and_rates_of_every_case_and_release(name: str,
                                                  request: pytest.FixtureRequest) -> None:
    t = target(name, request)
    policy = derived(t)
    assert policy.unknown == {}
    assert policy.policy.keys == EXPECTED_KEYS[name]
    compiled = compiled_rates(t.extract(), t.schema_events())
    assert policy.policy.rates == {e: r for e, r in compiled.items() if r}
    assert set(policy.policy.rates.values()) == {SECOND}
    assert ("BLOCK_IO_ERROR" in policy.policy.rates) == (name not in (
        "baseline", "qemu-5.2", "qemu-7.2"))
    for (event, member), where in policy.key_reads.items():
        file, _, line = where.rpartition(":")
        assert f'"{member}"' in Path(file).read_text().splitlines()[int(line) - 1], event


def test_stop_irreflexive_key_is_derived_where_equality_is_an_equivalence() -> None:
    """Its equality is FALSE on a stop event's own record (invariant 1): the key is the
    relation on the other records, and the derivation says which records it set aside.
    A member read only to return FALSE (action) is not a key."""
    policy = derived(resolve("stop-irreflexive"))
    assert policy.policy.keys["BLOCK_IO_ERROR"] == ("qom-path",)
    assert policy.unknown == {}
    assert policy.assumptions == (
        "BLOCK_IO_ERROR: the key is derived on the records equal to themselves; equal(r, r) "
        "is FALSE for the records with action=stop (invariant 1 is falsified there)",)


KEY_HELPER = """static const char *key_member(QAPIEvent event)
{
    switch (event) {
    case QAPI_EVENT_VSERPORT_CHANGE:
        return "id";
    case QAPI_EVENT_QUORUM_REPORT_BAD:
        return "node-name";
    case QAPI_EVENT_MEMORY_DEVICE_SIZE_CHANGE:
    case QAPI_EVENT_BLOCK_IO_ERROR:
        return "qom-path";
    default:
        return NULL;
    }
}

static unsigned int qapi_event_throttle_hash(const void *key)
{
    const MonitorQAPIEventState *evstate = key;
    const char *member = key_member(evstate->event);

    return evstate->event * 255 + (member ? g_str_hash(qdict_get_str(evstate->data, member))
                                          : 0);
}

static gboolean qapi_event_throttle_equal(const void *a, const void *b)
{
    const MonitorQAPIEventState *lhs = a, *rhs = b;
    const char *member = key_member(lhs->event);
    bool same = lhs->event == rhs->event;

    if (same && member) {
        same = g_str_equal(qdict_get_str(lhs->data, member), qdict_get_str(rhs->data, member));
    }
    return same;
}
"""


def callbacks_replaced(tmp_path: Path, case: str, text: str) -> Target:
    """@case with its hash and equality replaced by @text (our own code)."""
    source = resolve(case).monitor_c.read_text()
    start = source.index("/* Must agree with qapi_event_throttle_equal")
    end = source.index("static void monitor_qapi_event_init")
    path = tmp_path / f"{case}-callbacks.c"
    path.write_text(source[:start] + text + "\n" + source[end:])
    return Target(path.name, path, SCHEMA_DIR)


def test_a_helper_returning_the_key_member_gives_the_same_policy(tmp_path: Path) -> None:
    """The rewrite of the issue: a switch in a helper names the key member; a const char *
    local, g_str_equal and a bool result. Same behaviour, so the same policy, proved."""
    t = callbacks_replaced(tmp_path, "stop-bypass", KEY_HELPER)
    policy = derived(t)
    assert policy.policy.keys == PER_DEVICE_KEYS and policy.unknown == {}
    assert all(r.status == PROVED for r in prove_target(t, replay_in_c=False).results)


GUARDED_AND_INTEGER_KEYS = """static unsigned int qapi_event_throttle_hash(const void *key)
{
    const MonitorQAPIEventState *evstate = key;
    unsigned int hash = evstate->event * 255;

    if (evstate->event == QAPI_EVENT_RTC_CHANGE) {
        int64_t offset = qdict_get_int(evstate->data, "offset");
        hash ^= g_int64_hash(&offset);
    } else if (evstate->event == QAPI_EVENT_MEMORY_DEVICE_SIZE_CHANGE) {
        const bool has_id = qdict_get(evstate->data, "id");
        hash += has_id ? g_str_hash(qdict_get_str(evstate->data, "id")) : 0;
    }
    return hash;
}

static gboolean qapi_event_throttle_equal(const void *a, const void *b)
{
    const MonitorQAPIEventState *lhs = a, *rhs = b;

    if (lhs->event != rhs->event) {
        return FALSE;
    }
    if (lhs->event == QAPI_EVENT_RTC_CHANGE) {
        int64_t x = qdict_get_int(lhs->data, "offset"), y = qdict_get_int(rhs->data, "offset");
        return g_int64_equal(&x, &y);
    }
    if (lhs->event == QAPI_EVENT_MEMORY_DEVICE_SIZE_CHANGE) {
        const bool has_a = qdict_get(lhs->data, "id"), has_b = qdict_get(rhs->data, "id");
        return !(has_a ^ has_b) && (!has_a || !strcmp(qdict_get_str(lhs->data, "id"),
                                                      qdict_get_str(rhs->data, "id")));
    }
    return TRUE;
}
"""


def test_integer_and_guarded_optional_keys(tmp_path: Path) -> None:
    t = callbacks_replaced(tmp_path, "stop-bypass", GUARDED_AND_INTEGER_KEYS)
    policy = derived(t)
    assert policy.policy.keys == {"RTC_CHANGE": ("offset",), "MEMORY_DEVICE_SIZE_CHANGE": ("id",)}
    assert all(r.status == PROVED for r in prove_target(t, replay_in_c=False).results)


def test_a_relation_that_compares_no_member_is_unknown(tmp_path: Path) -> None:
    prefix = replaced(tmp_path, "stop-bypass", """return !strcmp(qdict_get_str(lhs->data, "id"),
                       qdict_get_str(rhs->data, "id"));""", """return !strncmp(qdict_get_str(lhs->data, "id"),
                        qdict_get_str(rhs->data, "id"), 2);""")
    policy = derived(prefix)
    assert "VSERPORT_CHANGE" not in policy.policy.keys
    assert re.fullmatch(r"the equality of VSERPORT_CHANGE is not a comparison of members \(it "
                        r'is not "id agree" on the records the table can hold\) \(e\.g\. '
                        r"equal\(a, b\) = TRUE for .*\)", policy.unknown["VSERPORT_CHANGE"])
    assert policy.key_text("VSERPORT_CHANGE") == "UNKNOWN"


def test_records_of_two_events_compared_equal_are_unknown(tmp_path: Path) -> None:
    t = replaced(tmp_path, "stop-bypass", "    if (lhs->event != rhs->event) {",
                 "    if (lhs->event != rhs->event && lhs->event != QAPI_EVENT_RTC_CHANGE) {")
    policy = derived(t)
    assert set(policy.unknown) >= {"RTC_CHANGE"}
    assert "matches records of two events (RTC_CHANGE and " in policy.unknown["RTC_CHANGE"]


# RTC_CHANGE throttled per parity of its offset: an equivalence, hashed consistently,
# so invariants 1-4 and 7 hold; but the policy datatype keys on members, and this is
# no comparison of a member: invariants 5 and 6 cannot be judged.
PARITY = """static unsigned int qapi_event_throttle_hash(const void *key)
{
    const MonitorQAPIEventState *evstate = key;
    unsigned int hash = evstate->event * 255;

    if (evstate->event == QAPI_EVENT_RTC_CHANGE) {
        hash += qdict_get_int(evstate->data, "offset") & 1;
    }
    return hash;
}

static gboolean qapi_event_throttle_equal(const void *a, const void *b)
{
    const MonitorQAPIEventState *lhs = a, *rhs = b;

    if (lhs->event != rhs->event) {
        return FALSE;
    }
    if (lhs->event == QAPI_EVENT_RTC_CHANGE) {
        return (qdict_get_int(lhs->data, "offset") & 1) ==
               (qdict_get_int(rhs->data, "offset") & 1);
    }
    return TRUE;
}
"""


def test_verify_says_unknown_when_the_key_cannot_be_derived(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = callbacks_replaced(tmp_path, "stop-bypass", PARITY)
    assert main(["verify", str(t.monitor_c), "--qapi-dir", str(SCHEMA_DIR), "--seed", "1",
                 "--profile", "smoke"]) == 3
    out = capsys.readouterr().out
    assert re.search(r"5  throttled events keep the rate, newest wins +UNKNOWN", out)
    assert re.search(r"6  unthrottled events are emitted at once, in order +UNKNOWN", out)
    assert "key of RTC_CHANGE UNKNOWN: the equality of RTC_CHANGE is not a comparison" in out
    assert "FALSIFIED" not in out


def test_rates_are_the_compilers(tmp_path: Path) -> None:
    """Expressions no Python evaluator of the extraction handled; the compiler does."""
    t = replaced(tmp_path, "stop-bypass",
                 "[QAPI_EVENT_RTC_CHANGE]                = { 1000 * SCALE_MS },",
                 "[QAPI_EVENT_RTC_CHANGE] = { .rate = NANOSECONDS_PER_SECOND >> 1 },")
    source = t.monitor_c.read_text().replace(
        "[QAPI_EVENT_WATCHDOG]                  = { 1000 * SCALE_MS },",
        "[QAPI_EVENT_WATCHDOG]                  = { sizeof(QDict) ? 3 * SCALE_US : 0 },")
    t.monitor_c.write_text(source)
    rates = derived(t).policy.rates
    assert rates["RTC_CHANGE"] == SECOND // 2 and rates["WATCHDOG"] == 3000
    assert rates["VSERPORT_CHANGE"] == SECOND


def lint(t: Target) -> List[Tuple[str, str, object]]:
    policy = derived(t)
    return [(w.event, w.rule, w.member) for w in lint_extraction(
        t.extract(), t.catalog(), policy.policy, policy.key_reads, policy.unknown)]


def test_the_lint_reads_the_derived_keys(tmp_path: Path) -> None:
    # A guarded key on the optional id: events without an id share one throttle.
    guarded = callbacks_replaced(tmp_path, "stop-bypass", GUARDED_AND_INTEGER_KEYS)
    assert ("MEMORY_DEVICE_SIZE_CHANGE", "optional-key", "id") in lint(guarded)
    # RTC_CHANGE carries qom-path; keyed per offset parity (UNKNOWN) it gets no key warning.
    parity = callbacks_replaced(tmp_path, "stop-bypass", PARITY)
    assert "RTC_CHANGE" in derived(parity).unknown
    assert not [w for w in lint(parity) if w[0] == "RTC_CHANGE"]
    assert ("RTC_CHANGE", "global-throttle", "qom-path") in lint(resolve("stop-bypass"))


def test_diff_lists_an_underived_key_as_an_open_question(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parity = callbacks_replaced(tmp_path, "stop-bypass", PARITY)
    assert main(["diff", "stop-bypass", str(parity.monitor_c), "--new-qapi-dir",
                 str(SCHEMA_DIR), "--timelines", "5", "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert any(line.startswith("key (new) UNKNOWN for RTC_CHANGE: the equality of RTC_CHANGE "
                               "is not a comparison of members") for line in report["unknown"])
