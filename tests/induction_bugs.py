"""Seeded bugs for the k-induction proofs (issue 17), written by this project in the shape of
monitor.c's throttle: each replaces one function of the stop-bypass case study.

Each entry: the function replaced, its new text, and the invariant it breaks.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, NamedTuple

from qthrottle.cases import SCHEMA_DIR
from qthrottle.harness.target import Target, resolve


class SeededBug(NamedTuple):
    function: str
    text: str
    breaks: int


NO_REARM = SeededBug("monitor_qapi_event_handler", """
static void monitor_qapi_event_handler(void *opaque)
{
    MonitorQAPIEventState *rec = opaque;

    QEMU_LOCK_GUARD(&monitor_lock);

    if (rec->qdict) {
        /* Send what was held back; forgets to start the next interval. */
        monitor_qapi_event_emit(rec->event, rec->qdict);
        qobject_unref(rec->qdict);
        rec->qdict = NULL;
    } else {
        g_hash_table_remove(monitor_qapi_event_state, rec);
        qobject_unref(rec->data);
        timer_free(rec->timer);
        g_free(rec);
    }
}
""", 3)

# The queue function keeps the first event held back, not the newest: the handler
# then sends the oldest of the interval.
FIRST_WINS = SeededBug("monitor_qapi_event_queue_no_reenter", """
static void monitor_qapi_event_queue_no_reenter(QAPIEvent event, QDict *qdict)
{
    MonitorQAPIEventConf *conf = &monitor_qapi_event_conf[event];
    QDict *data = qobject_to(QDict, qdict_get(qdict, "data"));
    MonitorQAPIEventState *rec;
    bool limited = conf->rate != 0;

    if (event == QAPI_EVENT_BLOCK_IO_ERROR &&
        !strcmp(qdict_get_str(data, "action"), "stop")) {
        limited = false;
    }

    QEMU_LOCK_GUARD(&monitor_lock);

    if (!limited) {
        monitor_qapi_event_emit(event, qdict);
        return;
    }
    MonitorQAPIEventState probe = { .event = event, .data = data };
    rec = g_hash_table_lookup(monitor_qapi_event_state, &probe);
    if (rec) {
        if (!rec->qdict) {
            rec->qdict = qobject_ref(qdict);   /* later ones are dropped */
        }
        return;
    }
    int64_t now = qemu_clock_get_ns(monitor_get_event_clock());

    monitor_qapi_event_emit(event, qdict);
    rec = g_new(MonitorQAPIEventState, 1);
    rec->event = event;
    rec->data = qobject_ref(data);
    rec->qdict = NULL;
    rec->timer = timer_new_ns(monitor_get_event_clock(), monitor_qapi_event_handler, rec);
    g_hash_table_add(monitor_qapi_event_state, rec);
    timer_mod_ns(rec->timer, now + conf->rate);
}
""", 5)

HALF_WINDOW = SeededBug("monitor_qapi_event_handler", """
static void monitor_qapi_event_handler(void *opaque)
{
    MonitorQAPIEventState *rec = opaque;
    MonitorQAPIEventConf *conf = &monitor_qapi_event_conf[rec->event];

    QEMU_LOCK_GUARD(&monitor_lock);

    if (rec->qdict) {
        int64_t now = qemu_clock_get_ns(monitor_get_event_clock());

        monitor_qapi_event_emit(rec->event, rec->qdict);
        qobject_unref(rec->qdict);
        rec->qdict = NULL;
        /* Half an interval: the next event goes out too soon. */
        timer_mod_ns(rec->timer, now + conf->rate / 2);
    } else {
        g_hash_table_remove(monitor_qapi_event_state, rec);
        qobject_unref(rec->data);
        timer_free(rec->timer);
        g_free(rec);
    }
}
""", 5)

# Every event goes through the table, the unthrottled ones with a zero interval: a
# second one queued before the clock moves is held back.
UNTHROTTLED_IN_TABLE = SeededBug("monitor_qapi_event_queue_no_reenter", """
static void monitor_qapi_event_queue_no_reenter(QAPIEvent event, QDict *qdict)
{
    MonitorQAPIEventConf *conf = &monitor_qapi_event_conf[event];
    QDict *data = qobject_to(QDict, qdict_get(qdict, "data"));
    MonitorQAPIEventState probe = { .event = event, .data = data };
    MonitorQAPIEventState *rec;

    QEMU_LOCK_GUARD(&monitor_lock);

    rec = g_hash_table_lookup(monitor_qapi_event_state, &probe);
    if (rec) {
        qobject_unref(rec->qdict);
        rec->qdict = qobject_ref(qdict);
    } else {
        int64_t now = qemu_clock_get_ns(monitor_get_event_clock());

        monitor_qapi_event_emit(event, qdict);
        rec = g_new(MonitorQAPIEventState, 1);
        rec->event = event;
        rec->data = qobject_ref(data);
        rec->qdict = NULL;
        rec->timer = timer_new_ns(monitor_get_event_clock(),
                                  monitor_qapi_event_handler, rec);
        g_hash_table_add(monitor_qapi_event_state, rec);
        timer_mod_ns(rec->timer, now + conf->rate);
    }
}
""", 6)

FREED_IN_TABLE = SeededBug("monitor_qapi_event_handler", """
static void monitor_qapi_event_handler(void *opaque)
{
    MonitorQAPIEventState *rec = opaque;
    MonitorQAPIEventConf *conf = &monitor_qapi_event_conf[rec->event];

    QEMU_LOCK_GUARD(&monitor_lock);

    if (rec->qdict) {
        int64_t now = qemu_clock_get_ns(monitor_get_event_clock());

        monitor_qapi_event_emit(rec->event, rec->qdict);
        qobject_unref(rec->qdict);
        rec->qdict = NULL;
        timer_mod_ns(rec->timer, now + conf->rate);
    } else {
        /* The record goes, but the table is never told. */
        qobject_unref(rec->data);
        timer_free(rec->timer);
        g_free(rec);
    }
}
""", 3)

BUGS: Dict[str, SeededBug] = {
    "no-rearm": NO_REARM, "first-wins": FIRST_WINS, "half-window": HALF_WINDOW,
    "unthrottled-in-table": UNTHROTTLED_IN_TABLE, "freed-in-table": FREED_IN_TABLE,
}


def seeded(directory: Path, name: str, case: str = "stop-bypass") -> Target:
    """The case study with bug @name planted, written as a monitor.c of its own."""
    bug = BUGS[name]
    source = resolve(case).monitor_c.read_text()
    found = re.search(r"^static [^\n]*\b" + bug.function + r"\([^;{]*\)\s*\{.*?^\}\n", source,
                      re.S | re.M)
    assert found is not None, bug.function
    path = directory / f"{name}.c"
    path.write_text(source[:found.start()] + bug.text.strip() + "\n" + source[found.end():])
    return Target(name, path, SCHEMA_DIR)
