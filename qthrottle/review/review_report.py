"""A review (or a diff) rendered for where it goes: a terminal (text), a GitLab merge request
comment (markdown), the mailing list (email), scripts (json).

Every renderer reads the same data (`ReviewRun`, `PatchReview`, `DiffRun`, `Finding`):
nothing is decided here. `as_review` presents a `qthrottle diff` run as a review of one
change, so that diff's markdown and email formats are these.

The email format follows the list's conventions: a reply per patch that has something
to say, "Subject: Re: ..." with In-Reply-To and References to the patch's Message-Id, an
attribution line, the offending hunk lines quoted with "> " (trimmed to the lines that
matter), and below them the finding, the witness events as QMP JSON, the shortest
timeline and the command that reproduces it. Several replies are separated by mbox
"From " lines, so the output is also an mbox a mail client opens.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import json
import textwrap
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN
from qthrottle.model.invariants import INVARIANTS
from qthrottle.proofs.report import bounds as proof_bounds
from qthrottle.review.counterexample import qmp_events, replay_verdict
from qthrottle.review.diff import DiffRun, html_section, report_json
from qthrottle.review.findings import (
    BISECT,
    CHANGE,
    FALSIFIED,
    FIXED,
    LINT,
    STILL_FALSIFIED,
    UNKNOWN_FINDING,
    Finding,
)
from qthrottle.review.patches import Hunk
from qthrottle.review.provenance import Location
from qthrottle.review.render_findings import finding_json, finding_lines, qmp
from qthrottle.review.review import ReviewRun
from qthrottle.review.series import Mail, Series
from qthrottle.review.timeline_view import Page

FORMATS = ("text", "markdown", "email", "json")
SCHEMA_VERSION = 1
# Findings a reviewer replies about (the others are in the text and markdown reports).
REPLY_KINDS = (FALSIFIED, UNKNOWN_FINDING, LINT, BISECT)
QUOTE_CONTEXT = 3  # lines quoted above the first offending line of a hunk
WIDTH = 72  # prose in emails


def _tool() -> Dict[str, str]:
    try:
        version = importlib.metadata.version("qthrottle")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "qthrottle", "version": version}


def _meaning(code: int) -> str:
    return {EXIT_HOLDS: "no invariant falsified, nothing unknown",
            EXIT_FALSIFIED: "an invariant is falsified",
            EXIT_UNKNOWN: "nothing falsified, but something is UNKNOWN"}[code]


def verdict(run: DiffRun) -> str:
    """'FALSIFIED: invariant 4' / 'UNKNOWN' / 'holds'."""
    if run.new.falsified:
        return "FALSIFIED: invariant " + ", ".join(map(str, run.new.falsified))
    return "UNKNOWN" if run.code == EXIT_UNKNOWN else "holds"


@dataclass
class _Entry:
    """One comparison to render: a patch's, or a diff's."""

    label: str  # "patch 2/3", "OLD -> NEW"
    title: str
    run: DiffRun
    mail: Optional[Mail]  # the message a reply answers
    patches: Tuple[str, ...]  # the patches whose lines are this change's ("patch 2/3")


def as_review(run: DiffRun, reproduce: str) -> ReviewRun:
    """A `qthrottle diff` run as a review of one change (markdown and email formats)."""
    series = run.series or Series(Path(run.new.target.name), ())
    return ReviewRun(series, run.old.target.name, "", [], run, reproduce)


def _entries(run: ReviewRun) -> List[_Entry]:
    entries = [_Entry(p.patch.label, p.patch.title, p.run, p.patch.mail, (p.patch.label,))
               for p in run.reviewed if p.run is not None]
    if run.whole is not None and not entries:  # a diff: the one comparison
        series = run.series
        single = series.patches[0] if len(series.patches) == 1 else None
        mail = single.mail if single is not None else series.cover or (
            series.patches[0].mail if series.patches else None)
        label = single.label if single is not None else \
            f"{run.whole.old.target.name} -> {run.whole.new.target.name}"
        entries.append(_Entry(label, series.name if series.patches else "", run.whole, mail,
                              tuple(p.label for p in series.patches)))
    return entries


# ------------------------------------------------------------------ text

def _invariant_changes(run: DiffRun) -> List[str]:
    return [f"{n} {run.old.status(n)} -> {run.new.status(n)}" for n in INVARIANTS
            if run.old.status(n) != run.new.status(n)]


def _run_lines(run: DiffRun, indent: str = "  ") -> List[str]:
    """A comparison in a few lines: changes, invariants, findings, the dynamic diff."""
    changes = [f for f in run.findings if f.kind == CHANGE]
    lines = [f"{indent}throttle changes ({len(changes)})"
             + (":" if changes else ": none (z3: every event's decision proved unchanged)"
                if not run.throttle.unknown else ": none found, see UNKNOWN below")]
    for finding in changes:
        lines += finding_lines(finding, indent + "  ", places=2)
    changed = _invariant_changes(run)
    lines.append(f"{indent}invariants: " + ("; ".join(changed) if changed else
                                            "no change"))
    for finding in run.findings:
        if finding.kind in (FALSIFIED, STILL_FALSIFIED, UNKNOWN_FINDING, LINT, FIXED):
            lines += finding_lines(finding, indent)
            lines += _evidence_lines(finding, indent + "  ")
    dynamic = run.dynamic
    if dynamic is not None:
        divergence = dynamic.divergence
        lines.append(f"{indent}dynamic diff ({dynamic.bounds.describe()}): " + (
            f"first divergence in timeline {divergence.timeline}, at step "
            f"{divergence.step + 1} of {len(divergence.operations)}: "
            + "; ".join(op.describe() for op in divergence.operations)
            if divergence is not None else
            dynamic.unknown or f"no divergence in {dynamic.tried} timelines"))
    return lines


def _evidence_lines(finding: Finding, indent: str) -> List[str]:
    if finding.kind != FALSIFIED:
        return []
    lines = [f"{indent}witness: {name} = {qmp(record)}"
             for name, record in finding.witness.items()]
    replayed = finding.replayed
    if replayed is not None:
        lines.append(f"{indent}timeline, replayed on the C ({_replay_verdict(finding)}):")
        lines += replayed.table(indent + "  ")
    return lines


def _replay_verdict(finding: Finding) -> str:
    return "not replayed" if finding.replayed is None else replay_verdict(finding.replayed)


def _header_lines(run: ReviewRun) -> List[str]:
    series = run.series
    lines = [f"qthrottle review: {series.name}"]
    count = f"{len(series.patches)} patch(es)" + (
        f", v{series.version}" if series.version > 1 else "") + (", RFC" if series.rfc else "")
    lines.append(f"  series: {series.path}: {count}"
                 + (f"; cover letter: {series.cover.subject.text}" if series.cover else ""))
    for skipped in series.skipped:
        if skipped.why != "cover letter":
            lines.append(f"  skipped: {skipped.source} ({skipped.why}): {skipped.subject}")
    lines.append(f"  base: {run.base}; patches applied in series order with {run.method} "
                 "to a private copy of monitor/ and qapi/")
    first = run.final
    lines.append(f"  bounds: {proof_bounds(first.timeout_ms)}; dynamic diff "
                 + (first.dynamic.bounds.describe() if first.dynamic else "not run")
                 + ("; stateful engine on every tree" if first.stateful else ""))
    return lines


def review_text(run: ReviewRun) -> List[str]:
    """The review for a terminal: a block per patch, the series, bisectability, exit."""
    lines = _header_lines(run)
    for review in run.patches:
        patch = review.patch
        lines += ["", f"{patch.label}: {patch.title}"]
        if patch.other_files:
            lines.append(f"  not throttle code (skipped): {', '.join(patch.other_files)}")
        if review.run is None:
            lines.append("  no verdict: the patch changes nothing under monitor/ or qapi/")
            continue
        lines.append(f"  verdict: exit {review.run.code}, {verdict(review.run)} "
                     f"({review.seconds:.1f} s); changes {', '.join(patch.throttle_files)}")
        lines += _run_lines(review.run)
    if run.whole is not None:
        lines += ["", f"the series as a whole (the base -> {run.reviewed[-1].patch.label}): "
                      f"exit {run.whole.code}, {verdict(run.whole)}"]
        lines += _run_lines(run.whole)
    lines += ["", "bisectability:" + ("" if run.bisect else " no patch leaves an invariant "
                                      "falsified that the tree before it kept")]
    for finding in run.bisect:
        lines += finding_lines(finding)
    last = run.reviewed[-1].patch.label
    lines += ["", f"exit {run.code}: the last tree's verdict ({last}): {_meaning(run.code)}"
              + (" (intermediate FALSIFIED: see bisectability)" if run.bisect else ""),
              f"reproduce: {run.reproduce}",
              f"({run.seconds:.1f} s)"]
    return lines


# ------------------------------------------------------------------ markdown

def _md_code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if fence == "`" else f"{fence} {text} {fence}"


def _md_location(location: Location) -> str:
    if location.hunk is None:
        return f"{_md_code(f'{location.shown}:{location.line}')}" + (
            f" ({location.note})" if location.note else "")
    return (f"{location.patch}, {_md_code(location.file)} hunk {_md_code(location.hunk.range)}"
            f", {location.kind} {_md_code(location.text.strip())}")


def _md_finding(finding: Finding) -> List[str]:
    lines = [f"- **{finding.kind}** {finding.summary}"]
    lines += [f"  - {detail}" for detail in finding.details]
    lines += [f"  - at {_md_location(location)}" for location in finding.where[:3]]
    if finding.kind == FALSIFIED:
        quoted = _quote(finding.where, prefix="")
        if quoted:
            lines += ["", "  ```diff", *(f"  {line}" for line in quoted), "  ```"]
        lines += ["", "  <details><summary>witness events and timeline</summary>", "",
                  "  ```json", *(f"  {qmp(r)}" for r in finding.witness.values()), "  ```"]
        if finding.replayed is not None:
            lines += ["", f"  Replayed on the C ({_replay_verdict(finding)}):", "", "  ```",
                      *(f"  {line}" for line in finding.replayed.table("")), "  ```"]
        lines += ["", "  </details>", ""]
    return lines


def review_markdown(run: ReviewRun) -> List[str]:
    """A GitLab merge request comment."""
    entries = _entries(run)
    title = run.series.name if run.series.patches else entries[0].label
    lines = [f"### qthrottle: {title}", "",
             f"Exit {run.code}: {_meaning(run.code)}. Base: {_md_code(run.base)}.", "",
             "| change | verdict | throttle changes | invariants changed |",
             "|---|---|---|---|"]
    for entry in entries:
        changes = sum(1 for f in entry.run.findings if f.kind == CHANGE)
        title = entry.label + (f": {entry.title}" if entry.title else "")
        lines.append(f"| {title.replace('|', '/')} | {verdict(entry.run)} | {changes} | "
                     f"{'; '.join(_invariant_changes(entry.run)) or '-'} |")
    if run.whole is not None and run.reviewed:
        lines.append(f"| the series as a whole | {verdict(run.whole)} | "
                     f"{sum(1 for f in run.whole.findings if f.kind == CHANGE)} | "
                     f"{'; '.join(_invariant_changes(run.whole)) or '-'} |")
    if run.bisect:
        lines += ["", "**Bisectability**", ""]
        lines += [line for f in run.bisect for line in _md_finding(f)]
    for entry in entries:
        shown = [f for f in entry.run.findings if f.kind != FIXED]
        if not shown:
            continue
        lines += ["", f"#### {entry.label}" + (f": {entry.title}" if entry.title else ""), ""]
        for finding in shown:
            lines += _md_finding(finding)
    lines += ["", f"Reproduce: {_md_code(run.reproduce)}"]
    return lines


# ------------------------------------------------------------------ email

def _quote(where: Sequence[Location], prefix: str = "> ") -> List[str]:
    """The hunks @where points into, trimmed to the offending lines and a little context."""
    by_hunk: Dict[Tuple[str, str], Tuple[Hunk, List[int]]] = {}
    for location in where:
        if location.hunk is not None:
            key = (location.file, location.hunk.header)
            by_hunk.setdefault(key, (location.hunk, []))[1].append(location.index)
    lines: List[str] = []
    quoted_file = None
    for (file, _), (hunk, indexes) in by_hunk.items():
        first, last = max(0, min(indexes) - QUOTE_CONTEXT), max(indexes)
        # the rest of the changed block the last offending line belongs to
        while last + 1 < len(hunk.lines) and hunk.lines[last + 1].kind != " " \
                and last - min(indexes) < 12:
            last += 1
        if file != quoted_file:
            lines += [f"{prefix}diff --git a/{file} b/{file}", f"{prefix}[...]"]
            quoted_file = file
        lines.append(f"{prefix}{hunk.header}")
        if first > 0:
            lines.append(f"{prefix}[...]")
        lines += [f"{prefix}{line.kind}{line.text}".rstrip() if prefix else
                  f"{line.kind}{line.text}" for line in hunk.lines[first:last + 1]]
        if last + 1 < len(hunk.lines):
            lines.append(f"{prefix}[...]")
    return lines


def _paragraph(text: str) -> List[str]:
    return textwrap.wrap(text, WIDTH, break_long_words=False, break_on_hyphens=False) or [""]


def _email_finding(finding: Finding, entry: _Entry, reproduce: str) -> List[str]:
    lines = _paragraph(_sentence(finding))
    facts = [d[len("z3: "):] for d in finding.details if d.startswith("z3: ")]
    for detail in finding.details:
        lines += [] if detail.startswith("z3: ") else _paragraph(detail)
    if facts:
        lines += _paragraph(f"In z3's counterexample: {'; '.join(facts)}.")
    elsewhere = [loc for loc in finding.where if loc.patch not in entry.patches and not (
        loc.hunk is None and f"{loc.shown}:{loc.line}" in finding.summary)]
    for location in elsewhere[:3]:
        lines += _paragraph(f"See {location.describe()}.")
    if finding.kind != FALSIFIED:
        return lines
    if finding.witness:
        lines += ["", "Witness event(s), as QMP JSON:", ""]
        lines += [f"    {text}" for text in dict.fromkeys(map(qmp, finding.witness.values()))]
    replayed = finding.replayed
    if replayed is not None:
        lines += [""] + _paragraph(f"The shortest timeline, replayed on the sanitized C of "
                                   f"the tree with {entry.label} applied "
                                   f"({_replay_verdict(finding)}):") + [""]
        lines += replayed.table("    ")
        events = qmp_events(replayed.records)
        if events.emitted:
            lines += ["", "What the QMP monitors received:", ""]
            lines += [f"    {json.dumps(message)}" for message in events.emitted]
    lines += ["", "To reproduce:", "", f"    {reproduce}"]
    if entry.label.startswith("patch ") and finding.invariant is not None:
        lines += ["", f"or, in a checkout with the series applied up to {entry.label}:", "",
                  f"    qthrottle explore . --invariant {finding.invariant}"]
    return lines


def _sentence(finding: Finding) -> str:
    what = {FALSIFIED: "This breaks an invariant of the event throttle:",
            STILL_FALSIFIED: "Still broken after this patch:",
            UNKNOWN_FINDING: "qthrottle cannot decide this (UNKNOWN, never a pass):",
            LINT: "Throttle policy:",
            BISECT: "Bisectability:"}.get(finding.kind, "")
    return f"{what} {finding.summary}".strip()


def _reply(entry: _Entry, findings: Sequence[Finding], reproduce: str, seed: int,
           preface: Sequence[str] = ()) -> List[str]:
    """One reply: headers, attribution, then per quoted hunk the findings about it."""
    mail = entry.mail
    if mail is not None and mail.subject.text:
        subject = mail.subject.text
        headers = [f"Subject: {subject if mail.subject.reply else 'Re: ' + subject}"]
    else:  # two trees or revisions: nothing to reply to
        headers = [f"Subject: qthrottle: {entry.label}"]
    body: List[str] = []
    if mail is not None and mail.message_id:
        references = " ".join(filter(None, [mail.references.strip(), mail.message_id]))
        headers += [f"In-Reply-To: {mail.message_id}", f"References: {references}"]
    # The quoted patch and the attribution may hold UTF-8, as git send-email sends it.
    headers += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=UTF-8",
                "Content-Transfer-Encoding: 8bit"]
    if mail is not None and mail.author:
        body += [f"On {mail.date}, {mail.author} wrote:" if mail.date else
                 f"{mail.author} wrote:"]
    body += list(preface)
    blocks: List[Tuple[List[str], List[Finding]]] = []  # a quote and the findings on it
    for finding in findings:
        quote = _quote([loc for loc in finding.where if loc.patch in entry.patches])
        group = next((found for shown, found in blocks if shown == quote), None)
        if group is None:
            blocks.append((quote, [finding]))
        else:
            group.append(finding)
    blocks.sort(key=lambda block: not block[0])  # quoted hunks first, as in the patch
    for quote, group in blocks:
        if quote:
            body += quote + [""]
        elif blocks[0][0]:
            body += ["Besides the hunks above:", ""]
        for finding in group:
            body += _email_finding(finding, entry, reproduce) + [""]
    body += ["-- ", f"qthrottle {_tool()['version']} (z3 proofs, decision diff and "
                    f"sanitized-C replay; seed {seed})"]
    return headers + [""] + body


def _summary_reply(run: ReviewRun) -> Optional[List[str]]:
    """A reply to the cover letter: the verdict per patch, and the bisectability findings."""
    cover = run.series.cover
    if cover is None or len(run.reviewed) < 2:
        return None
    entry = _Entry("the series", run.series.name, run.final, cover, ())
    table = ["", "Per patch (qthrottle, each patch against the tree before it):", ""]
    for review in run.patches:
        state = "no throttle code" if review.run is None else verdict(review.run)
        table.append(f"  {review.patch.label}: {state}  ({review.patch.title})")
    table.append("")
    table.append(f"The series as a whole: {verdict(run.final)} (exit {run.code}).")
    table.append("")
    for finding in run.bisect:
        table += _paragraph(_sentence(finding)) + [""]
    if run.bisect:
        table += _paragraph("Please keep every patch of the series free of the breakage, so "
                            "that git bisect never lands on a broken throttle.") + [""]
    return _reply(entry, [], run.reproduce, run.final.seed, table)


def _mbox_line(line: str) -> str:
    """mboxrd: a body line starting with ">"s and "From " gets one ">" more."""
    stripped = line.lstrip(">")
    return ">" + line if stripped.startswith("From ") else line


def review_email(run: ReviewRun) -> List[str]:
    """Replies ready for the list, one per patch with something to say, as an mbox."""
    messages = []
    summary = _summary_reply(run)
    if summary is not None:
        messages.append(summary)
    seed = run.final.seed
    for entry in _entries(run):
        findings = [f for f in entry.run.findings if f.kind in REPLY_KINDS
                    and not (f.kind == LINT and f.summary.startswith("lint (resolved"))]
        findings += [f for f in run.bisect if f.summary.startswith(f"{entry.label} ")]
        if findings:
            messages.append(_reply(entry, findings, run.reproduce, seed))
    if not messages:
        messages.append(_reply(_entries(run)[-1], [], run.reproduce, seed, [
            "", f"qthrottle finds nothing to report: {_meaning(run.code)} (exit {run.code}).",
            ""]))
    stamp = datetime.datetime(2001, 9, 17).strftime("%a %b %d %H:%M:%S %Y")
    lines: List[str] = []
    for message in messages:
        header_end = message.index("")
        lines += [f"From qthrottle {stamp}", *message[:header_end],
                  *(_mbox_line(line) for line in message[header_end:]), ""]
    return lines


# ------------------------------------------------------------------ json

def review_json(run: ReviewRun) -> Dict[str, Any]:
    """The review for scripts: docs/report.schema.json, $defs/reviewReport."""
    series = run.series
    return {
        "schema_version": SCHEMA_VERSION, "tool": _tool(), "command": "review",
        "series": {
            "path": str(series.path), "name": series.name, "version": series.version,
            "rfc": series.rfc,
            "cover": None if series.cover is None else {
                "subject": series.cover.subject.text, "message_id": series.cover.message_id},
            "skipped": [{"source": s.source, "subject": s.subject, "why": s.why}
                        for s in series.skipped]},
        "base": {"name": run.base, "method": run.method},
        "patches": [{
            "number": p.patch.number, "total": p.patch.total,
            "subject": p.patch.mail.subject.text, "title": p.patch.title,
            "author": p.patch.mail.author, "message_id": p.patch.mail.message_id or None,
            "source": p.patch.mail.source, "throttle_files": p.patch.throttle_files,
            "other_files": p.patch.other_files,
            "verdict": None if p.run is None else verdict(p.run),
            "seconds": round(p.seconds, 3),
            "diff": None if p.run is None else report_json(p.run),
        } for p in run.patches],
        "series_diff": None if run.whole is None else report_json(run.whole),
        "bisectability": [finding_json(f) for f in run.bisect],
        "reproduce": run.reproduce,
        "seed": run.final.seed,
        "seconds": round(run.seconds, 3),
        "exit_code": run.code,
    }


def diff_json(run: DiffRun) -> Dict[str, Any]:
    """`qthrottle diff --format json`: docs/report.schema.json, $defs/diffReport."""
    return {"schema_version": SCHEMA_VERSION, "tool": _tool(), "command": "diff",
            **report_json(run)}


# ---------------------------------------------------------------------- HTML

def review_html(run: ReviewRun) -> Page:
    """qthrottle review --html: a row and a section per patch, then the series as a whole;
    each section the patch's diff (its throttle changes, invariants, first divergence)."""
    rows: List[Tuple[str, ...]] = [("patch", "verdict")]
    sections = []
    for index, review in enumerate(run.patches, 1):
        patch = review.patch
        if review.run is None:
            rows.append((f"{patch.label}: {patch.title}", "no throttle code"))
            continue
        rows.append((f"{patch.label}: {patch.title}", verdict(review.run)))
        section = html_section(review.run, anchor=f"patch-{index}")
        sections.append(replace(section, title=f"{patch.label}: {patch.title}",
                                headline=f"exit {review.run.code}: {verdict(review.run)}"))
    if run.whole is not None:
        rows.append(("the series as a whole", verdict(run.whole)))
        section = html_section(run.whole, anchor="series")
        sections.append(replace(section, title="the series as a whole",
                                headline=f"exit {run.whole.code}: {verdict(run.whole)}"))
    facts = tuple(_header_lines(run)[1:]) + tuple(
        f"bisectability: {f.summary}" for f in run.bisect) + (f"reproduce: {run.reproduce}",)
    return Page(f"qthrottle review {run.series.name}", facts, tuple(rows), tuple(sections),
                f"exit {run.code}: the last tree's verdict: {_meaning(run.code)}")
