"""qthrottle diff OLD NEW (issue 6): the throttle changes between two versions, as
scripts and maintainers see them: the case studies of the 2026 fix, real QEMU 7.2
against 10.0.x, a patch, and what the command does when it cannot decide."""
from __future__ import annotations

import difflib
import json
import os
import re
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List

import pytest

from qthrottle.cases import SCHEMA_DIR
from qthrottle.cli import main
from qthrottle.engines.bounds import Profile
from qthrottle.harness.driver import Driver
from qthrottle.harness.target import resolve
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.qapi_schema import load_schema
from qthrottle.model.timeline import Advance, Queue
from qthrottle.review.diff import DiffOptions, DiffRun, report_json, report_text, run_diff
from qthrottle.review.patches import split_patch

SEED = "20261125"
STOP_FIX = "BLOCK_IO_ERROR with action=stop: throttled -> never throttled"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Dict[str, Any]:
    code = main(["diff", *argv, "--json"])
    report: Dict[str, Any] = json.loads(capsys.readouterr().out)
    assert report["exit"] == code
    return report


def _tree(root: Path, case: str) -> Path:
    """A QEMU-shaped tree holding a case study: monitor/monitor.c and qapi/."""
    (root / "monitor").mkdir(parents=True)
    shutil.copy(resolve(case).monitor_c, root / "monitor" / "monitor.c")
    shutil.copytree(SCHEMA_DIR, root / "qapi")
    return root


def _patch(old_case: str, new_case: str) -> str:
    return "".join(difflib.unified_diff(
        resolve(old_case).monitor_c.read_text().splitlines(keepends=True),
        resolve(new_case).monitor_c.read_text().splitlines(keepends=True),
        "a/monitor/monitor.c", "b/monitor/monitor.c"))


@pytest.fixture(scope="module")
def merged_fix() -> DiffRun:
    """per-device -> stop-bypass (commit 544ddbb637), run once for the tests below."""
    return run_diff(DiffOptions("per-device", "stop-bypass", seed=int(SEED),
                                dynamic=Profile("diff", runs=100, steps=12)))


def test_the_merged_fix_is_exactly_one_change(merged_fix: DiffRun) -> None:
    """Acceptance: per-device -> stop-bypass names one change, and invariant 4 goes
    FALSIFIED -> PROVED; the output fits one screen."""
    assert merged_fix.code == 0
    lines = report_text(merged_fix)
    out = "\n".join(lines)
    changes = lines.index("throttle changes (1):")
    assert lines[changes + 1] == f"  {STOP_FIX}" and lines[changes + 2] == ""
    invariant_lines = [line for line in lines if line[:5].strip().isdigit()]
    assert len(invariant_lines) == len(INVARIANTS)
    changed = [line for line in invariant_lines if "(changed)" in line]
    assert len(changed) == 1 and changed[0].startswith("  4 ")
    assert "FALSIFIED -> PROVED" in changed[0]
    # Every other throttled event is proved unchanged, one line each.
    rows = [line for line in lines if re.fullmatch(r"  [A-Z_]+ +1 s +.+ +unchanged \(proved\)",
                                                   line)]
    assert len(rows) == 8
    assert "3 other events (STOP, RESUME, SHUTDOWN)" in out
    assert f"seed {SEED}" in out and "up to 100 timelines x 12 operations" in out
    assert "first divergence" in out and "<- first divergence" in out
    assert len(lines) <= 50  # one screen


def test_witness_and_divergence_replay_on_the_c(merged_fix: DiffRun) -> None:
    """The z3 witness and the minimised divergent timeline behave as reported on the C."""
    report = json.loads(json.dumps(report_json(merged_fix)))
    assert report["exit"] == 0
    assert [(c["event"], c["kind"], c["text"]) for c in report["changes"]] == [
        ("BLOCK_IO_ERROR", "decision", STOP_FIX)]
    assert {n: (s["old"], s["new"]) for n, s in report["invariants"].items()
            if s["old"] != s["new"]} == {"4": ("FALSIFIED", "PROVED")}
    block = next(e for e in report["events"] if e["event"] == "BLOCK_IO_ERROR")
    (change,) = block["changes"]
    assert change["exact"] and change["condition"] == "action=stop"
    witness = change["witness"]["new"]
    assert witness["data"]["action"] == "stop"
    divergence = report["dynamic"]["divergence"]
    assert divergence is not None and len(divergence["timeline"]) <= 3
    twice = [Queue(witness["event"], witness["data"])] * 2
    old_ops = eval(divergence["replay_old"], {"Queue": Queue, "Advance": Advance})  # noqa: S307
    with Driver(resolve("per-device").build().binary) as old, \
            Driver(resolve("stop-bypass").build().binary) as new:
        # per-device holds the repeated stop event back; stop-bypass emits it at once.
        assert [len(s.emitted) for s in old.run(twice).steps] == [1, 0]
        assert [len(s.emitted) for s in new.run(twice).steps] == [1, 1]
        step = divergence["step"] - 1
        assert [len(s.emitted) for s in old.run(old_ops).steps][step] != \
            [len(s.emitted) for s in new.run(old_ops).steps][step]


@pytest.mark.real_qemu
def test_qemu_72_to_100_lists_the_real_changes_only(
        qemu_tree_72: Path, qemu_tree_100: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Established by reading both trees: the rate table gains BLOCK_IO_ERROR (2155d2dd)
    and HV_BALLOON_STATUS_REPORT (an event 7.2's schema lacks); hash and equality gain
    BLOCK_IO_ERROR keyed on qom-path; the queue function exempts action=stop (544ddbb637).
    The schemas add five events and drop two, none of them throttled."""
    report = _json(capsys, str(qemu_tree_72), str(qemu_tree_100), "--seed", SEED,
                   "--timelines", "100")
    assert report["exit"] == 0
    assert [(c["event"], c["kind"], c["text"]) for c in report["changes"]] == [
        ("BLOCK_IO_ERROR", "rate", "BLOCK_IO_ERROR: rate none -> 1 s"),
        ("BLOCK_IO_ERROR", "key", "BLOCK_IO_ERROR: key - -> qom-path"),
        ("BLOCK_IO_ERROR", "decision",
         "BLOCK_IO_ERROR with action=ignore|report: never throttled -> throttled"),
        ("HV_BALLOON_STATUS_REPORT", "added", "HV_BALLOON_STATUS_REPORT (new event): "
         "throttled; rate 1 s, key (event name)"),
    ]
    assert set(report["schema"]["added"]) == {
        "GUEST_PVSHUTDOWN", "NETDEV_VHOST_USER_CONNECTED", "NETDEV_VHOST_USER_DISCONNECTED",
        "CPU_POLARIZATION_CHANGE", "VFIO_MIGRATION"}
    assert set(report["schema"]["removed"]) == {"RDMA_GID_STATUS_CHANGED", "MEM_UNPLUG_ERROR"}
    others = [e for e in report["events"]
              if e["in_old"] and e["in_new"] and e["event"] != "BLOCK_IO_ERROR"]
    assert len(others) == 49
    for event in others:  # nothing spurious: proved, not merely not found
        assert event["decision"] == "unchanged" and not event["changes"], event
        assert event["rate_ns"]["old"] == event["rate_ns"]["new"]
        assert event["key"]["old"] == event["key"]["new"]
        relation = event["key_relation"]
        assert relation is None or relation["status"] == "unchanged", event
    assert report["unknown"] == []
    assert all(s["old"] == s["new"] for s in report["invariants"].values())
    divergence = report["dynamic"]["divergence"]
    assert divergence is not None
    assert all("BLOCK_IO_ERROR" in step for step in divergence["timeline"])
    # Every event of NEW's schema is queued, those the patch adds too (to NEW alone).
    assert set(report["dynamic"]["events"]) == set(load_schema(qemu_tree_100 / "qapi").events)


def test_a_patch_that_reintroduces_the_bug_fails_ci(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TREE + PATCH: the patch (stop-bypass -> per-device, plus a file outside monitor/
    and qapi/) is applied to a copy; the tree is untouched; NEW falsifies 4: exit 1."""
    tree = _tree(tmp_path / "qemu", "stop-bypass")
    original = (tree / "monitor" / "monitor.c").read_text()
    outside = "--- a/docs/throttle.rst\n+++ b/docs/throttle.rst\n@@ -1 +1 @@\n-old\n+new\n"
    patch = tmp_path / "revert-fix.patch"
    patch.write_text(_patch("stop-bypass", "per-device") + outside)
    report = _json(capsys, str(tree), str(patch), "--timelines", "0")
    assert report["exit"] == 1
    assert [c["text"] for c in report["changes"]] == [
        "BLOCK_IO_ERROR with action=stop: never throttled -> throttled"]
    assert report["patch_skipped"] == ["docs/throttle.rst"]
    assert report["invariants"]["4"] == {"old": "PROVED", "new": "FALSIFIED"}
    assert report["new"]["target"] == f"{tree} + revert-fix.patch"
    assert (tree / "monitor" / "monitor.c").read_text() == original


def test_a_patch_that_does_not_apply_is_an_input_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = _tree(tmp_path / "qemu", "baseline")
    patch = tmp_path / "fix.patch"
    patch.write_text(_patch("per-device", "stop-bypass"))  # made against another file
    assert main(["diff", str(tree), str(patch)]) == 2
    captured = capsys.readouterr()
    (error,) = captured.err.splitlines()
    assert error.startswith("qthrottle: error: ") and "does not apply" in error
    assert "monitor/monitor.c: Hunk #1 FAILED" in error
    assert captured.out == ""
    assert main(["diff", "stop-bypass", str(patch)]) == 2  # a patch needs a tree
    assert "applies to a QEMU tree" in capsys.readouterr().err


def test_split_patch_counts_hunk_lines() -> None:
    """A removed line that starts with "-- " reads "--- ...": it stays inside its hunk."""
    text = ("From 1234 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] x\n---\n"
            "diff --git a/monitor/monitor.c b/monitor/monitor.c\nindex 1..2 100644\n"
            "--- a/monitor/monitor.c\n+++ b/monitor/monitor.c\n@@ -1,2 +1,2 @@\n a\n"
            "--- b\n+++ c\n"  # a removed "-- b" and an added "++ c" line
            "diff --git a/qapi/block.json b/qapi/block.json\n"
            "--- a/qapi/block.json\n+++ b/qapi/block.json\n@@ -1 +1 @@\n-x\n+y\n-- \n2.39.5\n")
    sections = split_patch(text)
    assert [s.path for s in sections] == ["monitor/monitor.c", "qapi/block.json"]
    assert sections[0].text.startswith("diff --git") and "--- b\n+++ c\n" in sections[0].text
    assert sections[1].text.endswith("+y\n")


def test_an_untranslatable_queue_function_is_unknown_never_unchanged(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = resolve("stop-bypass").monitor_c.read_text()
    anchor = "    if (!throttled) {"
    assert anchor in source
    (tmp_path / "monitor.c").write_text(source.replace(
        anchor, "    for (int i = 0; i < 1; i++) {\n    }\n" + anchor, 1))
    code = main(["diff", "stop-bypass", str(tmp_path / "monitor.c"), "--new-qapi-dir",
                 str(SCHEMA_DIR), "--timelines", "0"])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "unchanged (proved)" not in out and "throttle changes (0)" in out
    assert "UNKNOWN: decision UNKNOWN for BLOCK_IO_ERROR" in out
    assert "unsupported C construct: a for loop" in out
    assert "dynamic diff: not run (--timelines 0)" in out


def test_each_version_is_proved_in_a_fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """z3's search depends on what its process built before: each tree's proofs run in a
    worker process of their own, as `qthrottle prove TREE` would prove it."""
    pids: List[int] = []
    submit = ProcessPoolExecutor.submit

    def recorded(pool: ProcessPoolExecutor, function: Any, *args: Any, **kwargs: Any) -> Any:
        future = submit(pool, function, *args, **kwargs)
        pids.append(submit(pool, os.getpid).result())  # the same worker, after the proofs
        return future
    monkeypatch.setattr(ProcessPoolExecutor, "submit", recorded)
    monkeypatch.setenv("QTHROTTLE_PROOF_CACHE", "off")  # z3 proves in those workers
    run = run_diff(DiffOptions("per-device", "stop-bypass", seed=int(SEED),
                               dynamic=Profile("diff", runs=10, steps=12)))
    assert run.old.proofs.falsified == frozenset({4}) and not run.new.proofs.falsified
    assert len(set(pids)) == 2 and os.getpid() not in pids
