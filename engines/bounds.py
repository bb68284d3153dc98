"""The search bounds of every engine that generates timelines, in one place.

A profile bounds a search (runs x steps); every result prints the profile it ran
under. The clock moves by steps chosen around each rate, where throttles differ;
hypothesis runs with one configuration, shrinking only where a search asks for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.configuration import set_hypothesis_home_dir

from qthrottle.core import cache_dir


@dataclass(frozen=True)
class Profile:
    """Bounds of a search (printed with every result)."""

    name: str
    runs: int  # timelines (hypothesis examples, state-machine runs) per search
    steps: int  # operations per timeline, at most

    def describe(self) -> str:
        return f"profile {self.name}: up to {self.runs} runs x {self.steps} steps per search"


# smoke: for many targets at once (qthrottle mutate in the test suite), a quarter of quick.
PROFILES = {"smoke": Profile("smoke", runs=100, steps=12),
            "quick": Profile("quick", runs=400, steps=12),
            "ci": Profile("ci", runs=2000, steps=16)}
# qthrottle diff's dynamic half: both versions' C on the same generated timelines.
DYNAMIC_DIFF = Profile("diff", runs=200, steps=12)
# qthrottle e2e: timelines on a real QEMU under qtest (each costs ~0.1 s of QEMU time).
E2E = Profile("e2e", runs=100, steps=12)
DEFAULT_RATE_NS = 1_000_000_000  # the clock steps of a target with no throttled event
SEARCH_BATCH = 64  # timelines per round trip to the driver (Driver.run_batch), at most
FIRST_BATCH = 4  # a search's first batch of timelines; each next one twice as large
# One-step runs of the compare rule in a search's first batch: the key laws (1, 2) need no
# timeline, and a broken one is the quickest counterexample to minimise and to read.
KEY_LAW_RUNS = 32
# Probes of a stop event in a search's second batch (engines/sampling.Sampler.probes): a
# stop event alone, and one after an event of its key, this many times each.
STOP_PROBES = 2
IN_FLIGHT = 2  # batches a search keeps on the C: one runs while the engine judges another
# Runs a crash found by a search waits before it is minimised (each candidate of its
# minimisation that still fails costs a sanitizer report and a fresh process), so that
# quicker failures found meanwhile come first.
CRASH_WAIT = 4


def clock_steps(rates: Iterable[int]) -> List[int]:
    """Clock steps around each rate r: 1 ns, r/2, r-1, r, r+1 and 2r (a window's end,
    just before and after it, and two quiet intervals)."""
    positive = sorted({r for r in rates if r}) or [DEFAULT_RATE_NS]
    return sorted({1, *(r // 2 for r in positive), *(r - 1 for r in positive), *positive,
                   *(r + 1 for r in positive), *(2 * r for r in positive)})


def quiet_interval(rates: Iterable[int]) -> int:
    """How far the clock runs after a timeline to end it quiet: two intervals of the
    longest rate (a burst keeps a window open that long)."""
    return 2 * max(rates, default=0) or max(clock_steps(()))


def search_settings(runs: int, steps: int = 0, shrink: bool = True) -> settings:
    """hypothesis as every engine runs it: quiet, no deadline, no example database,
    @runs examples (state machines: @steps steps each); shrinking only if asked.

    What hypothesis still keeps on disk (a cache of the constants it finds in the
    code) goes to the tool's cache: by default it writes ./.hypothesis wherever
    qthrottle runs.
    """
    set_hypothesis_home_dir(cache_dir() / "hypothesis")
    return settings(max_examples=runs, stateful_step_count=max(1, steps), deadline=None,
                    database=None, verbosity=Verbosity.quiet,
                    phases=[Phase.generate, Phase.shrink] if shrink else [Phase.generate],
                    print_blob=False, report_multiple_bugs=False,
                    suppress_health_check=list(HealthCheck))
