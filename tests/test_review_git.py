"""qthrottle diff over git revisions (issue 12) answers as diff over the trees they hold.
The 5-patch series of tests/series_builder.py, in a throwaway git repository."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import series_builder as build  # tests/ is on the path (pytest's rootdir-relative import)

from qthrottle.cli import main

SEED = "20261203"
TIMELINES = "30"  # dynamic diff per run; the verdicts do not depend on it


@pytest.fixture(scope="module")
def five(qemu_tree_100: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Tuple[build.Repository, Path]:
    return build.five_patch_files(qemu_tree_100, tmp_path_factory.mktemp("five"))


def _answer(report: Dict[str, Any]) -> Dict[str, Any]:
    """A diff report without what names the inputs (paths, revisions), and without the
    concrete values z3 picks for a witness (any event meeting the reported condition: two
    runs on the same input may pick different ones)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k != "witness"}
        return [plain(v) for v in value] if isinstance(value, list) else value

    return {"events": plain(report["events"]), "changes": report["changes"],
            "invariants": report["invariants"], "exit": report["exit"],
            "findings": [(f["kind"], re.sub(r"[^\s(']*monitor/", "monitor/", f["summary"]),
                          [w["line"] for w in f["where"]]) for f in report["findings"]],
            "divergence": report["dynamic"]["divergence"]}


@pytest.mark.real_qemu
def test_diff_of_git_revisions_is_the_diff_of_the_extracted_trees(
        five: Tuple[build.Repository, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Acceptance: `diff --git DIR A B`, `A..B` and `A...B` (from the merge base, here A)
    answer as `diff` on the two trees; the checkout (HEAD, index, work tree) is
    untouched."""
    repository, _ = five
    head = repository.git("rev-parse", "HEAD")
    old, new = build.export(repository, "base", tmp_path / "old"), \
        build.export(repository, "HEAD~2", tmp_path / "new")
    answers = []
    for argv in (["--git", str(repository.path), "base", "HEAD~2", "--format", "json"],
                 ["--git", str(repository.path), "base..HEAD~2", "--format", "json"],
                 ["--git", str(repository.path), "base...HEAD~2", "--json"],
                 [str(old), str(new), "--format", "json"]):
        code = main(["diff", *argv, "--seed", SEED, "--timelines", TIMELINES])
        report = json.loads(capsys.readouterr().out)
        build.validate_report(report)
        assert code == report["exit"] == 1  # HEAD~2 is patch 3/5: invariant 4 falsified
        answers.append(_answer(report))
    assert answers[0] == answers[1] == answers[2] == answers[3]
    assert report["invariants"]["4"] == {"old": "PROVED", "new": "FALSIFIED"}
    assert repository.git("rev-parse", "HEAD") == head
    assert repository.git("status", "--porcelain") == ""


