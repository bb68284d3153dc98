"""One seeded bug per construct of the translated C: the proofs FALSIFY it, the C confirms.

The other direction of tests/test_metamorphic.py: there, rewrites that keep what the
code does keep every verdict; here, each construct the translator models (locals
of each type, pointers to locals, operators, comparisons, casts, if chains,
switch, ternaries, do { } while (0), helpers, every library model, locks, trace
points, aborts) carries a bug, and the proof that must catch it FALSIFIES it with
a counterexample the sanitized C reproduces. The bugs are our own code, planted in
the bundled stop-bypass case (monitor.c's shape); each variant sits at a path fixed
by its content, so its driver is built once and then found in the cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import pytest

from qthrottle.cases import SCHEMA_DIR
from qthrottle.harness.cache import store_file
from qthrottle.harness.target import Target, resolve
from qthrottle.proofs.engine import prove_target
from qthrottle.proofs.induction import RUN_INVARIANTS
from qthrottle.proofs.library import LIBRARY
from qthrottle.proofs.solve import FALSIFIED

# Where a bug goes in stop-bypass.c (our own code).
HASH_END = "    return hash;\n}\n\n/*\n * Two records share a key"
EQUAL_CHECK = "    if (lhs->event != rhs->event) {\n"  # the event test
EQUAL_FIRST = ("    if (lhs->event == QAPI_EVENT_VSERPORT_CHANGE) {\n"  # after the event test
               '        return !strcmp(qdict_get_str(lhs->data, "id"),')
LOCK = "    QEMU_LOCK_GUARD(&monitor_lock);\n\n    if (!throttled) {"  # in the queue function
HELPERS = "/* Must agree with qapi_event_throttle_equal"
QOM_PATHS = ('!strcmp(qdict_get_str(lhs->data, "qom-path"), '
             'qdict_get_str(rhs->data, "qom-path"))')


@dataclass(frozen=True)
class Bug:
    construct: str
    anchor: str  # where, in stop-bypass.c: the code goes just before it
    code: str
    invariant: int  # the proof that must catch it
    helper: str = ""  # a static function placed before the hash


def at_hash(event: str, body: str) -> str:
    return f"    if (evstate->event == QAPI_EVENT_{event}) {{\n        {body}\n    }}\n"


def at_equal(event: str, body: str) -> str:
    return f"    if (lhs->event == QAPI_EVENT_{event}) {{\n        {body}\n    }}\n"


BUGS: List[Bug] = [
    # locals, pointers to locals, the hash functions: a hash the equality does not follow
    Bug("int64_t local, &local, g_int64_hash", HASH_END, at_hash(
        "RTC_CHANGE", 'int64_t offset = qdict_get_int(evstate->data, "offset");\n'
        "        hash ^= g_int64_hash(&offset);"), 2),
    Bug("int local, g_int_hash", HASH_END, at_hash(
        "QUORUM_FAILURE", 'int sectors = qdict_get_int(evstate->data, "sectors-count");\n'
        "        hash += g_int_hash(&sectors);"), 2),
    Bug("bool local, qdict_get_bool, GINT_TO_POINTER, g_direct_hash", HASH_END, at_hash(
        "VSERPORT_CHANGE", 'bool open = qdict_get_bool(evstate->data, "open");\n'
        "        hash += g_direct_hash(GINT_TO_POINTER(open));"), 2),
    Bug("uint64_t local, casts, >> and ^", HASH_END, at_hash(
        "MEMORY_DEVICE_SIZE_CHANGE", 'uint64_t size = qdict_get_int(evstate->data, "size");\n'
        "        hash ^= (unsigned int)(size >> 32) ^ (unsigned int)size;"), 2),
    Bug("do { } while (0) with break", HASH_END,
        "    do {\n        if (evstate->event != QAPI_EVENT_BLOCK_IO_ERROR) {\n"
        "            break;\n        }\n"
        '        hash += g_str_hash(qdict_get_str(evstate->data, "device"));\n'
        "    } while (0);\n", 2),
    Bug("static helper, inlined", HASH_END, at_hash(
        "BLOCK_IO_ERROR", 'hash += member_hash(evstate->data, "reason");'), 2,
        helper="static unsigned int member_hash(QDict *data, const char *member)\n{\n"
               "    return g_str_hash(qdict_get_str(data, member));\n}\n\n"),
    Bug("ternary", HASH_END,
        "    hash += evstate->event == QAPI_EVENT_QUORUM_REPORT_BAD ?\n"
        '        g_str_hash(qdict_get_str(evstate->data, "type")) : 0;\n', 2),
    Bug("switch with fall-through", HASH_END,
        "    switch (evstate->event) {\n    case QAPI_EVENT_VSERPORT_CHANGE:\n"
        '        hash += 1;\n    case QAPI_EVENT_QUORUM_REPORT_BAD:\n'
        '        hash += g_str_hash(qdict_get_str(evstate->data, "node-name"));\n'
        "        break;\n    default:\n        break;\n    }\n", 7),
    # QDict readers: absent, mistyped, NULL
    Bug("qdict_get_str of an optional member, unguarded", HASH_END, at_hash(
        "BLOCK_IO_ERROR", 'hash += g_str_hash(qdict_get_str(evstate->data, "node-name"));'),
        7),
    Bug("qdict_get_try_str, const char * local, a NULL to g_str_hash", HASH_END, at_hash(
        "BLOCK_IO_ERROR", 'const char *node = qdict_get_try_str(evstate->data, "node-name");\n'
        "        hash += g_str_hash(node);"), 7),
    Bug("qdict_get_bool of a string member", HASH_END, at_hash(
        "VSERPORT_CHANGE", 'hash += qdict_get_bool(evstate->data, "id");'), 7),
    Bug("qdict_haskey, abort()", HASH_END, at_hash(
        "BLOCK_IO_ERROR", 'if (qdict_haskey(evstate->data, "nospace")) {\n'
        "            abort();\n        }"), 7),
    # aborts
    Bug("g_assert", HASH_END, "    g_assert(evstate->event != QAPI_EVENT_RTC_CHANGE);\n", 7),
    Bug("assert", EQUAL_CHECK, "    assert(lhs->event != QAPI_EVENT_WATCHDOG);\n", 7),
    Bug("g_assert_not_reached", HASH_END, at_hash("BALLOON_CHANGE", "g_assert_not_reached();"),
        7),
    Bug("g_error", HASH_END, at_hash("WATCHDOG", 'g_error("watchdog");'), 7),
    Bug("division by zero", HASH_END, at_hash(
        "RTC_CHANGE", 'hash += 1000 / (unsigned int)(qdict_get_int(evstate->data, "offset") '
        "& 3);"), 7),
    Bug("<< by more than the width", HASH_END, at_hash(
        "RTC_CHANGE", 'hash += 1u << qdict_get_int(evstate->data, "offset");'), 7),
    # the equality: locals, operators, comparisons, casts, early returns
    Bug("qdict_get presence tests in const bool locals, ^", EQUAL_FIRST, at_equal(
        "BLOCK_IO_ERROR", 'const bool has_a = qdict_get(lhs->data, "node-name") != NULL;\n'
        '        const bool has_b = qdict_haskey(rhs->data, "node-name");\n'
        f"        return {QOM_PATHS} && (has_a ^ has_b);"), 1),
    Bug("|| in a return", EQUAL_FIRST, at_equal(
        "BLOCK_IO_ERROR", f'return {QOM_PATHS} || qdict_haskey(lhs->data, "node-name");'), 1),
    Bug("comparison of integers", EQUAL_FIRST, at_equal(
        "RTC_CHANGE", 'return qdict_get_int(lhs->data, "offset") <= '
        'qdict_get_int(rhs->data, "offset");'), 1),
    Bug("comparison of bools", EQUAL_FIRST, at_equal(
        "VSERPORT_CHANGE", 'return qdict_get_bool(lhs->data, "open") >= '
        'qdict_get_bool(rhs->data, "open");'), 1),
    Bug("casts to int8_t and uint8_t", EQUAL_FIRST, at_equal(
        "RTC_CHANGE", 'return (int8_t)qdict_get_int(lhs->data, "offset") <= '
        '(uint8_t)qdict_get_int(rhs->data, "offset");'), 1),
    Bug("unsigned wrap-around", EQUAL_FIRST, at_equal(
        "RTC_CHANGE", 'return (unsigned int)qdict_get_int(lhs->data, "offset") - '
        '(unsigned int)qdict_get_int(rhs->data, "offset") < 10u;'), 1),
    Bug("if chain: an early return before the event test", EQUAL_CHECK,
        "    if (lhs->event == QAPI_EVENT_VSERPORT_CHANGE) {\n"
        '        return !strcmp(qdict_get_str(lhs->data, "id"), '
        'qdict_get_str(rhs->data, "id"));\n    }\n', 7),
    Bug("qdict_get_try_int defaults", EQUAL_FIRST, at_equal(
        "RTC_CHANGE", 'return qdict_get_try_int(lhs->data, "offsets", 0) == '
        'qdict_get_try_int(rhs->data, "offsets", 1);'), 1),
    Bug("qdict_get_try_bool defaults", EQUAL_FIRST, at_equal(
        "BLOCK_IO_ERROR", f'return {QOM_PATHS} &&\n'
        '            qdict_get_try_bool(lhs->data, "nospace", false) ==\n'
        '            qdict_get_try_bool(rhs->data, "nospace", true);'), 1),
    Bug("qobject_to", EQUAL_FIRST, at_equal(
        "BLOCK_IO_ERROR", 'if (qobject_to(QBool, qdict_get(lhs->data, "nospace"))) {\n'
        "            return TRUE;\n        }"), 2),
    Bug("strncmp", EQUAL_FIRST, at_equal(
        "BLOCK_IO_ERROR", 'return !strncmp(qdict_get_str(lhs->data, "qom-path"),\n'
        '                         qdict_get_str(rhs->data, "qom-path"), 8);'), 2),
    Bug("g_strcmp0", EQUAL_FIRST, at_equal(
        "BLOCK_IO_ERROR", 'return g_strcmp0(qdict_get_try_str(lhs->data, "node-name"),\n'
        '                         qdict_get_try_str(rhs->data, "node-name")) != 0;'), 1),
    Bug("g_str_equal on a NULL", EQUAL_FIRST, at_equal(
        "BLOCK_IO_ERROR", 'const char *x = qdict_get_try_str(lhs->data, "node-name");\n'
        '        const char *y = qdict_get_try_str(rhs->data, "node-name");\n'
        "        return g_str_equal(x, y);"), 7),
    Bug("g_int64_equal", EQUAL_FIRST, at_equal(
        "QUORUM_REPORT_BAD", 'int64_t x = qdict_get_int(lhs->data, "sector-num");\n'
        '        int64_t y = qdict_get_int(rhs->data, "sector-num");\n'
        "        return g_int64_equal(&x, &y);"), 2),
    Bug("g_int_equal", EQUAL_FIRST, at_equal(
        "QUORUM_REPORT_BAD", 'int x = qdict_get_int(lhs->data, "sectors-count");\n'
        '        int y = qdict_get_int(rhs->data, "sectors-count");\n'
        "        return g_int_equal(&x, &y);"), 2),
    Bug("ternary in a return", EQUAL_FIRST, at_equal(
        "MEMORY_DEVICE_SIZE_CHANGE", 'return qdict_haskey(lhs->data, "id") ?\n'
        '            !strcmp(qdict_get_str(lhs->data, "id"), qdict_get_str(rhs->data, "id"))'
        " : FALSE;"), 1),
    # the queue function: locks and trace points are no-ops, the code around them is not
    Bug("qemu_mutex_lock/unlock, a return between them", LOCK,
        "    qemu_mutex_lock(&monitor_lock);\n"
        "    if (event == QAPI_EVENT_BLOCK_IO_ERROR && !throttled) {\n"
        "        qemu_mutex_unlock(&monitor_lock);\n        return;\n    }\n"
        "    qemu_mutex_unlock(&monitor_lock);\n", 4),
    Bug("WITH_QEMU_LOCK_GUARD, a return in its block", LOCK,
        "    WITH_QEMU_LOCK_GUARD(&monitor_lock) {\n"
        "        if (event == QAPI_EVENT_BLOCK_IO_ERROR && !throttled) {\n"
        "            return;\n        }\n    }\n", 4),
    Bug("QEMU_LOCK_GUARD, a return after it", LOCK,
        "    QEMU_LOCK_GUARD(&monitor_lock);\n"
        "    if (!throttled && event == QAPI_EVENT_BLOCK_IO_ERROR) {\n        return;\n    }\n",
        4),
    Bug("trace point arguments are evaluated", LOCK,
        '    trace_qthrottle_event_node(qdict_get_str(data, "node-name"));\n', 7),
]


def planted(bug: Bug) -> Target:
    source = resolve("stop-bypass").monitor_c.read_text()
    assert source.count(bug.anchor) == 1, bug.anchor
    source = source.replace(bug.anchor, bug.code + bug.anchor)
    if bug.helper:
        source = source.replace(HELPERS, bug.helper + HELPERS)
    path = store_file("seeded-constructs", "monitor.c", source.encode("utf-8"))
    return Target(bug.construct, path, SCHEMA_DIR)


def test_the_bugs_cover_every_modelled_call() -> None:
    """Each library model of proofs/library.py that can go wrong has its seeded bug."""
    planted_text = "\n".join(b.code + b.helper + b.construct for b in BUGS)
    unplanted = [name for name in LIBRARY if f"{name}(" not in planted_text]
    assert unplanted == ["qdict_get_qdict", "GUINT_TO_POINTER"]  # glue a bug cannot live in


@pytest.mark.parametrize("bug", BUGS, ids=[b.construct for b in BUGS])
def test_a_bug_in_the_construct_is_falsified_and_replayed(bug: Bug) -> None:
    # The run proofs (invariants 3-6) cost the most: only a bug in one of them needs them.
    report = prove_target(planted(bug), runs=bug.invariant in RUN_INVARIANTS)
    assert bug.invariant in report.falsified, [(r.law, r.status, r.reason)
                                               for r in report.results]
    caught = [r for r in report.results if r.invariant == bug.invariant
              and r.status == FALSIFIED]
    assert any(r.confirmed for r in caught), [(r.law, r.replay) for r in caught]
