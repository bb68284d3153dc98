"""What qthrottle mutate concluded, as data (one Outcome per mutant, the score) and as the
text and JSON reports; the exit code comes from here too, so every output agrees with it."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from qthrottle.core import EXIT_ERROR, EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN
from qthrottle.engines.bounds import Profile
from qthrottle.harness.mutation import Mutant

DEFAULT_MIN_SCORE = 95.0
KILLED, EQUIVALENT, SURVIVED, STILLBORN, UNKNOWN_VERDICT, UNCONFIRMED = (
    "killed", "equivalent", "survived", "stillborn", "unknown", "unconfirmed")
# Neither killed nor survived: an engine could not decide (UNKNOWN), or z3 falsified an
# invariant that the mutant's C, replaying z3's counterexample, does not break.
UNDECIDED = (UNKNOWN_VERDICT, UNCONFIRMED)


@dataclass
class Outcome:
    """What the engines made of one mutant."""

    mutant: Mutant
    verdict: str  # killed, equivalent, survived, stillborn, unknown, unconfirmed
    engine: str = ""  # killed: "z3" (its counterexample replayed in C) or "stateful"
    invariant: Optional[int] = None  # killed, unconfirmed: the (first) invariant broken
    reason: str = ""  # equivalent, survived, stillborn, unknown, unconfirmed: why;
    # killed by the stateful engine: what z3 said first (unconfirmed or UNKNOWN), if any
    detail: str = ""  # killed: the counterexample's message
    operations: List[str] = field(default_factory=list)  # stateful kill: its timeline
    seconds: float = 0.0

    def describe(self) -> str:
        if self.verdict == KILLED:
            return f"killed by {self.engine} invariant {self.invariant}"
        if self.verdict == UNCONFIRMED:
            return f"unconfirmed z3 invariant {self.invariant}"
        return self.verdict


@dataclass
class MutationReport:
    target: str
    monitor_c: Path
    profile: Profile
    seed: int
    timeout_ms: int
    jobs: int
    outcomes: List[Outcome]
    seconds: float

    def count(self, verdict: str) -> int:
        return sum(1 for o in self.outcomes if o.verdict == verdict)

    @property
    def scored(self) -> int:
        """Mutants the score counts: all but the equivalent and the stillborn."""
        return len(self.outcomes) - self.count(EQUIVALENT) - self.count(STILLBORN)

    @property
    def score(self) -> Optional[float]:
        return 100.0 * self.count(KILLED) / self.scored if self.scored else None

    @property
    def score_if_unknown_killed(self) -> Optional[float]:
        if not self.scored:
            return None
        return 100.0 * (self.count(KILLED) + sum(self.count(v) for v in UNDECIDED)) / self.scored


def format_report(report: MutationReport, min_score: float) -> List[str]:
    name = report.monitor_c.name
    lines = [f"{'id':<5} {'verdict':<30} {'operator':<34} {'location':<18} edit"]
    for o in report.outcomes:
        m = o.mutant
        lines.append(f"{m.id:<5} {o.describe():<30} {m.operator:<34} "
                     f"{name + ':' + str(m.line):<18} {m.edit}")
    for verdict, title in ((EQUIVALENT, "equivalent (not counted)"),
                           (STILLBORN, "stillborn (not counted)"),
                           (UNKNOWN_VERDICT, "unknown (counted as not killed)"),
                           (UNCONFIRMED, "z3 kills the C does not confirm (counted as not "
                                         "killed)"),
                           (SURVIVED, "survivors")):
        chosen = [o for o in report.outcomes if o.verdict == verdict]
        if chosen:
            lines += ["", f"{title}: {len(chosen)}"]
            for o in chosen:
                lines.append(f"  {o.mutant.id} {o.mutant.operator} at {name}:{o.mutant.line}: "
                             f"{o.mutant.edit}")
                lines.append(f"       {o.reason}")
    lines.append("")
    lines.append(score_line(report, min_score))
    return lines


def score_line(report: MutationReport, min_score: float) -> str:
    score = report.score
    if score is None:
        return "score: no mutant to score (every mutant is equivalent or stillborn)"
    unknown = report.count(UNKNOWN_VERDICT)
    return (f"score: {report.count(KILLED)}/{report.scored} killed = {score:.1f}% of "
            f"non-equivalent mutants (minimum {min_score:g}%; {len(report.outcomes)} mutants, "
            f"{report.count(EQUIVALENT)} equivalent, {report.count(STILLBORN)} stillborn, "
            f"{report.count(SURVIVED)} survived, {unknown} unknown, "
            f"{report.count(UNCONFIRMED)} unconfirmed)")


def exit_code(report: MutationReport, min_score: float) -> int:
    score = report.score
    if score is None:
        return EXIT_ERROR
    if score >= min_score:
        return EXIT_HOLDS
    reachable = report.score_if_unknown_killed
    return EXIT_UNKNOWN if reachable is not None and reachable >= min_score else EXIT_FALSIFIED


def to_json(report: MutationReport, min_score: float) -> Dict[str, Any]:
    def outcome(o: Outcome) -> Dict[str, Any]:
        record = asdict(o)
        mutant = record.pop("mutant")
        mutant.pop("span")
        mutant["calls"] = sorted(mutant["calls"])
        mutant["edit"] = o.mutant.edit
        mutant["file"] = str(report.monitor_c)
        return {**mutant, **record, "summary": o.describe()}

    return {"target": report.target, "monitor_c": str(report.monitor_c),
            "profile": asdict(report.profile), "seed": report.seed,
            "timeout_ms": report.timeout_ms, "jobs": report.jobs,
            "seconds": round(report.seconds, 1),
            "score": report.score, "min_score": min_score,
            "counts": {v: report.count(v) for v in (KILLED, EQUIVALENT, SURVIVED, STILLBORN,
                                                    UNKNOWN_VERDICT, UNCONFIRMED)},
            "exit": exit_code(report, min_score),
            "mutants": [outcome(o) for o in report.outcomes]}
