"""Where a line of an analysed tree comes from: the patch and hunk that added it, or the base.

The engines report places as file:line of the tree they read, a private copy in a
temporary directory. A reviewer needs the patch line instead: "patch 2/3,
monitor/monitor.c hunk @@ -497,6 +498,10 @@, added line `...`". A `Lineage` knows the
analysed tree and the patches applied to make it, each hunk placed where it actually
applied (found by its text near the line its header names: `patch` may apply a hunk at
an offset). A line is traced back patch by patch until a patch added it, or to the base.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from qthrottle.review.patches import FilePatch, Hunk

KINDS = {"+": "added line", "-": "removed line", " ": "context line"}


@dataclass(frozen=True)
class AppliedPatch:
    """One patch's hunks per file, at the lines where they applied."""

    label: str  # "patch 2/3"
    hunks: Dict[str, Tuple[Hunk, ...]]


def placed(label: str, sections: Sequence[FilePatch], tree: Path) -> AppliedPatch:
    """@sections as applied to @tree (the tree after the patch): hunks at their real lines."""
    hunks: Dict[str, Tuple[Hunk, ...]] = {}
    for section in sections:
        path = tree / section.path
        after = path.read_text(errors="replace").splitlines() if path.is_file() else []
        hunks[section.path] = tuple(_relocated(section.hunks(), after))
    return AppliedPatch(label, hunks)


def _relocated(hunks: Sequence[Hunk], after: Sequence[str]) -> List[Hunk]:
    """Each hunk moved to where its new side stands in @after, the nearest match to its
    header's line (after the previous hunk); left where it says if its text is not found."""
    result: List[Hunk] = []
    floor = 0
    for hunk in hunks:
        side = hunk.new_side
        wanted = hunk.new_start - 1
        found = [p for p in range(floor, len(after) - len(side) + 1)
                 if after[p:p + len(side)] == side] if side else []
        at = min(found, key=lambda p: abs(p - wanted)) if found else wanted
        moved = hunk.moved(at - wanted)
        result.append(moved)
        floor = max(floor, at + len(side))
    return result


@dataclass(frozen=True)
class Location:
    """A line of the analysed tree and, if a patch of the series made it, that patch line."""

    file: str  # inside the tree: monitor/monitor.c
    line: int  # in the analysed tree (a removed line: the line it stood before)
    shown: str  # how reports name the file: "monitor/monitor.c", "v9.2.0:monitor/monitor.c"
    patch: Optional[str] = None  # the patch that added (or removed) the line
    hunk: Optional[Hunk] = None
    index: int = 0  # the line's index in hunk.lines
    note: str = ""  # for a line of the base: "not changed by the patches"

    @property
    def text(self) -> str:
        """The line's source text ('' for a line of the base)."""
        return self.hunk.lines[self.index].text if self.hunk is not None else ""

    @property
    def kind(self) -> str:
        """'added line', 'removed line', 'context line', or 'line' of the base."""
        return KINDS[self.hunk.lines[self.index].kind] if self.hunk is not None else "line"

    def describe(self) -> str:
        if self.hunk is None:
            return f"{self.shown}:{self.line}" + (f" ({self.note})" if self.note else "")
        return (f"{self.patch}, {self.file} hunk {self.hunk.range}, {self.kind} "
                f"`{self.text.strip()}`")


@dataclass
class Lineage:
    """An analysed tree, how reports name it, and the patches that made it (in order)."""

    root: Path  # the tree the engines read
    prefix: str = ""  # prepended to a file inside the tree in reports ("v9.2.0:", a path)
    patches: Tuple[AppliedPatch, ...] = field(default=())

    def shown(self, file: str) -> str:
        return f"{self.prefix}{file}"

    def rewrite(self, text: str) -> str:
        """@text with the analysed tree's paths as reports name them."""
        root = str(self.root.resolve())
        for variant in dict.fromkeys((root, str(self.root))):
            text = text.replace(variant + "/", self.prefix)
        return text

    def places(self, text: str) -> List[Location]:
        """Every file:line of the analysed tree that @text names, located."""
        found: List[Location] = []
        for root in dict.fromkeys((str(self.root.resolve()), str(self.root))):
            for match in re.finditer(re.escape(root + "/") + r"([\w./-]+?):(\d+)", text):
                location = self.locate(match.group(1), int(match.group(2)))
                if location not in found:
                    found.append(location)
        return found

    def relative(self, path: str) -> Optional[str]:
        """@path inside the analysed tree, or None."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return None

    def locate(self, file: str, line: int) -> Location:
        """The patch line that made line @line of @file, or the line of the base."""
        current = line
        for patch in reversed(self.patches):
            hunk, index, before = _trace(patch.hunks.get(file, ()), current)
            if hunk is not None:
                return Location(file, line, self.shown(file), patch.label, hunk, index)
            current = before
        return Location(file, line, self.shown(file),
                        note="not changed by the patches" if self.patches else "")

    def changed(self, file: str, first: int, last: int, labels: Sequence[str]
                ) -> List[Location]:
        """The lines between @first and @last of @file (in the analysed tree) that the
        patches named @labels added and still stand, and the lines they removed there."""
        found: List[Location] = []
        for position, patch in enumerate(self.patches):
            if patch.label not in labels:
                continue
            later = self.patches[position + 1:]
            for hunk in patch.hunks.get(file, ()):
                for index, entry in enumerate(hunk.lines):
                    if entry.kind == " ":
                        continue
                    line = entry.new  # followed to the analysed tree
                    for after in later:
                        line = _forward(after.hunks.get(file, ()), line)
                    if not first <= line <= last + (entry.kind == "-"):
                        continue
                    if entry.kind == "+" and self.locate(file, line).hunk is not hunk:
                        continue  # a later patch removed or replaced it
                    found.append(Location(file, line, self.shown(file), patch.label, hunk,
                                          index))
        return sorted(found, key=lambda location: location.line)


def _trace(hunks: Sequence[Hunk], line: int) -> Tuple[Optional[Hunk], int, int]:
    """(hunk, index) if one of @hunks added @line; else (None, 0, the line before them)."""
    growth = 0
    for hunk in hunks:
        kept = [(i, entry) for i, entry in enumerate(hunk.lines) if entry.kind != "-"]
        if kept and kept[0][1].new <= line <= kept[-1][1].new:
            index, entry = next((i, e) for i, e in kept if e.new == line)
            if entry.kind == "+":
                return hunk, index, 0
            assert entry.old is not None
            return None, 0, entry.old
        if kept and line < kept[0][1].new:
            break
        growth += hunk.growth
    return None, 0, line - growth


def _forward(hunks: Sequence[Hunk], line: int) -> int:
    """Line @line of the tree before @hunks, in the tree after them (a removed line: the
    line that took its place)."""
    growth = 0
    for hunk in hunks:
        kept = [entry for entry in hunk.lines if entry.kind != "+"]
        if kept and kept[0].old is not None and kept[-1].old is not None \
                and kept[0].old <= line <= kept[-1].old:
            return next(entry.new for entry in kept if entry.old == line)
        if kept and kept[0].old is not None and line < kept[0].old:
            break
        growth += hunk.growth
    return line + growth
