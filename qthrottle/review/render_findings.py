"""Findings and the lines they point at, as text lines and as JSON data (docs/report.schema.json,
$defs/finding). The review's own renderers (text, markdown, email, JSON) build on these."""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

from qthrottle.model.ghash import Record
from qthrottle.review.counterexample import qmp_events
from qthrottle.review.findings import Finding
from qthrottle.review.provenance import Location


def qmp(record: Record) -> str:
    """A witness event as the QMP JSON a management tool reads (no timestamp: not emitted)."""
    event, data = record
    return json.dumps({"event": event} if data is None else {"event": event, "data": data})


def finding_lines(finding: Finding, indent: str = "  ", places: int = 3) -> List[str]:
    """The finding in a few lines: summary, details, where (at most @places lines)."""
    lines = [f"{indent}{finding.summary}"]
    lines += [f"{indent}  {detail}" for detail in finding.details]
    lines += [f"{indent}  at {location.describe()}" for location in finding.where[:places]]
    if len(finding.where) > places:
        lines.append(f"{indent}  and {len(finding.where) - places} more line(s)")
    return lines


def location_json(location: Location) -> Dict[str, Any]:
    return {"file": location.file, "line": location.line,
            "place": f"{location.shown}:{location.line}", "patch": location.patch,
            "hunk": None if location.hunk is None else location.hunk.range,
            "kind": location.kind, "text": location.text if location.hunk else None,
            "description": location.describe()}


def finding_json(finding: Finding) -> Dict[str, Any]:
    replayed = finding.replayed
    replay: Optional[Dict[str, Any]] = None
    if replayed is not None:
        events = qmp_events(replayed.records)
        replay = {"confirmed": replayed.confirmed, "undecided": replayed.undecided,
                  "timeline": replayed.table(indent=""),
                  "queued": events.queued + events.compared, "emitted": events.emitted}
    return {
        "kind": finding.kind, "summary": finding.summary, "invariant": finding.invariant,
        "engine": finding.engine or None, "construct": finding.construct or None,
        "details": finding.details,
        "where": [location_json(location) for location in finding.where],
        "witness": {name: json.loads(qmp(record)) for name, record in finding.witness.items()},
        "timeline": None if finding.example is None
        else [step.describe() for step in finding.example.timeline],
        "replay": replay,
    }
