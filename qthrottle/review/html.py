"""One self-contained HTML file for a page of counterexample timelines.

Inline SVG and CSS, and a few lines of JavaScript that show a mark's QMP JSON beside
it on hover or focus; nothing is fetched (no fonts, scripts or images from
elsewhere), and everything reads without JavaScript: each mark carries its text
and JSON in an SVG <title>, links to its step in the table under the picture, and
the table lists every step with its QMP JSON.

Virtual time runs left to right. Every instant at which something happens gets a
labelled place on the axis, steps at the same instant stand side by side in it,
and the space between two instants grows with the square root of the time between
them (scaled to the largest rate), so that a 1 ns step and a 1 s window both show
and a 40-step timeline still fits a scrolling strip. Shapes tell what a mark is
without its colour: ring queued, disc the first side, square the second, dashed
outline held back, struck through dropped, diamond a record compared.
"""
from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from qthrottle.core import QthrottleError
from qthrottle.model.timeline import format_ns
from qthrottle.review.timeline_view import (
    COMPARED,
    DROPPED,
    EMITTED,
    HELD,
    QUEUED,
    VIOLATION,
    Highlight,
    Mark,
    Page,
    Section,
    Timeline,
)

SLOT = 52  # px: the width of one step's marks at one instant
NARROW = 12  # px: an instant with no mark (a deadline, the end of an advance)
GAP_MIN = 16  # px between two instants, plus GAP_SCALE * sqrt(time between / unit)
GAP_SCALE = 150
PAD = 24  # px left and right of the time axis
LABEL_WIDTH = 290
LABEL_ROW = 18  # px per row of labels (highlights, operations, ruler)
QUEUED_ROW, SIDE_ROW, LANE_GAP, TABLE_ROW = 52, 38, 12, 20
MARK = 12  # px: a mark's radius
CHAR = 6.6  # px per character of 11 px text, to keep labels apart
COLOURS = ("#1f5fbf", "#b34700")  # the two sides: blue, dark orange (distinct in grey too)


def esc(text: str) -> str:
    return html.escape(text, quote=True)


class Axis:
    """x of every (time, step) point: instants in order, steps side by side within one."""

    def __init__(self, timeline: Timeline) -> None:
        steps = timeline.steps
        self.last = len(steps)
        points: Dict[Tuple[int, int], bool] = {}  # (t, step) -> holds a mark
        for step in steps:
            points.setdefault((step.before, step.number), False)
            points.setdefault((step.after, step.number), False)
        for mark in timeline.marks:
            points[(mark.t, mark.step)] = True
        for window in timeline.windows:
            points.setdefault((window.start, window.step), False)
            points.setdefault((window.end, self.step_at(timeline, window.end)), False)
        self.centre: Dict[Tuple[int, int], float] = {}
        self.width: Dict[Tuple[int, int], float] = {}
        self.instants: Dict[int, Tuple[float, float]] = {}  # t -> (left, right)
        cursor, previous = float(PAD), None
        for t, number in sorted(points):
            if previous is not None:
                cursor += 2 if t == previous else GAP_MIN + GAP_SCALE * math.sqrt(
                    (t - previous) / timeline.unit)
            width = SLOT if points[(t, number)] else NARROW
            self.centre[(t, number)] = cursor + width / 2
            self.width[(t, number)] = width
            left = self.instants.get(t, (cursor, cursor))[0]
            cursor += width
            self.instants[t] = (left, cursor)
            previous = t
        self.right = cursor + PAD
        last = steps[-1] if steps else None
        self.end = self.right_of(last.after, last.number) if last else PAD

    @staticmethod
    def step_at(timeline: Timeline, t: int) -> int:
        """The step during which the clock reaches @t (after the last step: one more)."""
        return next((s.number for s in timeline.steps if s.after >= t), len(timeline.steps) + 1)

    def x(self, t: int, step: int) -> float:
        return self.centre[(t, step)]

    def left_of(self, t: int, step: int) -> float:
        return self.centre[(t, step)] - self.width[(t, step)] / 2

    def right_of(self, t: int, step: int) -> float:
        return self.centre[(t, step)] + self.width[(t, step)] / 2


def _rows(items: Iterable[Tuple[float, float]], limit: int = 3) -> List[int]:
    """A row for each (left, right) interval, so that intervals in a row keep apart."""
    ends: List[float] = []
    rows = []
    for left, right in items:
        row = next((r for r, end in enumerate(ends) if left > end + 6), None)
        if row is None:
            row = len(ends) if len(ends) < limit else min(range(len(ends)), key=ends.__getitem__)
            if row == len(ends):
                ends.append(right)
        ends[row] = right
        rows.append(row)
    return rows


def _text_width(text: str) -> float:
    return len(text) * CHAR


def _wrap(text: str, width: int = 32) -> List[str]:
    lines: List[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


# ------------------------------------------------------------------ glyphs

def glyph(kind: str, side: Optional[int], x: float, y: float, label: str,
          size: float = MARK) -> str:
    """The shape of a mark: it says what the mark is without its colour."""
    colour = "#333" if side is None else COLOURS[side]
    parts = []
    if kind == COMPARED:
        s = size * 1.25
        parts.append(f'<path class="shape" d="M{x:.1f} {y - s:.1f} L{x + s:.1f} {y:.1f} '
                     f'L{x:.1f} {y + s:.1f} L{x - s:.1f} {y:.1f} Z" fill="#fff" '
                     f'stroke="{colour}" stroke-width="1.5"/>')
    elif side == 1:
        fill = colour if kind == EMITTED else "#fff"
        dash = ' stroke-dasharray="3 2"' if kind == HELD else ""
        parts.append(f'<rect class="shape" x="{x - size:.1f}" y="{y - size:.1f}" '
                     f'width="{2 * size:.1f}" height="{2 * size:.1f}" rx="3" fill="{fill}" '
                     f'stroke="{colour}" stroke-width="1.8"{dash}/>')
    else:
        fill = colour if kind == EMITTED and side == 0 else "#fff"
        dash = ' stroke-dasharray="3 2"' if kind == HELD else ""
        parts.append(f'<circle class="shape" cx="{x:.1f}" cy="{y:.1f}" r="{size:.1f}" '
                     f'fill="{fill}" stroke="{colour}" stroke-width="1.8"{dash}/>')
    text_colour = "#fff" if kind == EMITTED else colour
    font = min(11, size) if len(label) < 3 else size * 0.7
    parts.append(f'<text x="{x:.1f}" y="{y + font * 0.35:.1f}" text-anchor="middle" '
                 f'font-size="{font}" font-weight="bold" fill="{text_colour}">{esc(label)}</text>')
    if kind == DROPPED:
        s = size + 3
        parts.append(f'<path class="strike" d="M{x - s:.1f} {y - s:.1f} L{x + s:.1f} {y + s:.1f} '
                     f'M{x - s:.1f} {y + s:.1f} L{x + s:.1f} {y - s:.1f}" stroke="#b3001b" '
                     'stroke-width="2.2"/>')
    return "".join(parts)


def legend(timeline: Timeline) -> str:
    a, b = timeline.sides

    def item(svg: str, text: str) -> str:
        return (f'<li><svg width="30" height="28" aria-hidden="true">{svg}</svg>'
                f'{esc(text)}</li>')

    items = [
        item(glyph(QUEUED, None, 15, 14, "2", 10), "queued (qapi_event_emit), numbered by step"),
        item(glyph(EMITTED, 0, 15, 14, "2", 10), f"emitted by {a}: {timeline.side_notes[0]}"),
        item(glyph(EMITTED, 1, 15, 14, "2", 10), f"emitted by {b}: {timeline.side_notes[1]}"),
        item(glyph(HELD, 0, 15, 14, "2", 10), "not emitted by the end of the timeline (held back)"),
        item(glyph(DROPPED, 1, 15, 14, "2", 9), "struck through: dropped (replaced, or a crash)"),
        item('<rect x="2" y="6" width="26" height="14" fill="url(#hatch)" stroke="#5b6f8f"/>',
             timeline.window_note),
        item('<rect x="9" y="2" width="12" height="22" class="hl-violation"/>',
             "the step where an invariant breaks (named above it)"),
        item('<rect x="9" y="2" width="12" height="22" class="hl-divergence"/>',
             f"the step where {a} and {b} part ways"),
    ]
    if any(m.kind == COMPARED for m in timeline.marks):
        items.insert(1, item(glyph(COMPARED, None, 15, 14, "a", 9),
                             "a record passed to the hash and equality callbacks"))
    return f'<ul class="legend">{"".join(items)}</ul>'


# ----------------------------------------------------------------- the picture

def picture(timeline: Timeline, anchor: str) -> str:
    """Two SVGs side by side: the lane labels, and the time strip (it scrolls)."""
    axis = Axis(timeline)
    steps = {s.number: s for s in timeline.steps}

    def link(step: int) -> str:
        return f"#{anchor}-step-{step}"

    def span(step: int) -> Tuple[float, float]:
        s = steps[step]
        return axis.left_of(s.before, step), axis.right_of(s.after, step)

    # Rows of labels over the strip: highlights, operations, the ruler.
    highlight_spans = [span(h.step) for h in timeline.highlights]
    highlight_boxes = []
    for light, (left, right) in zip(timeline.highlights, highlight_spans):
        centre, width = (left + right) / 2, _text_width(light.title) + 16
        start = max(2.0, centre - width / 2)
        highlight_boxes.append((start, start + width))
    highlight_rows = _rows(highlight_boxes)
    ops = []
    for s in timeline.steps:
        text = f"#{s.number}" if s.kind != "advance" else f"#{s.number} {s.operation}"
        left, right = span(s.number)
        centre = (left + right) / 2
        width = _text_width(text)
        start = max(2.0, centre - width / 2)
        ops.append((s, text, start, start + width))
    op_rows = _rows([(o[2], o[3]) for o in ops], limit=2)
    ruler = []
    for t, (left, right) in sorted(axis.instants.items()):
        text = format_ns(t)
        centre, width = (left + right) / 2, _text_width(text)
        ruler.append((t, text, centre, centre - width / 2, centre + width / 2))
    ruler_rows = _rows([(r[3], r[4]) for r in ruler])

    y_highlights = 4
    y_ops = y_highlights + LABEL_ROW * (max(highlight_rows, default=-1) + 1) + 6
    y_ruler = y_ops + LABEL_ROW * (max(op_rows, default=0) + 1) + 8
    y_lanes = y_ruler + LABEL_ROW * (max(ruler_rows, default=0) + 1) + 10
    lane_height = QUEUED_ROW + 2 * SIDE_ROW + LANE_GAP
    y_tables = y_lanes + lane_height * len(timeline.lanes) + 4
    height = y_tables + 2 * TABLE_ROW + 20
    width = max([axis.right, axis.end + 130] + [box[1] + 4 for box in highlight_boxes]
                + [o[3] + 4 for o in ops] + [r[4] + 4 for r in ruler])

    def row_y(lane: int, side: Optional[int]) -> Tuple[float, float]:
        """Top and height of a lane's row: the queued row (None) or a side's row."""
        top = float(y_lanes + lane * lane_height)
        if side is None:
            return top, float(QUEUED_ROW)
        return top + QUEUED_ROW + side * SIDE_ROW, float(SIDE_ROW)

    def centre_y(lane: int, side: Optional[int]) -> float:
        top, h = row_y(lane, side)
        return top + (h / 2 - 4 if side is None else h / 2)

    out: List[str] = []
    # Lane backgrounds and row lines.
    for lane in range(len(timeline.lanes)):
        lane_top = y_lanes + lane * lane_height
        out.append(f'<rect class="lane-bg" x="0" y="{lane_top}" width="{width:.0f}" '
                   f'height="{lane_height - LANE_GAP}"/>')
        for side in (0, 1):
            y, _ = row_y(lane, side)
            out.append(f'<line class="row-line" x1="0" x2="{width:.0f}" y1="{y}" y2="{y}"/>')
    # A grid line at each instant.
    for (_, _, centre, _, _), row in zip(ruler, ruler_rows):
        out.append(f'<line class="grid" x1="{centre:.1f}" x2="{centre:.1f}" '
                   f'y1="{y_ruler + LABEL_ROW * row + 15}" y2="{y_tables - 4}"/>')
    # Windows.
    for window in timeline.windows:
        left = axis.x(window.start, window.step)
        right = axis.x(window.end, Axis.step_at(timeline, window.end))
        top, h = row_y(window.lane, window.side)
        if window.side is None:
            h = float(QUEUED_ROW + 2 * SIDE_ROW)
        inside = min(right, axis.end)
        out.append(f'<g class="window" data-lane="{window.lane}" data-start="{window.start}" '
                   f'data-end="{window.end}"><title>{esc(window.text)}</title>'
                   f'<rect x="{left:.1f}" y="{top + 2}" width="{max(inside - left, 1):.1f}" '
                   f'height="{h - 4}" fill="url(#hatch)" class="window-bar"/>')
        if right > axis.end:
            out.append(f'<rect x="{axis.end:.1f}" y="{top + 2}" width="{right - axis.end:.1f}" '
                       f'height="{h - 4}" fill="url(#hatch)" class="window-bar after-end"/>')
        out.append(f'<line class="deadline" x1="{right:.1f}" x2="{right:.1f}" y1="{top + 2}" '
                   f'y2="{top + h - 2}"/></g>')
    # Sides no longer shown (the model stopped predicting the C).
    for side, shown in enumerate(timeline.silent_from):
        if shown is None or shown >= len(timeline.steps):
            continue
        left = span(shown + 1)[0] - 4
        note = (f"{timeline.sides[side]} not compared from step {shown + 1} on "
                f"(see the note at step {shown})")
        for lane in range(len(timeline.lanes)):
            top, h = row_y(lane, side)
            out.append(f'<g class="silent"><title>{esc(note)}</title><rect x="{left:.1f}" '
                       f'y="{top + 1}" width="{axis.end - left:.1f}" height="{h - 2}" '
                       f'fill="url(#grey)"/><text x="{left + 6:.1f}" y="{top + h / 2 + 4:.1f}">'
                       f'{esc(f"not compared from step {shown + 1}")}</text></g>')
    # Highlight bands, over the windows and under the marks (one band per step: a
    # violation's when a divergence shares its step).
    banded = {h.step: h.kind for h in timeline.highlights if h.kind == VIOLATION}
    for light, (left, right), row, box in zip(timeline.highlights, highlight_spans,
                                             highlight_rows, highlight_boxes):
        kind = "hl-violation" if light.kind == VIOLATION else "hl-divergence"
        y = y_highlights + LABEL_ROW * row
        band = ""
        if banded.get(light.step, light.kind) == light.kind:
            band = (f'<rect class="{kind}" x="{left - 4:.1f}" y="{y + LABEL_ROW:.1f}" '
                    f'width="{right - left + 8:.1f}" height="{y_tables - y - LABEL_ROW:.1f}"/>')
        out.append(
            f'<g class="highlight {kind}-group" data-kind="{light.kind}" '
            f'data-step="{light.step}"><title>{esc(light.text)}</title>{band}'
            f'<rect class="{kind}-label" x="{box[0]:.1f}" y="{y:.1f}" '
            f'width="{box[1] - box[0]:.1f}" height="{LABEL_ROW - 2}" rx="8"/>'
            f'<text class="highlight-title" x="{(box[0] + box[1]) / 2:.1f}" y="{y + 12.5:.1f}" '
            f'text-anchor="middle">{esc(light.title)}</text></g>')
    # The time of each instant.
    for (t, text, centre, _, _), row in zip(ruler, ruler_rows):
        out.append(f'<text class="tick" data-t="{t}" x="{centre:.1f}" '
                   f'y="{y_ruler + LABEL_ROW * row + 12}" text-anchor="middle">{esc(text)}</text>')
    # Operations: a tick per queued event, an arrow per clock step.
    for (s, text, left, _), row in zip(ops, op_rows):
        y = y_ops + LABEL_ROW * row + 12
        a, b = span(s.number)
        out.append(f'<a class="op" href="{link(s.number)}" data-step="{s.number}">'
                   f'<title>{esc(f"step {s.number}: {s.operation}")}</title>')
        if s.kind == "advance":
            out.append(f'<line class="advance" x1="{a:.1f}" x2="{max(b, a + 4):.1f}" '
                       f'y1="{y + 4}" y2="{y + 4}" marker-end="url(#arrow)"/>')
        out.append(f'<text x="{left:.1f}" y="{y}">{esc(text)}</text></a>')
    # The end of the timeline.
    out.append(f'<g class="end"><line x1="{axis.end:.1f}" x2="{axis.end:.1f}" y1="{y_lanes}" '
               f'y2="{y_tables + 2 * TABLE_ROW}"/><text x="{axis.end + 4:.1f}" '
               f'y="{y_tables + 2 * TABLE_ROW + 12}">end of the timeline</text></g>')
    # Joins from each queued event to what each side did with it, then the marks.
    queued: Dict[Tuple[int, str], Mark] = {
        (m.lane, m.label): m for m in timeline.marks if m.kind == QUEUED}
    for mark in timeline.marks:
        source = queued.get((mark.lane, mark.label)) if mark.side is not None else None
        if source is None or mark.side is None:
            continue
        x1, y1 = axis.x(source.t, source.step), centre_y(mark.lane, None) + MARK
        x2, y2 = axis.x(mark.t, mark.step), centre_y(mark.lane, mark.side) - MARK
        style = (f'stroke="{COLOURS[mark.side]}"' if mark.kind == EMITTED
                 else 'stroke="#777" stroke-dasharray="3 3"')
        out.append(f'<line class="join" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" '
                   f'y2="{y2:.1f}" {style} stroke-width="1.5"/>')
    for mark in timeline.marks:
        x, y = axis.x(mark.t, mark.step), centre_y(mark.lane, mark.side)
        side_attr = ("" if mark.side is None
                     else f' data-side="{esc(timeline.sides[mark.side])}"')
        tag = (f'<text class="tag" x="{x:.1f}" y="{y + MARK + 11:.1f}" text-anchor="middle">'
               f'{esc(mark.tag)}</text>' if mark.side is None and mark.tag else "")
        out.append(
            f'<a class="mark {mark.kind}" href="{link(mark.step)}" data-kind="{mark.kind}" '
            f'data-step="{mark.step}" data-lane="{mark.lane}" data-label="{esc(mark.label)}"'
            f'{side_attr} data-qmp="{esc(mark.qmp)}" aria-label="{esc(mark.text)}">'
            f'<title>{esc(mark.text)}&#10;{esc(mark.qmp)}</title>'
            f'{glyph(mark.kind, mark.side, x, y, mark.label)}{tag}</a>')
    # Table sizes after each step.
    for side in (0, 1):
        y = y_tables + side * TABLE_ROW + 14
        for s in timeline.steps:
            size = s.tables[side]
            crashed = s.cells[side].startswith("CRASH")
            if size is None and not crashed:
                continue
            text = "crash" if crashed else str(size)
            out.append(f'<text class="table-size{" crash" if crashed else ""}" '
                       f'x="{axis.right_of(s.after, s.number) - 2:.1f}" y="{y}" '
                       f'text-anchor="end">{esc(text)}</text>')

    labels = _labels(timeline, row_y, y_ops, y_ruler, y_tables, height)
    strip = (f'<svg class="strip" width="{width:.0f}" height="{height:.0f}" '
             f'viewBox="0 0 {width:.0f} {height:.0f}" role="group" '
             f'aria-label="timeline: virtual time from left to right">{DEFS}{"".join(out)}</svg>')
    return (f'<div class="picture">{labels}<div class="scroll" tabindex="0" '
            f'aria-label="timeline, scrolls sideways">{strip}</div></div>')


def _labels(timeline: Timeline, row_y: Callable[[int, Optional[int]], Tuple[float, float]],
            y_ops: float, y_ruler: float, y_tables: float, height: float) -> str:
    """The left column: a lane's event and key, the names of its rows."""
    out = [f'<text class="axis-name" x="8" y="{y_ops + 12}">steps</text>',
           f'<text class="axis-name" x="8" y="{y_ruler + 12}">virtual time</text>']
    for index, lane in enumerate(timeline.lanes):
        top, _ = row_y(index, None)
        lines = [(lane.title, "lane-title")]
        lines += [(line, "lane-key") for line in _wrap(lane.key)]
        lines += [(lane.detail, "lane-detail")]
        text = "".join(f'<tspan x="8" dy="{0 if n == 0 else 14}" class="{cls}">{esc(line)}'
                       f'</tspan>' for n, (line, cls) in enumerate(lines))
        out.append(f'<g class="lane" data-lane="{index}" data-title="{esc(lane.title)}" '
                   f'data-key="{esc(lane.key)}"><title>{esc(" ".join(x for x, _ in lines))}'
                   f'</title><text x="8" y="{top + 15}">{text}</text>')
        for side, name in ((None, "queued"), (0, timeline.sides[0]), (1, timeline.sides[1])):
            row_top, h = row_y(index, side)
            out.append(f'<text class="row-name" x="{LABEL_WIDTH - 8}" '
                       f'y="{row_top + h / 2 + (0 if side is None else 4):.1f}" '
                       f'text-anchor="end">{esc(name)}</text>')
        out.append("</g>")
    for side, name in enumerate(timeline.sides):
        out.append(f'<text class="row-name" x="{LABEL_WIDTH - 8}" '
                   f'y="{y_tables + side * TABLE_ROW + 14}" text-anchor="end">'
                   f'table size ({esc(name)})</text>')
    return (f'<svg class="labels" width="{LABEL_WIDTH}" height="{height:.0f}" '
            f'aria-hidden="true">{"".join(out)}</svg>')


DEFS = (
    '<defs>'
    '<pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="8" height="8" fill="#dfe7f3"/>'
    '<line x1="0" y1="0" x2="0" y2="8" stroke="#9fb0cc" stroke-width="3"/></pattern>'
    '<pattern id="grey" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(-45)"><rect width="6" height="6" fill="#f1f1f1"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#d4d4d4" stroke-width="2"/></pattern>'
    '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
    'markerHeight="7" orient="auto"><path d="M0 0 L10 5 L0 10 Z" fill="#444"/></marker>'
    '</defs>')


# -------------------------------------------------------------------- the page

def step_table(timeline: Timeline, anchor: str) -> str:
    focus: Dict[int, List[Highlight]] = {}
    for h in timeline.highlights:
        focus.setdefault(h.step, []).append(h)
    a, b = timeline.sides
    rows = []
    for s in timeline.steps:
        when = format_ns(s.before) + ("" if s.after == s.before else f" → {format_ns(s.after)}")
        marks = "".join(f'<details><summary>QMP JSON</summary><pre>{esc(m.qmp)}</pre></details>'
                        for m in timeline.marks
                        if m.step == s.number and m.kind in (QUEUED, COMPARED))
        notes = [f'<strong>{esc(h.title)}</strong>: {esc(h.text)}'
                 for h in focus.get(s.number, [])]
        if s.note and not any(h.kind == VIOLATION for h in focus.get(s.number, [])):
            notes.append(esc(s.note))
        cls = "focus" if focus.get(s.number) else ""
        rows.append(
            f'<tr id="{anchor}-step-{s.number}" class="{cls}" data-step="{s.number}">'
            f'<th scope="row">#{s.number}</th><td>{esc(when)}</td>'
            f'<td><code>{esc(s.operation)}</code>{marks}</td>'
            f'<td>{esc(s.cells[0])}</td><td>{esc(s.cells[1])}</td>'
            f'<td>{"<br>".join(notes)}</td></tr>')
    return (f'<table class="steps"><caption>Every step: the virtual time, the operation, '
            f'what each side emitted (events named by the step that queued them) and its '
            f'table size</caption><thead><tr><th scope="col">step</th><th scope="col">time'
            f'</th><th scope="col">operation</th><th scope="col">{esc(a)}</th>'
            f'<th scope="col">{esc(b)}</th><th scope="col">note</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


STATUS_CLASSES = (("FALSIFIED", "bad", "✗"), ("UNKNOWN", "unknown", "?"),
                  ("PROVED", "good", "✓"), ("PASS", "good", "✓"))


def _status_cell(text: str) -> str:
    last = text.split("->")[-1].strip()
    for word, cls, sign in STATUS_CLASSES:
        if last.startswith(word):
            return f'<td class="{cls}"><span aria-hidden="true">{sign} </span>{esc(text)}</td>'
    return f"<td>{esc(text)}</td>"


def section(part: Section) -> str:
    out = [f'<section id="{esc(part.anchor)}"><h2>{esc(part.title)}</h2>',
           f'<p class="headline">{esc(part.headline)}</p>']
    if part.facts:
        out.append("<ul class=\"facts\">" + "".join(f"<li>{esc(f)}</li>" for f in part.facts)
                   + "</ul>")
    if part.timeline is not None:
        if part.timeline.story:
            out.append('<ul class="story">' + "".join(f"<li>{esc(line)}</li>"
                                                     for line in part.timeline.story) + "</ul>")
        out.append(legend(part.timeline))
        out.append(picture(part.timeline, part.anchor))
        out.append(step_table(part.timeline, part.anchor))
    for block in part.blocks:
        out.append(f'<h3>{esc(block.title)}</h3><pre class="block">{esc(block.text)}</pre>')
    out.append("</section>")
    return "".join(out)


def render(page: Page) -> str:
    """The whole page, as one HTML document."""
    table = ""
    if page.table:
        head, *rows = page.table
        table = ('<table class="status"><thead><tr>'
                 + "".join(f'<th scope="col">{esc(c)}</th>' for c in head) + "</tr></thead><tbody>"
                 + "".join("<tr>" + f"<th scope=\"row\">{esc(r[0])}</th>"
                           + "".join(_status_cell(c) for c in r[1:]) + "</tr>" for r in rows)
                 + "</tbody></table>")
    toc = ""
    if len(page.sections) > 1:
        toc = ('<nav><ul>' + "".join(f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a></li>'
                                     for s in page.sections) + "</ul></nav>")
    facts = "".join(f"<li>{esc(f)}</li>" for f in page.facts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{esc(page.title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>{esc(page.title)}</h1><p class="verdict">{esc(page.verdict)}</p>'
        f'<ul class="facts">{facts}</ul></header><main>{table}{toc}'
        + "".join(section(s) for s in page.sections)
        + '</main><div id="qmp-tip" role="tooltip" hidden><p></p><pre></pre></div>'
        f"<script>{SCRIPT}</script></body></html>\n")


def write(path: Path, page: Page) -> None:
    """Write the page whole or not at all (a temporary file renamed into place); a file
    that cannot be written is a tool error naming it (--html FILE)."""
    text = render(page)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # the umask's mode
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise QthrottleError(f"cannot write --html {path}: {error}") from None
        raise


CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
  color: #1b1b1b; margin: 0 auto; padding: 16px 24px 48px; max-width: 1600px; }
h1 { font-size: 22px; margin: 4px 0; } h2 { font-size: 18px; margin: 32px 0 4px;
  border-top: 2px solid #ccc; padding-top: 12px; } h3 { font-size: 15px; margin: 18px 0 4px; }
code, pre { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px; }
pre.block { background: #f6f6f6; border: 1px solid #ddd; padding: 8px; overflow-x: auto;
  white-space: pre; max-height: 32em; }
.verdict { font-weight: bold; } .headline { font-size: 15px; font-weight: 600; margin: 6px 0; }
ul.facts { margin: 4px 0; padding-left: 20px; color: #333; }
ul.story { margin: 6px 0; padding: 6px 10px 6px 28px; background: #fff8dc;
  border-left: 4px solid #8a5a00; }
table { border-collapse: collapse; margin: 12px 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
table.status td.bad { background: #fde2e2; font-weight: 600; }
table.status td.unknown { background: #fff1c9; }
table.status td.good { background: #e3f4e3; }
table.steps { font-size: 13px; } table.steps caption { text-align: left; color: #444; }
table.steps tr.focus { background: #fff3c4; outline: 2px solid #8a5a00; }
table.steps tr:target { background: #dbe9ff; }
ul.legend { list-style: none; padding: 0; margin: 8px 0; display: flex; flex-wrap: wrap;
  gap: 2px 18px; font-size: 13px; }
ul.legend li { display: flex; align-items: center; gap: 4px; max-width: 36em; }
.picture { display: flex; border: 1px solid #bbb; background: #fff; margin: 8px 0; }
.picture svg.labels { flex: none; border-right: 1px solid #bbb; background: #fafafa; }
.picture .scroll { overflow-x: auto; flex: 1 1 auto; }
.picture .scroll:focus { outline: 2px solid #1f5fbf; }
svg text { font-size: 11px; fill: #222; }
svg .lane-title { font-weight: bold; font-size: 13px; } svg .lane-key { fill: #333; }
svg .lane-detail { fill: #555; font-style: italic; }
svg .row-name { fill: #555; } svg .axis-name { fill: #555; font-style: italic; }
svg .lane-bg { fill: #fcfcfc; stroke: #e2e2e2; } svg .row-line { stroke: #ececec; }
svg .grid { stroke: #e6e6e6; stroke-dasharray: 2 3; }
svg .tick { fill: #333; } svg .tag { font-size: 9px; fill: #444; }
svg .window-bar { stroke: #5b6f8f; stroke-width: 1; opacity: 0.9; }
svg .window-bar.after-end { opacity: 0.4; stroke-dasharray: 4 3; }
svg .deadline { stroke: #33476b; stroke-width: 2.5; }
svg .advance { stroke: #444; stroke-width: 1.5; } svg .op text { fill: #333; }
svg .end line { stroke: #555; stroke-dasharray: 6 3; stroke-width: 1.5; }
svg .end text { fill: #555; font-style: italic; }
svg .silent text { fill: #666; font-style: italic; }
svg .hl-violation { fill: #ffd54a; fill-opacity: 0.35; stroke: #8a5a00; stroke-width: 2; }
svg .hl-violation-label { fill: #8a5a00; } svg .hl-violation-group text { fill: #fff; }
svg .hl-divergence { fill: #d9c6f0; fill-opacity: 0.25; stroke: #5d2f91; stroke-width: 2;
  stroke-dasharray: 6 3; }
svg .hl-divergence-label { fill: #5d2f91; } svg .hl-divergence-group text { fill: #fff; }
svg .highlight-title { font-weight: bold; }
svg .table-size { fill: #333; font-size: 10px; } svg .table-size.crash { fill: #b3001b;
  font-weight: bold; }
svg a.mark:focus, svg a.mark:hover { outline: none; }
svg a.mark:focus .shape, svg a.mark:hover .shape { stroke-width: 3.5; }
#qmp-tip { position: absolute; z-index: 10; background: #fff; border: 1px solid #555;
  box-shadow: 0 2px 8px rgba(0,0,0,.25); padding: 6px 10px; max-width: 34em; }
#qmp-tip p { margin: 0 0 4px; font-size: 13px; } #qmp-tip pre { margin: 0; }
"""

# Shows the hovered or focused mark's story and QMP JSON beside it. Without JavaScript
# the same text is the mark's SVG <title>, and the table under the picture.
SCRIPT = """
(function () {
  var tip = document.getElementById('qmp-tip');
  function mark(event) {
    var node = event.target;
    return node && node.closest ? node.closest('a.mark') : null;
  }
  function show(event) {
    var m = mark(event);
    if (!m) { return; }
    tip.querySelector('p').textContent = m.getAttribute('aria-label');
    tip.querySelector('pre').textContent = m.getAttribute('data-qmp');
    var box = m.getBoundingClientRect();
    tip.hidden = false;
    tip.style.left = (window.scrollX + box.right + 8) + 'px';
    tip.style.top = (window.scrollY + box.top) + 'px';
  }
  function hide(event) { if (mark(event)) { tip.hidden = true; } }
  document.addEventListener('mouseover', show);
  document.addEventListener('focusin', show);
  document.addEventListener('mouseout', hide);
  document.addEventListener('focusout', hide);
})();
"""
