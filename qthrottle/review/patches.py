"""Patches as qthrottle applies them: a unified diff split per file, the files under
monitor/ and qapi/ applied with `patch -p1` to a private copy of a tree, the others
listed as not throttle code. A patch that creates a symbolic link is refused: qthrottle
reads the files of the tree, and a link could make it read (and quote) any file."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from qthrottle.core import QthrottleError, read_input

PATCHED_DIRS = ("monitor/", "qapi/")  # what qthrottle reads of a tree


class PatchError(QthrottleError):
    """The patch cannot be read or does not apply: an input error (exit 2)."""


_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


@dataclass
class FilePatch:
    path: str  # inside the tree (one leading component stripped, as -p1)
    text: str


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
            old_count = int(match.group(1) or 1)
            new_count = int(match.group(2) or 1)
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


def apply_patch(tree: Path, patch: Path, workdir: Path) -> Tuple[Path, List[str]]:
    """A copy of @tree's monitor/ and qapi/ with @patch applied; the files it skipped."""
    if not (tree / "monitor" / "monitor.c").is_file():
        raise PatchError(f"{tree}: a patch applies to a QEMU tree (a directory with "
                         "monitor/monitor.c and qapi/), not to this")
    patch_program = shutil.which("patch")
    if patch_program is None:
        raise PatchError("the 'patch' program is needed to apply a patch "
                         "(Debian package patch)")
    try:
        sections = split_patch(read_input(patch, "a patch").decode("utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise PatchError(f"{patch}: cannot read the patch: {error}") from None
    kept = [s for s in sections if s.path.startswith(PATCHED_DIRS)]
    skipped = [s.path for s in sections if not s.path.startswith(PATCHED_DIRS)]
    if not kept:
        raise PatchError(f"{patch}: the patch changes nothing under monitor/ or qapi/"
                         + (f" (it changes {', '.join(skipped)})" if skipped else ""))
    copy = workdir / "tree"
    for directory in ("monitor", "qapi"):
        if (tree / directory).is_dir():
            shutil.copytree(tree / directory, copy / directory, ignore=_not_regular)
    filtered = workdir / "monitor-qapi.patch"
    filtered.write_text("".join(s.text for s in kept))
    command = [patch_program, "-p1", "--batch", "--forward", "--no-backup-if-mismatch",
               "-d", str(copy), "-i", str(filtered)]
    # A dry run first, so that a failing patch leaves nothing half applied behind.
    for run in ([*command, "--dry-run"], command):
        result = subprocess.run(run, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise PatchError(f"{patch} does not apply to {tree}: "
                             f"{_patch_failure(result.stdout + result.stderr)}")
    # The copy holds no link of its own (copytree follows the tree's), so any is the patch's.
    links = sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_symlink())
    if links:
        raise PatchError(f"{patch} creates the symbolic link(s) {', '.join(links)}: refused "
                         "(qthrottle reads only the regular files of the tree)")
    return copy, skipped


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
