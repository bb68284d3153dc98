"""Patches as qthrottle applies them: a unified diff split per file and per hunk, the files
under monitor/ and qapi/ applied (`git apply` where the base is a git checkout, `patch -p1`
otherwise) to a private copy of a tree, the others listed as not throttle code. A patch
that creates a symbolic link is refused: qthrottle reads the files of the tree, and a link
could make it read (and quote) any file."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from qthrottle.core import QthrottleError, read_input

PATCHED_DIRS = ("monitor/", "qapi/")  # what qthrottle reads of a tree
GIT_APPLY, PATCH = "git apply", "patch -p1"  # how a patch is applied


class PatchError(QthrottleError):
    """The patch cannot be read or does not apply: an input error (exit 2)."""


_HUNK = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class HunkLine:
    """One line of a hunk, numbered as the hunk header places it."""

    kind: str  # "+" added, "-" removed, " " context
    text: str  # without the marker and the line end
    old: Optional[int]  # its line before the patch (context and removed lines)
    new: int  # its line after the patch; a removed line: the line it stood before


@dataclass(frozen=True)
class Hunk:
    path: str
    header: str  # the @@ line as in the patch, with its function context
    lines: Tuple[HunkLine, ...]

    @property
    def range(self) -> str:
        """'@@ -497,6 +498,10 @@'."""
        match = _HUNK.match(self.header)
        return match.group(0) if match else self.header

    @property
    def new_start(self) -> int:
        """Its first line after the patch (0 in a file the patch empties)."""
        return next((line.new for line in self.lines if line.kind != "-"), self.lines[0].new)

    @property
    def new_side(self) -> List[str]:
        return [line.text for line in self.lines if line.kind != "-"]

    @property
    def growth(self) -> int:
        """Lines the hunk adds, net."""
        return sum({"+": 1, "-": -1}.get(line.kind, 0) for line in self.lines)

    def moved(self, offset: int) -> Hunk:
        """The same hunk @offset lines further down in both files."""
        return Hunk(self.path, self.header, tuple(
            HunkLine(line.kind, line.text, None if line.old is None else line.old + offset,
                     line.new + offset) for line in self.lines))


@dataclass
class FilePatch:
    path: str  # inside the tree (one leading component stripped, as -p1)
    text: str

    @property
    def throttle_code(self) -> bool:
        """Under monitor/ or qapi/: applied to the private copy (else listed and skipped)."""
        return self.path.startswith(PATCHED_DIRS)

    def hunks(self) -> List[Hunk]:
        """The hunks, numbered as their headers say (the patch may apply elsewhere)."""
        hunks: List[Hunk] = []
        header = ""
        lines: List[HunkLine] = []
        old = new = 0
        for raw in self.text.splitlines():
            match = _HUNK.match(raw)
            if match:
                if header:
                    hunks.append(Hunk(self.path, header, tuple(lines)))
                header, lines = raw, []
                old_start, old_count, new_start, new_count = (
                    int(g) if g is not None else 1 for g in match.groups())
                # An empty side names the line before the hunk: count from the next one.
                old = old_start + (0 if old_count else 1)
                new = new_start + (0 if new_count else 1)
                continue
            if not header or raw.startswith("\\"):
                continue
            kind, text = (raw[:1] or " "), raw[1:]
            if kind == "+":
                lines.append(HunkLine(kind, text, None, new))
                new += 1
            elif kind == "-":
                lines.append(HunkLine(kind, text, old, new))
                old += 1
            elif kind == " ":
                lines.append(HunkLine(kind, text, old, new))
                old, new = old + 1, new + 1
        if header:
            hunks.append(Hunk(self.path, header, tuple(lines)))
        return hunks


def is_patch(path: Path) -> bool:
    """A file holding a unified diff (not a monitor.c)."""
    if not path.is_file():
        return False
    try:
        text = read_input(path, "a patch").decode("utf-8", "replace")
    except (OSError, QthrottleError):
        return False  # not readable as a patch: read as a target, which says why
    return bool(re.search(r"^\+\+\+ ", text, re.M) and re.search(r"^@@ -\d", text, re.M))


def _patch_path(header: str) -> str:
    name = header[4:].split("\t")[0].strip()
    return name.split("/", 1)[1] if "/" in name else name


def split_patch(text: str) -> List[FilePatch]:
    """The file sections of a unified diff, hunks counted so '--- ' lines inside stay put."""
    lines = text.splitlines(keepends=True)
    sections: List[FilePatch] = []
    start = 0  # first line of the current section's header ("diff --git ...")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("diff "):
            start = i
        if not (line.startswith("--- ") and i + 1 < len(lines)
                and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        header_start = start if start <= i and not any(
            lines[j].startswith(("--- ", "@@")) for j in range(start, i)) else i
        target = lines[i + 1] if not lines[i + 1].startswith("+++ /dev/null") else line
        i += 2
        while i < len(lines) and (match := _HUNK.match(lines[i])):
            old_count = int(match.group(2) or 1)
            new_count = int(match.group(4) or 1)
            i += 1
            while i < len(lines) and (old_count > 0 or new_count > 0):
                kind = lines[i][:1]
                if kind in (" ", "\n", "\r"):
                    old_count, new_count = old_count - 1, new_count - 1
                elif kind == "-":
                    old_count -= 1
                elif kind == "+":
                    new_count -= 1
                elif kind != "\\":
                    break  # a truncated hunk: patch reports it
                i += 1
            while i < len(lines) and lines[i].startswith("\\"):
                i += 1
        sections.append(FilePatch(_patch_path(target), "".join(lines[header_start:i])))
        start = i
    return sections


def copy_throttle_dirs(tree: Path, copy: Path) -> Path:
    """A private copy of @tree's monitor/ and qapi/ at @copy."""
    if not (tree / "monitor" / "monitor.c").is_file():
        raise PatchError(f"{tree}: a patch applies to a QEMU tree (a directory with "
                         "monitor/monitor.c and qapi/), not to this")
    for directory in ("monitor", "qapi"):
        if (tree / directory).is_dir():
            shutil.copytree(tree / directory, copy / directory, ignore=_not_regular)
    return copy


def apply_sections(copy: Path, sections: Sequence[FilePatch], method: str, what: str,
                   onto: str) -> None:
    """Apply @sections (throttle code only) to the private tree @copy, all or nothing.

    @what names the patch and @onto the tree in the error of a patch that does not apply.
    """
    patch_file = copy.parent / f"{copy.name}.patch"
    patch_file.write_text("".join(s.text for s in sections))
    if method == GIT_APPLY:
        git = _program("git", "git")
        # No repository around the copy is consulted: git apply works as a plain patcher.
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(copy.parent)}
        runs = [[git, "apply", "--check", str(patch_file)], [git, "apply", str(patch_file)]]
        failure = _git_apply_failure
    else:
        command = [_program("patch", "patch"), "-p1", "--batch", "--forward",
                   "--no-backup-if-mismatch", "--reject-file=-", "-d", str(copy),
                   "-i", str(patch_file)]
        env = None
        # A dry run first, so that a failing patch leaves nothing half applied behind.
        runs = [[*command, "--dry-run"], command]
        failure = _patch_failure
    try:
        for run in runs:
            result = subprocess.run(run, check=False, capture_output=True, text=True,
                                    cwd=copy, env=env)
            if result.returncode != 0:
                raise PatchError(f"{what} does not apply to {onto}: "
                                 f"{failure(result.stdout + result.stderr)}")
    finally:
        patch_file.unlink()
    # The copy holds no link of its own (copytree follows the tree's), so any is the patch's.
    links = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_symlink())
    if links:
        raise PatchError(f"{what} creates the symbolic link(s) {', '.join(links)}: refused "
                         "(qthrottle reads only the regular files of the tree)")


def _program(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise PatchError(f"the '{name}' program is needed to apply a patch "
                         f"(Debian package {package})")
    return found


def _not_regular(directory: str, names: List[str]) -> List[str]:
    """copytree's ignore: what is neither a directory nor a regular file (a device or a
    FIFO a link leads to: reading it would never end), or a link that leads nowhere."""
    def plain(name: str) -> bool:
        try:
            mode = os.stat(os.path.join(directory, name)).st_mode
        except OSError:
            return False
        return stat.S_ISDIR(mode) or stat.S_ISREG(mode)
    return [name for name in names if not plain(name)]


def _patch_failure(output: str) -> str:
    """The failing file and hunk(s) from patch's output, in one line."""
    current = "?"
    problems: List[str] = []
    for line in output.splitlines():
        found = re.match(r"(?:checking|patching) file (.+)", line)
        if found:
            current = found.group(1).strip("'\"")
        elif ("FAILED" in line and " out of " not in line) or "malformed" in line \
                or "Reversed" in line or "can't find file" in line or "No such file" in line:
            problems.append(f"{current}: {line.strip().rstrip('.')}")
    return "; ".join(problems) or " ".join(output.split())[:200] or "patch failed"


def _git_apply_failure(output: str) -> str:
    """git apply's errors in one line ('monitor/monitor.c:380: patch does not apply')."""
    problems = [line[len("error: "):].strip() for line in output.splitlines()
                if line.startswith("error: ")]
    failed_at = next((p[len("patch failed: "):] for p in problems
                      if p.startswith("patch failed: ")), None)
    rest = [p for p in problems if not p.startswith("patch failed: ")]
    if failed_at and rest:
        return f"{failed_at}: {rest[0].split(': ', 1)[-1]}"
    return "; ".join(problems) or " ".join(output.split())[:200] or "git apply failed"
