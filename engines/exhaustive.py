"""The shortest counterexample over a small alphabet, by trying every timeline in order
of length: what the minimiser's results are measured against (tests, benchmark).

The alphabet: BLOCK_IO_ERROR report and stop for one device (report also with its
optional members), for the two devices whose qom-paths have one g_str_hash, another
throttled event, clock steps of half and one interval and to the next deadline, and
two compare steps. Every event has the plainest values (model/members.py's filler)
but those named.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from qthrottle.engines.judge import CompareKeys, Step, judge_run
from qthrottle.engines.stateful import Subject, run_batched
from qthrottle.model import invariants as inv
from qthrottle.model.members import filler, string_values
from qthrottle.model.qapi_schema import Event
from qthrottle.model.timeline import Advance, AdvanceToNext, Queue, format_ns

CHUNK = 512  # timelines per batch of the enumeration


@dataclass(frozen=True)
class Symbol:
    """One letter of the alphabet."""

    label: str
    step: Step


def plain_event(event: Event, optional: bool = False, **values: Any) -> Dict[str, Any]:
    """@event's data: @values (by member name, '_' for '-'), the rest filler; optional
    members present only if @optional."""
    named = {k.replace("_", "-"): v for k, v in values.items()}
    return {m.name: named.get(m.name, filler(m)) for m in event.members
            if optional or not m.optional or m.name in named}


def alphabet(subject: Subject) -> List[Symbol]:
    block = subject.catalog.events[inv.STOP_EVENT]
    paths = string_values("qom-path")
    device, twin_a, twin_b = paths[0], paths[-2], paths[-1]

    def error(path: str, action: str, optional: bool = True) -> Tuple[str, Dict[str, Any]]:
        return block.name, plain_event(block, optional, qom_path=path, action=action)

    report, stop = error(device, "report"), error(device, "stop")
    twin_report, twin_stop = error(twin_a, "report"), error(twin_b, "stop")
    other = next(e for e in subject.events.focus
                 if subject.policy.throttled(e.name) and e.name != block.name)
    rate = max(subject.policy.rates.values())
    return [
        Symbol("report", Queue(*report)),
        Symbol("stop", Queue(*stop)),
        Symbol("report-bare", Queue(*error(device, "report", optional=False))),
        Symbol("report-twinA", Queue(*twin_report)),
        Symbol("stop-twinB", Queue(*twin_stop)),
        Symbol(other.name, Queue(other.name, plain_event(other, optional=True) or None)),
        Symbol(f"+{format_ns(rate // 2)}", Advance(rate // 2)),
        Symbol(f"+{format_ns(rate)}", Advance(rate)),
        Symbol("next", AdvanceToNext()),
        Symbol("cmp(stop,report)", CompareKeys(stop, report)),
        Symbol("cmp(twinA,twinB)", CompareKeys(twin_report, twin_stop)),
    ]


def shortest(subject: Subject, symbols: List[Symbol], invariant: int, max_length: int
             ) -> Tuple[Optional[List[Symbol]], int, float]:
    """The first timeline, in order of length, that breaks @invariant (every other
    invariant set aside, as a search sets aside those it has found); the timelines
    tried; the seconds it took."""
    ignored = frozenset(inv.INVARIANTS) - {invariant}
    start, tried = time.perf_counter(), 0
    for length in range(1, max_length + 1):
        product = itertools.product(symbols, repeat=length)
        while True:
            chunk = list(itertools.islice(product, CHUNK))
            if not chunk:
                break
            runs = run_batched(subject, [[s.step for s in t] for t in chunk])
            for timeline, (steps, run) in zip(chunk, runs):
                tried += 1
                violation, _ = judge_run(subject.policy, subject.catalog, ignored, steps, run)
                if violation is not None:
                    return list(timeline), tried, time.perf_counter() - start
    return None, tried, time.perf_counter() - start
