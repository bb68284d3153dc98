"""z3 proofs of the extracted C: each case study's verdict, real QEMU, UNKNOWN never a pass."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest
from run_checks import assert_all_timelines  # tests/ is on the path

from qthrottle.cases import SCHEMA_DIR
from qthrottle.cli import main
from qthrottle.engines.bounds import Profile
from qthrottle.harness.target import Target, resolve
from qthrottle.model.invariants import is_stop_event
from qthrottle.model.timeline import EventData
from qthrottle.proofs.engine import ProofReport, ProofResult, prove_target
from qthrottle.proofs.library import listed
from qthrottle.proofs.solve import FALSIFIED, PROVED, UNKNOWN
from qthrottle.review.target_policy import verify_target

_reports: Dict[str, ProofReport] = {}


def proofs(name: str) -> ProofReport:
    if name not in _reports:
        _reports[name] = prove_target(resolve(name))
    return _reports[name]


# A test that asserts on the callback laws and totality only proves with runs=False: the
# run proofs (invariants 3-6, tests/test_induction.py's) cost the most and it never reads them.
def law(report: ProofReport, name: str) -> ProofResult:
    return next(r for r in report.results if r.law == name)


def assert_all_proved(report: ProofReport) -> None:
    for result in report.results:
        assert result.status == PROVED, f"{result.law}: {result.status}: {result.reason}"
        # PROVED is only given once assumptions and premises were shown satisfiable.
        assert "vacuous" not in result.reason


def action(data: EventData) -> Optional[str]:
    return data.get("action") if data else None


def variant(tmp_path: Path, case: str, function: str, text: str) -> Target:
    """A case study with one function replaced, written as a monitor.c of its own."""
    source = resolve(case).monitor_c.read_text()
    found = re.search(r"^static [^\n]*\b" + function + r"\(.*?^\}\n", source, re.S | re.M)
    assert found is not None, function
    path = tmp_path / f"{case}-{function}.c"
    path.write_text(source[:found.start()] + text.strip() + "\n" + source[found.end():])
    return Target(path.name, path, SCHEMA_DIR)


# ------------------------------------------------------------------ cases

def test_stop_irreflexive_stop_event_is_not_equal_to_itself() -> None:
    result = law(proofs("stop-irreflexive"), "reflexive")
    assert result.status == FALSIFIED
    assert is_stop_event(*result.events["a"])
    assert result.facts == ["equal(a, a) = FALSE"]
    assert result.confirmed is True and result.replay == ["Driver.equal(a, a) -> False"]


def test_stop_irreflexive_equality_is_asymmetric_on_report_and_stop() -> None:
    result = law(proofs("stop-irreflexive"), "symmetric")
    assert result.status == FALSIFIED
    (name_a, a), (name_b, b) = result.events["a"], result.events["b"]
    assert name_a == name_b == "BLOCK_IO_ERROR" and a and b
    assert {action(a), action(b)} == {"stop", "report"}
    assert a["qom-path"] == b["qom-path"]
    assert result.confirmed is True


def test_stop_irreflexive_removal_leaves_a_dangling_entry() -> None:
    result = law(proofs("stop-irreflexive"), "removal")
    assert result.invariant == 3 and result.status == FALSIFIED
    (_, first), (_, second) = result.events["r1"], result.events["r2"]
    assert first and second and first["qom-path"] == second["qom-path"]
    assert [action(first), action(second)] == ["stop", "report"]
    assert result.confirmed is True
    assert any("dangling-entry" in line for line in result.replay)
    assert any("heap-use-after-free" in line for line in result.replay)


def test_stop_irreflexive_delays_a_stop_after_a_report() -> None:
    result = law(proofs("stop-irreflexive"), "stop never throttled")
    assert result.invariant == 4 and result.status == FALSIFIED
    (_, stored), (_, stop) = result.events["s"], result.events["e"]
    assert stored and stop and stored["qom-path"] == stop["qom-path"]
    assert (action(stored), action(stop)) == ("report", "stop")
    assert result.confirmed is True
    assert any("stop event not emitted at once" in line for line in result.replay)


def test_stop_irreflexive_keeps_the_other_laws() -> None:
    report = proofs("stop-irreflexive")
    assert report.falsified == {1, 3, 4}
    for name in ("transitive", "hash consistent", "totality"):
        assert law(report, name).status == PROVED


def test_per_device_breaks_only_invariant_4() -> None:
    report = proofs("per-device")
    assert report.falsified == {4} and not report.unknown
    result = law(report, "stop never throttled")
    assert is_stop_event(*result.events["e"]) and result.confirmed is True


def test_optional_key_reads_the_optional_node_name() -> None:
    report = proofs("optional-key")
    assert report.falsified == {7} and not report.unknown
    result = law(report, "totality")
    assert "'node-name'" in result.reason and "optional" in result.reason
    assert re.search(r"optional-key\.c:\d+: hash", result.reason)
    event, data = result.events["a"]
    assert event == "BLOCK_IO_ERROR" and data and "node-name" not in data
    assert result.confirmed is True and "missing-member" in result.replay[0]


@pytest.mark.parametrize("case", ["baseline", "stop-bypass"])
def test_correct_cases_prove_every_theorem(case: str) -> None:
    assert_all_proved(proofs(case))


# ------------------------------------------------------------- real QEMU

@pytest.mark.real_qemu
def test_qemu_52_proves_every_theorem(qemu_tree_52: Path) -> None:
    """5.2 locks with qemu_mutex_lock/unlock: sequential no-ops, as QEMU_LOCK_GUARD."""
    assert "qemu_mutex_lock(&monitor_lock);" in (
        qemu_tree_52 / "monitor" / "monitor.c").read_text()
    report = prove_target(resolve(str(qemu_tree_52)))
    assert_all_proved(report)
    assert_all_timelines(report)  # 3-6 by k-induction


@pytest.mark.real_qemu
def test_qemu_72_proves_every_theorem(qemu_tree_72: Path) -> None:
    report = prove_target(resolve(str(qemu_tree_72)))
    assert_all_proved(report)
    assert_all_timelines(report)  # 3-6 by k-induction


@pytest.mark.real_qemu
def test_qemu_100_proves_every_theorem(qemu_tree_100: Path) -> None:
    report = prove_target(resolve(str(qemu_tree_100)))
    assert_all_proved(report)
    assert_all_timelines(report)  # 3-6 by k-induction


# ---------------------------------------------- never a silent pass

LOOPING_EQUAL = """
static gboolean qapi_event_throttle_equal(const void *a, const void *b)
{
    const MonitorQAPIEventState *lhs = a;
    const MonitorQAPIEventState *rhs = b;
    int i;

    for (i = 0; i < 2; i++) {
        if (lhs->event != rhs->event) {
            return FALSE;
        }
    }
    return TRUE;
}
"""


def test_a_loop_in_the_equality_is_unknown_at_its_line(tmp_path: Path) -> None:
    target = variant(tmp_path, "stop-bypass", "qapi_event_throttle_equal", LOOPING_EQUAL)
    line = target.monitor_c.read_text().splitlines().index("    for (i = 0; i < 2; i++) {") + 1
    report = prove_target(target, replay_in_c=False)
    for result in report.results:  # every theorem calls the equality
        assert result.status == UNKNOWN
        assert f"{target.monitor_c}:{line}: unsupported C construct: a for loop" in \
            result.reason


def test_no_throttled_event_is_vacuous_not_proved(tmp_path: Path) -> None:
    path = tmp_path / "monitor.c"
    path.write_text(resolve("stop-bypass").monitor_c.read_text().replace(
        "{ 1000 * SCALE_MS }", "{ 0 }"))
    report = prove_target(Target("no-rates", path, SCHEMA_DIR), replay_in_c=False, runs=False)
    for name in ("reflexive", "hash consistent", "removal", "totality"):
        assert law(report, name).status == UNKNOWN
        assert "vacuous" in law(report, name).reason


SUBSET_EQUAL = """
static bool same_node(QDict *a, QDict *b)
{
    return !g_strcmp0(qdict_get_try_str(a, "node-name"), qdict_get_try_str(b, "node-name"));
}

static gboolean qapi_event_throttle_equal(const void *a, const void *b)
{
    const MonitorQAPIEventState *eva = a, *evb = b;
    gboolean same = TRUE;

    if (eva->event != evb->event) {
        return FALSE;
    }
    switch (eva->event) {
    case QAPI_EVENT_VSERPORT_CHANGE:
        same = g_str_equal(qdict_get_str(eva->data, "id"), qdict_get_str(evb->data, "id"))
               && qdict_get_bool(eva->data, "open") == qdict_get_bool(evb->data, "open");
        break;
    case QAPI_EVENT_RTC_CHANGE:
        same = qdict_get_int(eva->data, "offset") == qdict_get_int(evb->data, "offset");
        break;
    case QAPI_EVENT_QUORUM_REPORT_BAD:
        same = qdict_haskey(eva->data, "node-name") ? same_node(eva->data, evb->data) : FALSE;
        break;
    case QAPI_EVENT_MEMORY_DEVICE_SIZE_CHANGE:
    case QAPI_EVENT_BLOCK_IO_ERROR:
        return strcmp(qdict_get_str(eva->data, "qom-path"),
                      qdict_get_str(evb->data, "qom-path")) == 0 ? TRUE : FALSE;
    default:
        break;
    }
    return same;
}
"""


def test_switch_fallthrough_ternary_helpers_and_null_safe_reads_are_proved(
        tmp_path: Path) -> None:
    target = variant(tmp_path, "stop-bypass", "qapi_event_throttle_equal", SUBSET_EQUAL)
    assert_all_proved(prove_target(target, replay_in_c=False))


UNGUARDED_HASH = """
static unsigned int qapi_event_throttle_hash(const void *key)
{
    const MonitorQAPIEventState *evstate = key;
    unsigned int hash = evstate->event * 255;
    const char *node = qdict_get_try_str(evstate->data, "node-name");

    if (evstate->event == QAPI_EVENT_BLOCK_IO_ERROR GUARD) {
        hash ^= g_str_hash(node) * 31;
    }
    return hash;
}
"""


def test_a_null_from_qdict_get_try_str_is_a_totality_obligation(tmp_path: Path) -> None:
    (tmp_path / "guarded").mkdir()
    guarded = variant(tmp_path / "guarded", "stop-bypass", "qapi_event_throttle_hash",
                      UNGUARDED_HASH.replace("GUARD", "&& node"))
    assert law(prove_target(guarded, replay_in_c=False, runs=False), "totality").status == \
        PROVED
    unguarded = variant(tmp_path, "stop-bypass", "qapi_event_throttle_hash",
                        UNGUARDED_HASH.replace("GUARD", ""))
    result = law(prove_target(unguarded, replay_in_c=False, runs=False), "totality")
    assert result.status == FALSIFIED and "g_str_hash(node)" in result.reason
    assert "'node-name'" in result.reason


def test_hash_of_a_member_equality_ignores_is_replayed(tmp_path: Path) -> None:
    hash_device = UNGUARDED_HASH.replace("GUARD", "").replace(
        'qdict_get_try_str(evstate->data, "node-name")', "NULL").replace(
        "g_str_hash(node)", 'g_str_hash(qdict_get_str(evstate->data, "device"))')
    report = prove_target(variant(tmp_path, "stop-bypass", "qapi_event_throttle_hash",
                                  hash_device))
    # Two records of one key: the per-key proof does not apply, yet its timeline of two
    # events of that key emitted at once breaks 5 in the C too.
    assert report.falsified == {2, 5}
    assert all(r.confirmed is True for r in report.results if r.status == FALSIFIED)
    result = law(report, "hash consistent")
    (_, a), (_, b) = result.events["a"], result.events["b"]
    assert a and b and a["qom-path"] == b["qom-path"] and a["device"] != b["device"]
    assert result.confirmed is True


def test_a_read_with_the_wrong_getter_falsifies_totality(tmp_path: Path) -> None:
    source = resolve("stop-bypass").monitor_c.read_text()
    read = 'hash += g_str_hash(qdict_get_str(evstate->data, "id"));'
    assert read in source
    path = tmp_path / "monitor.c"
    path.write_text(source.replace(read, read + '\n        hash += qdict_get_bool('
                                   'evstate->data, "id");'))
    result = law(prove_target(Target("bool-id", path, SCHEMA_DIR), runs=False), "totality")
    assert result.status == FALSIFIED
    assert "reads 'id' as bool" in result.reason and "types it str" in result.reason
    assert result.events["a"][0] == "VSERPORT_CHANGE"
    assert result.confirmed is True and "wrong-member-type" in result.replay[0]


ASSERTING_HASH = UNGUARDED_HASH.replace(
    "    if (evstate->event == QAPI_EVENT_BLOCK_IO_ERROR GUARD) {",
    "    g_assert(evstate->event != QAPI_EVENT_EVENT);\n"
    "    if (evstate->event == QAPI_EVENT_BLOCK_IO_ERROR && node) {")


def test_a_reachable_g_assert_falsifies_totality_an_unreachable_one_costs_nothing(
        tmp_path: Path) -> None:
    # STOP is never throttled, so no STOP record reaches the hash: the assert cannot fire.
    (tmp_path / "unreachable").mkdir()
    unreachable = variant(tmp_path / "unreachable", "stop-bypass", "qapi_event_throttle_hash",
                          ASSERTING_HASH.replace("EVENT_EVENT", "EVENT_STOP"))
    assert law(prove_target(unreachable, replay_in_c=False, runs=False), "totality").status \
        == PROVED
    reachable = variant(tmp_path, "stop-bypass", "qapi_event_throttle_hash",
                        ASSERTING_HASH.replace("EVENT_EVENT", "EVENT_RTC_CHANGE"))
    result = law(prove_target(reachable, runs=False), "totality")
    assert result.status == FALSIFIED
    assert "RTC_CHANGE: reaches `g_assert(evstate->event != QAPI_EVENT_RTC_CHANGE)`, which " \
        "aborts" in result.reason
    assert result.events["a"][0] == "RTC_CHANGE"
    assert result.confirmed is True and "assertion-failure" in result.replay[0]


KEYED_ON_NODE = """
static unsigned int qapi_event_throttle_hash(const void *key)
{
    const MonitorQAPIEventState *evstate = key;
    unsigned int hash = evstate->event * 255;

    if (evstate->event == QAPI_EVENT_BLOCK_IO_ERROR GUARD) {
        hash += g_str_hash(qdict_get_str(evstate->data, "node-name"));
    }
    return hash;
}
"""


def test_a_guarded_optional_read_is_total_unguarded_it_is_not_in_both_engines(
        tmp_path: Path) -> None:
    """A read of the optional node-name behind qdict_haskey() never aborts; the same read
    unguarded aborts on every BLOCK_IO_ERROR without it: z3 and the stateful engine agree."""
    (tmp_path / "guarded").mkdir()
    guarded = variant(tmp_path / "guarded", "stop-bypass", "qapi_event_throttle_hash",
                      KEYED_ON_NODE.replace("GUARD",
                                            '&&\n        qdict_haskey(evstate->data, "node-name")'))
    unguarded = variant(tmp_path, "stop-bypass", "qapi_event_throttle_hash",
                        KEYED_ON_NODE.replace("GUARD", ""))
    assert law(prove_target(guarded, replay_in_c=False, runs=False), "totality").status == \
        PROVED
    result = law(prove_target(unguarded, runs=False), "totality")
    assert result.status == FALSIFIED and "'node-name', which is optional" in result.reason
    assert result.confirmed is True
    small = Profile("small", runs=100, steps=8)
    assert 7 not in verify_target(guarded, small, 1).falsified
    crash = verify_target(unguarded, small, 1).falsified[7].crash
    assert crash is not None and crash.kind == "missing-member" and "node-name" in crash.report


# --------------------------------------------------------------- command

def test_prove_prints_counterexamples_and_replays_and_exits_1(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "stop-irreflexive", "--timeout-ms", "20000"]) == 1
    out = capsys.readouterr().out
    assert "solver timeout 20000 ms per query" in out
    assert re.search(r"1  equality is reflexive.* FALSIFIED", out)
    assert re.search(r"7  hash and equality read present members as their type, no abort +PROVED",
                     out)
    # reflexive, symmetric, removal, stop never throttled; 3 and 4 for all timelines
    assert out.count("replay against the C (confirmed by the C)") == 6
    assert '"action": "stop"' in out


def test_prove_exits_0_when_proved(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "stop-bypass"]) == 0
    out = capsys.readouterr().out
    assert "FALSIFIED" not in out and "UNKNOWN" not in out


def test_prove_timeout_is_unknown_and_exits_3(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Equal 4096-byte prefixes, different hashes: the counterexample needs ids longer
    # than 4096 bytes, which z3 does not find within 200 ms.
    source = resolve("baseline").monitor_c.read_text()
    compare = """return !strcmp(qdict_get_str(lhs->data, "id"),
                       qdict_get_str(rhs->data, "id"));"""
    assert compare in source
    path = tmp_path / "monitor.c"
    path.write_text(source.replace(compare, compare.replace("strcmp", "strncmp").replace(
        '"id"));', '"id"), 4096);')))
    assert main(["prove", str(path), "--qapi-dir", str(SCHEMA_DIR), "--timeout-ms", "200"]) == 3
    out = capsys.readouterr().out
    assert re.search(r"2  equal keys hash equally +UNKNOWN", out)
    assert "within the solver timeout of 200 ms" in out


def test_prove_unknown_construct_exits_3(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    target = variant(tmp_path, "stop-bypass", "qapi_event_throttle_equal", LOOPING_EQUAL)
    assert main(["prove", str(target.monitor_c), "--qapi-dir", str(SCHEMA_DIR)]) == 3
    assert "unsupported C construct: a for loop" in capsys.readouterr().out


# ------------------------------------------------ what README.md promises

ROOT = Path(__file__).resolve().parent.parent


def test_readme_shows_the_library_model_table() -> None:
    text = (ROOT / "README.md").read_text()
    section = text[:text.index("### Invariants 3-6 for every timeline")]
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, re.M)
    assert dict(rows) == listed()


# README.md: "What still gives UNKNOWN, naming the construct at file:line"
UNTRANSLATED = {
    "a for loop": "for (int i = 0; i < 1; i++) {\n        hash += i;\n    }",
    "a while loop": "while (hash == 0) {\n        hash = 1;\n    }",
    "goto": "goto out;\nout:",
    "continue": "continue;",
    "break outside a switch": "WITH_QEMU_LOCK_GUARD(&monitor_lock) {\n        break;\n    }",
    "a static or extern local variable": "static int calls;\n    hash += calls;",
    "an array or function-pointer variable": "int counts[2] = { 0, 0 };\n    hash += counts[0];",
    "sizeof": "hash += sizeof(hash);",
    "the comma operator": "hash = (hash, 1);",
    "a compound literal": "hash += (int){ 1 };",
    "a call through a function pointer": 'hash += (hash ? g_str_hash : g_str_hash)("x");',
    "a call to g_random_int()": "hash += g_random_int();",
    "calls nested deeper than 8": "hash += qapi_event_throttle_hash(key);",
    "pointer arithmetic": 'hash += *("ab" + 1);',
    "comparison of two pointers": "if (evstate->data == evstate->data) {\n        hash += 1;\n    }",
    "after its address was taken": "int64_t x = 1;\n    hash ^= g_int64_hash(&x);\n    x = 2;",
    "neither a literal nor one of a few literals":
        "if (evstate->event == QAPI_EVENT_VSERPORT_CHANGE) {\n        hash += g_str_hash("
        'qdict_get_str(evstate->data, qdict_get_str(evstate->data, "id")));\n    }',
    "only the event's data dict is modelled": 'hash += qdict_haskey(NULL, "id");',
}


@pytest.mark.parametrize("construct", list(UNTRANSLATED))
def test_an_untranslated_construct_is_unknown_at_its_line(construct: str,
                                                          tmp_path: Path) -> None:
    source = resolve("stop-bypass").monitor_c.read_text()
    anchor = "    return hash;\n}\n\n/*\n * Two records share a key"
    assert source.count(anchor) == 1
    path = tmp_path / "monitor.c"
    path.write_text(source.replace(anchor, f"    {UNTRANSLATED[construct]}\n{anchor}"))
    first = source[:source.index(anchor)].count("\n") + 1
    lines = range(first, first + UNTRANSLATED[construct].count("\n") + 1)
    report = prove_target(Target("untranslated", path, SCHEMA_DIR), replay_in_c=False,
                          runs=False)
    result = law(report, "hash consistent")
    assert result.status == UNKNOWN, result.reason
    assert "unsupported C construct" in result.reason and construct in result.reason
    where = re.match(rf"{re.escape(str(path))}:(\d+): ", result.reason)
    assert where is not None
    # A recursion is reported where the function it re-enters starts.
    assert int(where.group(1)) in lines or construct.startswith("calls nested")


SAME_WORK = """
import z3
from qthrottle.harness.target import resolve
from qthrottle.proofs.engine import prove_target
report = prove_target(resolve("stop-irreflexive"))
probe = z3.Solver()
probe.check()
statistics = probe.statistics()
print("z3 work:", statistics.get_key_value("rlimit count"))
for r in report.results:
    print(r.invariant, r.law, r.status, r.reason, r.events, r.timeline)
"""


def test_the_proofs_do_the_same_work_in_every_process() -> None:
    """z3's search follows the order of the terms it is given: a term built by iterating a
    set of strings (whose order changes with PYTHONHASHSEED) made the same proof take
    0.5-9 s in different processes, and a counterexample time out in some."""
    said = [subprocess.run([sys.executable, "-c", SAME_WORK], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": seed,
                                            "QTHROTTLE_PROOF_CACHE": "off"}).stdout
            for seed in ("1", "2")]
    assert "z3 work:" in said[0] and said[0] == said[1]
