"""Seeded bugs: one edit each to the merged fix (stop-bypass.c), a bug of one class.

The engines must catch each of them (the tests ask every seed of a range, the
benchmark prints the detection rate); BREAKS lists the invariants each may be
caught by (a bug of one class can show first as another invariant's violation:
a timer never re-armed leaves its record in the table and holds back the key's
next event). Like the case studies, this is our own code, not QEMU's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet

from qthrottle.cases import case_path

BASE = "stop-bypass"


@dataclass(frozen=True)
class SeededBug:
    """@old in the base case, replaced by @new."""

    what: str
    old: str
    new: str
    breaks: FrozenSet[int]

    def source(self) -> str:
        text = case_path(BASE).read_text(encoding="utf-8")
        assert text.count(self.old) == 1, self.old
        return text.replace(self.old, self.new)


SEEDED: Dict[str, SeededBug] = {
    # Three events of one key in one window: the second is held back, and the third
    # must replace it (newest wins); this one keeps the oldest.
    "oldest-wins": SeededBug(
        "a held-back event is not replaced by a newer one of its key",
        "            qobject_unref(rec->qdict);\n            rec->qdict = qobject_ref(qdict);\n",
        "            if (!rec->qdict) {\n                rec->qdict = qobject_ref(qdict);\n"
        "            }\n",
        frozenset({5})),
    "no-rearm": SeededBug(
        "the timer is not re-armed after it sends the held-back event",
        "        rec->qdict = NULL;\n        timer_mod_ns(rec->timer, now + conf->rate);\n",
        "        rec->qdict = NULL;\n",
        frozenset({3, 5})),
    "half-interval": SeededBug(
        "the timer is re-armed for half the interval",
        "        timer_mod_ns(rec->timer, now + conf->rate);\n    } else {",
        "        timer_mod_ns(rec->timer, now + conf->rate / 2);\n    } else {",
        frozenset({5})),
    "everything-throttled": SeededBug(
        "unthrottled events go through the table too (a zero interval)",
        "    throttled = conf->rate != 0;\n",
        "    throttled = true;\n",
        frozenset({5, 6})),
    "hash-reads-device": SeededBug(
        "the hash of a BLOCK_IO_ERROR also reads 'device', which equality ignores",
        "    if (evstate->event == QAPI_EVENT_BLOCK_IO_ERROR) {\n"
        "        hash += g_str_hash(qdict_get_str(evstate->data, \"qom-path\"));\n",
        "    if (evstate->event == QAPI_EVENT_BLOCK_IO_ERROR) {\n"
        "        hash += g_str_hash(qdict_get_str(evstate->data, \"qom-path\"));\n"
        "        hash += g_str_hash(qdict_get_str(evstate->data, \"device\"));\n",
        frozenset({2, 5})),
    "record-leak": SeededBug(
        "the timer handler never frees the record it served",
        "        timer_free(rec->timer);\n        g_free(rec);\n",
        "        timer_free(rec->timer);\n",
        frozenset({8})),
    "freed-in-table": SeededBug(
        "the timer handler frees the record it served without removing it from the table",
        "        g_hash_table_remove(monitor_qapi_event_state, rec);\n"
        "        qobject_unref(rec->data);\n",
        "        qobject_unref(rec->data);\n",
        frozenset({3, 8})),
    "reference-leak": SeededBug(
        "the timer handler never releases the record's data",
        "        g_hash_table_remove(monitor_qapi_event_state, rec);\n"
        "        qobject_unref(rec->data);\n",
        "        g_hash_table_remove(monitor_qapi_event_state, rec);\n",
        frozenset({8})),
}
