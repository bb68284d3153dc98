"""qthrottle review SERIES: a verdict per patch of a series, then for the series as a whole.

SERIES is read by qthrottle.review.series (an mbox, a directory of .patch files, one
patch). The base is a QEMU tree (--tree) or a revision of a git checkout (--git, --base,
default HEAD): its monitor/ and qapi/ are copied (git: read with `git archive`) to a
private directory, and the patches are applied there in series order (`git apply` for a
git base, `patch -p1` otherwise); the user's tree is never touched. Files outside
monitor/ and qapi/ are not throttle code: listed and skipped. Every patch is applied
before any analysis, so a patch that does not apply stops the review at once.

Each patch that changes throttle code gets the `qthrottle diff` analysis of the tree
before it against the tree after it (proofs of both, decision diff, lint, dynamic diff)
and its findings, pointing at its own lines (qthrottle.review.findings). A tree is
analysed once, however many comparisons it is part of. Then the series as a whole: the
base against the last tree. A patch that leaves the tree falsifying an invariant before
the end of the series is a bisectability finding: `git bisect` can land on it.

Exit code: the last tree's (the last patch's verdict; the whole-series dynamic diff may add
a crash of the same tree), whatever an intermediate patch did: an intermediate FALSIFIED
is reported as a bisectability finding.
"""
from __future__ import annotations

import contextlib
import hashlib
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

from qthrottle.core import EXIT_FALSIFIED, EXIT_HOLDS, EXIT_UNKNOWN, Status
from qthrottle.engines.bounds import DYNAMIC_DIFF, Profile
from qthrottle.harness.target import resolve
from qthrottle.model.invariants import INVARIANTS
from qthrottle.proofs.solve import DEFAULT_TIMEOUT_MS
from qthrottle.review.diff import DiffOptions, DiffRun, Side, Version, analyse, compare
from qthrottle.review.findings import BISECT, Finding, find
from qthrottle.review.patches import GIT_APPLY, PATCH, apply_sections, copy_throttle_dirs
from qthrottle.review.provenance import Lineage, placed
from qthrottle.review.revisions import RevisionError, export, resolve_revision
from qthrottle.review.series import Series, SeriesError, SeriesPatch, read_series

Phase = Callable[[str], ContextManager[None]]


@dataclass(frozen=True)
class ReviewOptions:
    """What to review, against which base, within which bounds (the command's arguments)."""

    series: str
    tree: Optional[str] = None  # --tree
    git: Optional[str] = None  # --git
    base: str = "HEAD"  # --base, with --git
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    seed: int = 0
    dynamic: Profile = DYNAMIC_DIFF
    stateful: bool = False

    def analysis(self) -> DiffOptions:
        """The bounds of every comparison (OLD and NEW are the review's own trees)."""
        return DiffOptions("", "", timeout_ms=self.timeout_ms, seed=self.seed,
                           dynamic=self.dynamic, stateful=self.stateful)

    def command(self) -> str:
        """The command line that reproduces this review."""
        words = ["qthrottle", "review", self.series]
        if self.git is not None:
            words += ["--git", self.git] + (["--base", self.base] if self.base != "HEAD" else [])
        elif self.tree is not None:
            words += ["--tree", self.tree]
        return shlex.join(words + self.analysis().bound_words())


@dataclass
class PatchReview:
    """One patch: its verdict (the diff of the trees before and after it) and findings."""

    patch: SeriesPatch
    run: Optional[DiffRun]  # None: it changes no throttle code (nothing applied)
    seconds: float = 0.0

    @property
    def findings(self) -> List[Finding]:
        return [] if self.run is None else self.run.findings

    @property
    def code(self) -> Optional[int]:
        return None if self.run is None else self.run.code


@dataclass
class ReviewRun:
    """Everything `qthrottle review` found, before it is rendered."""

    series: Series
    base: str  # how the base is named: a tree, or a revision in a checkout
    method: str  # GIT_APPLY or PATCH
    patches: List[PatchReview]
    whole: Optional[DiffRun]  # the base against the last tree (None: one throttle patch)
    reproduce: str  # the command line that reproduces the run
    bisect: List[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def reviewed(self) -> List[PatchReview]:
        """The patches that changed throttle code (each has a verdict)."""
        return [p for p in self.patches if p.run is not None]

    @property
    def final(self) -> DiffRun:
        """The comparison that ends in the last tree and says most about it."""
        run = self.whole or self.reviewed[-1].run
        assert run is not None
        return run

    @property
    def code(self) -> int:
        """The last tree's exit code (see the module's description)."""
        last = self.reviewed[-1].run if self.reviewed else None
        codes = {run.code for run in (last, self.whole) if run is not None}
        for code in (EXIT_FALSIFIED, EXIT_UNKNOWN):
            if code in codes:
                return code
        return EXIT_HOLDS


@dataclass
class _Tree:
    """A private tree of the review: the base, or the tree after a patch."""

    side: Side
    name: str  # "the base", "patch 2/3"
    digest: str  # of monitor/ and qapi/: equal trees are analysed once


def _digest(tree: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for d in ("monitor", "qapi") for p in (tree / d).rglob("*")
                       if p.is_file()):
        digest.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _quiet(_: str) -> ContextManager[None]:
    return contextlib.nullcontext()


def run_review(options: ReviewOptions, phase: Phase = _quiet) -> ReviewRun:
    """Read, apply and analyse the series; QthrottleError for bad input (exit 2)."""
    start = time.perf_counter()
    series = read_series(Path(options.series))
    if not any(p.throttle_files for p in series.patches):
        others = sorted({f for p in series.patches for f in p.other_files})
        raise SeriesError(f"{options.series}: no patch of the series changes throttle code "
                          f"(monitor/ or qapi/); it changes {', '.join(others)}")
    with tempfile.TemporaryDirectory(prefix="qthrottle-review-") as workdir:
        base, base_name, method = _base(options, Path(workdir))
        trees = _apply(series, base, base_name, method, Path(workdir))
        run = _analyse(options, series, base_name, method, trees, phase)
    run.seconds = time.perf_counter() - start
    return run


def _base(options: ReviewOptions, workdir: Path) -> Tuple[_Tree, str, str]:
    """The base's monitor/ and qapi/ in a private copy; its name; how patches apply to it."""
    copy = workdir / "base"
    if options.git is not None:
        revision = resolve_revision(Path(options.git), options.base)
        export(revision, copy)
        if not (copy / "monitor" / "monitor.c").is_file():
            raise RevisionError(f"{revision.describe()}: no monitor/monitor.c")
        name, prefix, method = revision.describe(), f"{revision.name}:", GIT_APPLY
    else:
        tree = Path(options.tree) if options.tree is not None else Path.cwd()
        copy_throttle_dirs(tree, copy)
        name, prefix, method = str(tree), f"{tree}/", PATCH
    target = replace(resolve(str(copy)), name=name)
    return _Tree(Side(target, Lineage(copy, prefix)), "the base", _digest(copy)), name, method


def _apply(series: Series, base: _Tree, base_name: str, method: str,
           workdir: Path) -> List[_Tree]:
    """The tree after each patch (the same tree again after a patch with no throttle code)."""
    trees = [base]
    for patch in series.patches:
        before = trees[-1]
        kept = [s for s in patch.sections if s.throttle_code]
        if not kept:
            trees.append(before)
            continue
        copy = workdir / f"after-{patch.number}"
        copy_throttle_dirs(before.side.lineage.root, copy)
        onto = base_name if before is base else f"the tree after {before.name}"
        apply_sections(copy, kept, method, f"{patch.label} ({patch.title})", onto)
        applied = before.side.lineage.patches + (placed(patch.label, kept, copy),)
        target = replace(resolve(str(copy)), name=f"after {patch.label}")
        trees.append(_Tree(Side(target, Lineage(copy, "", applied)), patch.label,
                           _digest(copy)))
    return trees


def _analyse(options: ReviewOptions, series: Series, base_name: str, method: str,
             trees: List[_Tree], phase: Phase) -> ReviewRun:
    analysis = options.analysis()
    versions: Dict[str, Version] = {}

    def version(tree: _Tree) -> Version:
        if tree.digest not in versions:
            with phase(f"proofs of {tree.name}"):
                versions[tree.digest] = analyse(tree.name, tree.side.target, analysis)
        return versions[tree.digest]

    def comparison(old: _Tree, new: _Tree, skipped: List[str]) -> DiffRun:
        compared = compare(version(old), version(new), analysis, skipped)
        compared.lineages = {"old": old.side.lineage, "new": new.side.lineage}
        compared.findings = find(compared, old.side.lineage, new.side.lineage)
        return compared

    reviews: List[PatchReview] = []
    for index, patch in enumerate(series.patches, 1):
        before, after = trees[index - 1], trees[index]
        if after is before:
            reviews.append(PatchReview(patch, None))
            continue
        start = time.perf_counter()
        with phase(f"{patch.label}: {patch.title}"):
            compared = comparison(before, after, patch.other_files)
        reviews.append(PatchReview(patch, compared, time.perf_counter() - start))
    reviewed = [r for r in reviews if r.run is not None]
    whole = None
    if len(reviewed) > 1:
        with phase("the series as a whole"):
            skipped = list(dict.fromkeys(f for p in series.patches for f in p.other_files))
            whole = comparison(trees[0], trees[-1], skipped)
    review = ReviewRun(series, base_name, method, reviews, whole, options.command())
    review.bisect = bisectability(review)
    return review


def bisectability(run: ReviewRun) -> List[Finding]:
    """Each patch before the last that leaves the tree falsifying an invariant it did not
    falsify before: `git bisect` can stop there. Says which later patch repairs it."""
    reviewed = run.reviewed
    findings = []
    for position, review in enumerate(reviewed[:-1]):
        assert review.run is not None
        for number in review.run.new.falsified:
            if number in review.run.old.falsified:
                continue
            repaired = next((later.patch.label for later in reviewed[position + 1:]
                             if later.run is not None
                             and later.run.new.status(number) != Status.FALSIFIED), None)
            where = [loc for f in review.findings if f.invariant == number for loc in f.where]
            outcome = f"{repaired} repairs it" if repaired else \
                "no later patch repairs it (the series ends falsifying it)"
            findings.append(Finding(
                BISECT, f"{review.patch.label} leaves the tree falsifying invariant {number} "
                        f"({INVARIANTS[number]}); {outcome}: a bisection that lands on "
                        f"{review.patch.label} sees a broken throttle", number, where=where))
    return findings


def default_base(directory: Path) -> Tuple[Optional[str], Optional[str]]:
    """(--tree, --git) when neither is given: the current directory, read as a git checkout
    if it is one (its HEAD), else as a tree."""
    git = shutil.which("git")
    inside = git is not None and subprocess.run(
        [git, "-C", str(directory), "rev-parse", "--is-inside-work-tree"],
        capture_output=True, check=False).returncode == 0
    if inside and (directory / "monitor" / "monitor.c").is_file():
        return None, str(directory)
    if (directory / "monitor" / "monitor.c").is_file():
        return str(directory), None
    raise SeriesError(f"give the base to apply the series to: --tree QEMU_TREE or --git "
                      f"QEMU_GIT_DIR (the current directory {directory} is not a QEMU tree)")
