"""monitor/ and qapi/ of a QEMU git checkout at a revision, read without touching the checkout.

`git archive REV monitor qapi` reads the objects of the repository only: the work tree,
the index and HEAD stay as they are (no checkout, no stash, no lock). The files go to a
private directory of the caller's.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from qthrottle.core import QthrottleError

READ = ("monitor", "qapi")  # what qthrottle reads of a tree


class RevisionError(QthrottleError):
    """Not a git checkout, an unknown revision, or a revision without monitor/ and qapi/."""


@dataclass(frozen=True)
class Revision:
    repository: Path
    name: str  # as the user wrote it: v9.2.0, HEAD~3, a sha
    commit: str  # the full commit id

    @property
    def short(self) -> str:
        return self.commit[:12]

    def describe(self) -> str:
        """'v9.2.0 (0123456789ab) in ~/src/qemu'."""
        same = self.name.lower() == self.commit[:len(self.name)].lower()
        shown = self.name if same else f"{self.name} ({self.short})"
        return f"{shown} in {self.repository}"


def split_range(old: str, new: str) -> Tuple[str, str, bool]:
    """OLD NEW, or 'A..B' / 'A...B' as OLD with NEW empty: (old, new, from merge base)."""
    if new:
        if ".." in old or ".." in new:
            raise RevisionError(f"give two revisions or one range A..B, not {old} {new}")
        return old, new, False
    for separator in ("...", ".."):
        if separator in old:
            first, second = old.split(separator, 1)
            return first or "HEAD", second or "HEAD", separator == "..."
    raise RevisionError(f"{old}: give two revisions (OLD NEW) or a range OLD..NEW")


def _git(repository: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    git = shutil.which("git")
    if git is None:
        raise RevisionError("the 'git' program is needed to read revisions (Debian package git)")
    return subprocess.run([git, "-C", str(repository), *args], capture_output=True, check=False)


def resolve_revision(repository: Path, name: str) -> Revision:
    if not repository.is_dir():
        raise RevisionError(f"{repository}: no such directory")
    if _git(repository, "rev-parse", "--git-dir").returncode != 0:
        raise RevisionError(f"{repository}: not a git checkout")
    found = _git(repository, "rev-parse", "--verify", "--quiet", "--end-of-options",
                 f"{name}^{{commit}}")
    if found.returncode != 0:
        raise RevisionError(f"{name}: unknown revision in {repository}")
    return Revision(repository, name, found.stdout.decode().strip())


def merge_base(first: Revision, second: Revision) -> Revision:
    found = _git(first.repository, "merge-base", first.commit, second.commit)
    if found.returncode != 0:
        raise RevisionError(f"{first.name} and {second.name} have no merge base")
    commit = found.stdout.decode().strip()
    return Revision(first.repository, f"merge-base({first.name}, {second.name})", commit)


def export(revision: Revision, destination: Path) -> Path:
    """monitor/ and qapi/ at @revision, written under @destination (created)."""
    listed = _git(revision.repository, "ls-tree", "--name-only", revision.commit, "--", *READ)
    present: List[str] = listed.stdout.decode().split()
    if "monitor" not in present:
        raise RevisionError(f"{revision.describe()}: no monitor/ directory (not a QEMU tree, "
                            "or older than QEMU 5.0)")
    archive = _git(revision.repository, "archive", "--format=tar", revision.commit, "--",
                   *present)
    if archive.returncode != 0:
        message = archive.stderr.decode(errors="replace").strip().splitlines()
        raise RevisionError(f"git archive {revision.name}: "
                            f"{message[-1] if message else 'failed'}")
    destination.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.9.17, 3.10.12, 3.11.4 and later
            tar.extractall(destination, filter="data")
        else:
            tar.extractall(destination)  # noqa: S202 (git archive of the user's own repository)
    return destination
