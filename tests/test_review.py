"""qthrottle review (issue 12): a patch series reviewed the way it arrives, as mail or as git
revisions. The series are built at test time (tests/series_builder.py): QEMU 10.0.x's
monitor/ and qapi/ in a throwaway git repository, our own commits on top, exported with
git format-patch, mailed as a list would carry them."""
from __future__ import annotations

import contextlib
import email.policy
import io
import json
import mailbox
import re
import tempfile
from email import encoders
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import series_builder as build  # tests/ is on the path (pytest's rootdir-relative import)

from qthrottle.cli import main
from qthrottle.engines.bounds import Profile
from qthrottle.review import html
from qthrottle.review.findings import BISECT, FALSIFIED, STILL_FALSIFIED, UNKNOWN_FINDING
from qthrottle.review.patches import FilePatch
from qthrottle.review.provenance import Lineage, placed
from qthrottle.review.review import ReviewOptions, ReviewRun, run_review
from qthrottle.review.review_report import (
    review_email,
    review_html,
    review_markdown,
    review_text,
)
from qthrottle.review.series import Subject, read_series

SEED = "20261203"
TIMELINES = "30"  # dynamic diff per patch; the verdicts do not depend on it


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def three(qemu_tree_100: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Tuple[build.Repository, Path, Path]:
    """The 3-patch series as a list archive holds it: cover letter, patch 2 sent as
    quoted-printable and patch 3 as base64, a reviewer's reply, in arrival order (3, 0, 1,
    reply, 2); and the same series as git format-patch wrote it."""
    where = tmp_path_factory.mktemp("three")
    repository = build.base_repository(qemu_tree_100, where / "qemu")
    build.three_patch_series(repository)
    raw = repository.format_patch("base", "--cover-letter")
    (where / "format-patch.mbox").write_text(raw)
    cover, first, second, third = build.messages(raw)
    cover.replace_header("Subject", "[PATCH 0/3] monitor: throttle unplug errors per device")
    quoted = build.reencoded(second, encoders.encode_quopri)
    archive = build.write_mbox(where / "archive.mbox", [
        build.reencoded(third, encoders.encode_base64), cover, first,
        build.reply(second, "This reads an optional member."), quoted])
    return repository, archive, where / "format-patch.mbox"


@pytest.fixture(scope="module")
def three_json(three: Tuple[build.Repository, Path, Path]) -> Tuple[int, Dict[str, Any]]:
    repository, archive, _ = three
    return _review_json(archive, "--git", str(repository.path), "--base", "base")


def _review_json(series: Path, *base: str) -> Tuple[int, Dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["review", str(series), *base, "--seed", SEED, "--timelines", TIMELINES,
                     "--format", "json"])
    report: Dict[str, Any] = json.loads(out.getvalue())
    return code, report


@pytest.fixture(scope="module")
def five(qemu_tree_100: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Tuple[build.Repository, Path]:
    """The 5-patch series, as git format-patch -o writes it (one file per message)."""
    return build.five_patch_files(qemu_tree_100, tmp_path_factory.mktemp("five"))


@pytest.fixture(scope="module")
def five_run(five: Tuple[build.Repository, Path]) -> ReviewRun:
    repository, patches = five
    return run_review(ReviewOptions(str(patches), git=str(repository.path), base="base",
                                    seed=int(SEED), dynamic=Profile("diff", int(TIMELINES), 12)))


# ------------------------------------------------------------------ reading a series

def test_subjects_as_git_and_the_lists_write_them() -> None:
    rfc = Subject.parse("[RFC PATCH v2 03/10] monitor: x")
    assert (rfc.title, rfc.number, rfc.total, rfc.version, rfc.rfc, rfc.reply) == (
        "monitor: x", 3, 10, 2, True, False)
    archived = Subject.parse("Re: [Qemu-devel] [PATCH for-10.1 v3 2/5] qapi: y")
    assert (archived.title, archived.number, archived.version, archived.reply) == (
        "qapi: y", 2, 3, True)
    lone = Subject.parse("[PATCH] monitor: z")
    assert (lone.number, lone.total, lone.version) == (None, None, 1)


@pytest.mark.real_qemu
def test_an_archive_mbox_reads_as_the_series_in_number_order(
        three: Tuple[build.Repository, Path, Path]) -> None:
    """Arrival order 3, 0, 1, reply, 2: patches come out 1, 2, 3; the cover letter and the
    reply (which quotes diff lines and suggests a diff of its own) are skipped; the
    quoted-printable patch 2 and the base64 patch 3 are decoded; the archive's escaped
    ">From " body line is unescaped; the author's UTF-8 name survives."""
    _, archive, _ = three
    raw = archive.read_text()
    assert "=3D" in raw and "\n>From the guest" in raw  # QP on the wire, mboxo escape
    assert "Content-Transfer-Encoding: base64" in raw and "+++ b/qapi/qdev.json" not in raw
    series = read_series(archive)
    assert [p.label for p in series.patches] == ["patch 1/3", "patch 2/3", "patch 3/3"]
    assert [p.title for p in series.patches] == [
        "monitor: rate-limit DEVICE_UNPLUG_GUEST_ERROR",
        "monitor: throttle DEVICE_UNPLUG_GUEST_ERROR per device",
        "qapi: document DEVICE_UNPLUG_GUEST_ERROR's rate limit"]
    assert sorted(s.why for s in series.skipped) == ["cover letter", "reply"]
    assert series.cover is not None and "per device" in series.cover.subject.text
    second = series.patches[1]
    assert build.UNPLUG_HASH_LINE in second.mail.body
    assert second.throttle_files == ["monitor/monitor.c"]
    first = series.patches[0]
    assert "\nFrom the guest's side" in first.mail.body and ">From" not in first.mail.body
    assert first.other_files == ["docs/devel/event-throttle.rst"]
    assert first.mail.author == build.AUTHOR
    assert series.patches[2].throttle_files == ["qapi/qdev.json"]


@pytest.mark.real_qemu
def test_the_newest_version_of_a_series_is_reviewed(
        three: Tuple[build.Repository, Path, Path], tmp_path: Path) -> None:
    """v1 and v2 in one mbox (a thread with both): v2 is the series, v1 is listed."""
    _, _, raw = three
    patches = build.messages(raw.read_text())[1:]
    both = build.write_mbox(tmp_path / "both.mbox", [
        *(build.as_version(m, 2) for m in reversed(patches)), *patches])
    series = read_series(both)
    assert series.version == 2
    assert [p.mail.subject.text.split("]")[0] for p in series.patches] == [
        "[PATCH v2 1/3", "[PATCH v2 2/3", "[PATCH v2 3/3"]
    assert [s.why for s in series.skipped] == ["superseded by v2"] * 3


@pytest.mark.real_qemu
def test_git_format_patch_output_reads_whole(three: Tuple[build.Repository, Path, Path]) -> None:
    """git leaves a body line "From ..." unescaped: mailbox splits the message there, and
    the headerless piece is joined back."""
    _, _, raw = three
    assert "\nFrom the guest's side" in raw.read_text()
    series = read_series(raw)
    assert [p.number for p in series.patches] == [1, 2, 3]
    assert "From the guest's side" in series.patches[0].mail.body
    assert series.patches[0].other_files == ["docs/devel/event-throttle.rst"]


@pytest.mark.real_qemu
def test_a_directory_of_patches_reads_in_number_order(five: Tuple[build.Repository, Path]
                                                      ) -> None:
    _, patches = five
    series = read_series(patches)
    assert [p.number for p in series.patches] == [1, 2, 3, 4, 5]
    assert series.cover is not None and series.cover.subject.title == \
        "monitor: tidy the stop exemption"


# ------------------------------------------------------------------ where a line comes from

def test_lines_are_traced_to_the_patch_that_added_them(tmp_path: Path) -> None:
    """Two patches on a file of our own; the second applies at an offset (the first added
    lines above it), and its hunk is found where it applied, not where its header says."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f.c").write_text("".join(f"line {n}\n" for n in range(1, 21)))
    first = FilePatch("f.c", "--- a/f.c\n+++ b/f.c\n@@ -2,3 +2,5 @@\n line 2\n+new A\n"
                             "+new B\n line 3\n line 4\n")
    second = FilePatch("f.c", "--- a/f.c\n+++ b/f.c\n@@ -14,3 +14,3 @@\n line 14\n"
                              "-line 15\n+line fifteen\n line 16\n")  # made against the base
    text = (tree / "f.c").read_text().splitlines()
    text[2:2] = ["new A", "new B"]
    text[16] = "line fifteen"  # line 15 of the base, two lines down
    (tree / "f.c").write_text("\n".join(text) + "\n")
    lineage = Lineage(tree, "", (placed("patch 1/2", [first], tree),
                                 placed("patch 2/2", [second], tree)))
    fifteen = lineage.locate("f.c", 17)
    assert (fifteen.patch, fifteen.kind, fifteen.text, fifteen.hunk and fifteen.hunk.range) == (
        "patch 2/2", "added line", "line fifteen", "@@ -14,3 +14,3 @@")
    assert lineage.locate("f.c", 4).text == "new B"
    base = lineage.locate("f.c", 20)
    assert base.patch is None and base.describe() == "f.c:20 (not changed by the patches)"
    removed = [loc for loc in lineage.changed("f.c", 1, 30, ["patch 2/2"])
               if loc.kind == "removed line"]
    assert [(loc.line, loc.text) for loc in removed] == [(17, "line 15")]
    whole_file = lineage.changed("f.c", 1, 1 << 30, ["patch 1/2"])  # no line-by-line scan
    assert [(loc.line, loc.text) for loc in whole_file] == [(3, "new A"), (4, "new B")]


# ------------------------------------------------------------------ the 3-patch series

@pytest.mark.real_qemu
def test_three_patches_get_a_verdict_each_and_the_finding_points_at_patch_2(
        three_json: Tuple[int, Dict[str, Any]]) -> None:
    """Acceptance: a verdict per patch; the totality finding points at the added hash line
    of patch 2/3; patch 1's hunk for docs/ is listed as not throttle code; the exit code is
    the last patch's (1: the series ends falsifying invariant 7)."""
    code, report = three_json
    build.validate_report(report)
    assert code == report["exit_code"] == 1
    patches = report["patches"]
    assert [p["verdict"] for p in patches] == [
        "holds", "FALSIFIED: invariant 7", "FALSIFIED: invariant 7"]
    assert [p["diff"]["exit"] for p in patches] == [0, 1, 1]
    assert patches[0]["other_files"] == ["docs/devel/event-throttle.rst"]
    assert patches[0]["diff"]["patch_skipped"] == ["docs/devel/event-throttle.rst"]
    (falsified,) = [f for f in patches[1]["diff"]["findings"] if f["kind"] == FALSIFIED]
    assert falsified["invariant"] == 7
    first = falsified["where"][0]
    assert (first["patch"], first["file"], first["kind"], first["text"].strip()) == (
        "patch 2/3", "monitor/monitor.c", "added line", build.UNPLUG_HASH_LINE.strip())
    assert re.fullmatch(r"@@ -\d+,\d+ \+\d+,\d+ @@", first["hunk"])
    assert first["description"] == (f"patch 2/3, monitor/monitor.c hunk {first['hunk']}, "
                                    f"added line `{build.UNPLUG_HASH_LINE.strip()}`")
    assert falsified["witness"]["a"]["event"] == "DEVICE_UNPLUG_GUEST_ERROR"
    assert "device" not in falsified["witness"]["a"]["data"]
    assert falsified["replay"]["confirmed"] is True
    # Patch 3 changes only the schema's documentation: still falsified, by patch 2's line.
    (still,) = [f for f in patches[2]["diff"]["findings"] if f["kind"] == STILL_FALSIFIED]
    assert still["where"][0]["patch"] == "patch 2/3"
    (bisect,) = report["bisectability"]
    assert bisect["kind"] == BISECT and bisect["summary"].startswith("patch 2/3 leaves")
    assert report["series_diff"]["invariants"]["7"] == {"old": "PROVED", "new": "FALSIFIED"}


@pytest.mark.real_qemu
def test_lint_reports_what_each_patch_introduces_or_changes(
        three_json: Tuple[int, Dict[str, Any]]) -> None:
    """QEMU 10.0.x has global-throttle warnings of its own (RTC_CHANGE, QUORUM_FAILURE):
    none is reported. Patch 1 introduces one for DEVICE_UNPLUG_GUEST_ERROR, at its
    rate-table line; patch 2 resolves it and introduces optional-key."""
    _, report = three_json
    lint = [[" ".join(f["summary"].split()[:4]) for f in p["diff"]["findings"]
             if f["kind"] == "LINT"] for p in report["patches"]]
    assert lint == [["lint (new, global-throttle): DEVICE_UNPLUG_GUEST_ERROR"],
                    ["lint (new, optional-key): DEVICE_UNPLUG_GUEST_ERROR",
                     "lint (resolved, global-throttle): DEVICE_UNPLUG_GUEST_ERROR"], []]
    new = next(f for f in report["patches"][0]["diff"]["findings"] if f["kind"] == "LINT")
    assert new["where"][0]["patch"] == "patch 1/3"
    assert new["where"][0]["text"].strip() == build.UNPLUG_RATE.strip()


# ------------------------------------------------------------------ the 5-patch series

@pytest.mark.real_qemu
def test_an_intermediate_falsified_patch_is_a_bisectability_finding(
        five: Tuple[build.Repository, Path], five_run: ReviewRun) -> None:
    """3/5 breaks invariant 4 (a stop event is throttled) and with it 5 (the reports of
    its disk, no longer throttled, go out within the stop event's window), 5/5 repairs
    both: exit 0 (the last patch's), and the review says that a bisection can land on a
    broken throttle."""
    assert [p.code for p in five_run.patches] == [0, 0, 1, 1, 0]
    assert five_run.method == "git apply" and five[0].git("status", "--porcelain") == ""
    assert five_run.code == 0
    assert [b.invariant for b in five_run.bisect] == [4, 5]
    assert all(b.summary.startswith("patch 3/5 leaves") and "patch 5/5 repairs it" in b.summary
               for b in five_run.bisect)
    assert any(loc.text == build.BROKEN_ACTION for loc in five_run.bisect[0].where)
    assert five_run.whole is not None and five_run.whole.code == 0
    text = "\n".join(review_text(five_run))
    assert "patch 3/5: monitor: move the BLOCK_IO_ERROR stop exemption into a helper" in text
    assert "verdict: exit 1, FALSIFIED: invariant 4" in text
    assert text.count("verdict: exit 0, holds") == 3
    assert "exit 0: the last tree's verdict (patch 5/5)" in text
    assert "(intermediate FALSIFIED: see bisectability)" in text


@pytest.mark.real_qemu
def test_review_html_has_a_section_per_patch(five_run: ReviewRun, tmp_path: Path) -> None:
    """--html: one page, a row and a section per patch (the broken one says so), then
    the series as a whole; self-contained (the browser tests of tests/test_html.py
    check how such sections render)."""
    path = tmp_path / "review.html"
    html.write(path, review_html(five_run))
    page = path.read_text(encoding="utf-8")
    for anchor in ("patch-1", "patch-3", "patch-5", "series"):
        assert f'id="{anchor}"' in page, anchor
    assert "exit 1: FALSIFIED: invariant 4" in page  # patch 3/5's section
    assert "bisectability: patch 3/5" in page and "patch 5/5 repairs it" in page
    assert "exit 0: the last tree&#x27;s verdict" in page or "exit 0: the last tree's" in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.real_qemu
def test_the_email_is_a_list_reply_to_the_falsified_patch(five_run: ReviewRun) -> None:
    """--format email: an mbox of replies; the one to 3/5 threads under it, quotes the
    offending hunk lines, then the finding, the witness as QMP JSON, the timeline and the
    command that reproduces it."""
    text = "\n".join(review_email(five_run)) + "\n"
    path = Path(tempfile.mkdtemp()) / "replies.mbox"
    try:
        path.write_text(text)
        box = mailbox.mbox(str(path))
        replies = [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
                   for key in box.iterkeys()]
        box.close()
    finally:
        path.unlink()
        path.parent.rmdir()
    assert [str(r["subject"]) for r in replies] == [
        "Re: [PATCH 0/5] monitor: tidy the stop exemption",
        "Re: [PATCH 3/5] monitor: move the BLOCK_IO_ERROR stop exemption into a helper"], text
    patch3 = next(p.patch for p in five_run.patches if p.patch.number == 3)
    reply = replies[1]
    assert reply["In-Reply-To"] == patch3.mail.message_id
    body = reply.get_content()
    assert body.startswith(f"On {patch3.mail.date}, {build.AUTHOR} wrote:\n> diff --git")
    quoted = body.index(f"> +{build.BROKEN_ACTION}")
    finding = body.index("This breaks an invariant of the event throttle: invariant 4")
    witness = body.index("Witness event(s), as QMP JSON:")
    timeline = body.index("The shortest timeline")
    reproduce = body.index("To reproduce:")
    assert quoted < finding < witness < timeline < reproduce
    qmp = json.loads(body[witness:].splitlines()[2])
    assert qmp["event"] == "BLOCK_IO_ERROR" and qmp["data"]["action"] == "stop"
    assert "#2 t=0 ns: queue BLOCK_IO_ERROR" in body[timeline:]
    assert five_run.reproduce in body[reproduce:]
    summary = replies[0].get_content()
    assert "patch 3/5: FALSIFIED: invariant 4" in summary and "Bisectability:" in summary
    markdown = "\n".join(review_markdown(five_run))
    assert "| patch 3/5: monitor: move the BLOCK_IO_ERROR stop exemption into a helper | " \
        "FALSIFIED: invariant 4, 5 |" in markdown


# ------------------------------------------------------------------ UNKNOWN

@pytest.mark.real_qemu
def test_unknown_names_the_construct_and_the_patch_line(
        qemu_tree_100: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A loop in the hash: review and diff say UNKNOWN (exit 3), with the construct and the
    patch's added line, never a pass. The review runs in the checkout, without --git."""
    repository = build.base_repository(qemu_tree_100, tmp_path / "qemu")
    build.unsupported_construct(repository)
    patch = tmp_path / "0001-loop.patch"
    patch.write_text(repository.format_patch("base"))
    tree = build.export(repository, "base", tmp_path / "base")
    monkeypatch.chdir(repository.path)  # no --tree, no --git: this checkout, at --base
    code, report = _review_json(patch, "--base", "base")
    assert report["base"] == {"name": f"base ({repository.git('rev-parse', 'base')[:12]}) "
                                      f"in {repository.path}", "method": "git apply"}
    build.validate_report(report)
    assert code == report["exit_code"] == 3
    unknown = [f for f in report["patches"][0]["diff"]["findings"]
               if f["kind"] == UNKNOWN_FINDING]
    assert unknown and all("for loop" in f["construct"] for f in unknown)
    where = unknown[0]["where"][0]
    assert (where["patch"], where["kind"], where["text"]) == (
        "patch 1/1", "added line", build.UNSUPPORTED_LINE)
    assert main(["diff", str(tree), str(patch), "--seed", SEED, "--timelines", "0"]) == 3
    out = capsys.readouterr().out
    assert "unsupported C construct: a for loop" in out and "PROVED -> UNKNOWN" in out
    assert f"at patch 1/1, monitor/monitor.c hunk {where['hunk']}, added line " \
           f"`{build.UNSUPPORTED_LINE.strip()}`" in out
    # The same as a reply to the patch's mail.
    assert main(["diff", str(tree), str(patch), "--seed", SEED, "--timelines", "0",
                 "--format", "email"]) == 3
    reply = capsys.readouterr().out
    assert "\nSubject: Re: [PATCH] monitor: mix a loop into the throttle hash\n" in reply
    assert f"\n> +{build.UNSUPPORTED_LINE}\n" in reply
    assert "qthrottle cannot decide this (UNKNOWN, never a pass)" in reply


# ------------------------------------------------------------------ bad input

def _bad_inputs(repository: build.Repository, where: Path) -> Dict[str, List[str]]:
    where.mkdir()
    text = where / "notes.txt"
    text.write_text("Just some notes, no patch here.\n")
    documentation = build.base_repository(Path(repository.path), where / "docs-repo")
    build.documentation_only(documentation)
    docs = where / "docs.patch"
    docs.write_text(documentation.format_patch("base"))
    last = where / "0005-only.patch"
    last.write_text(repository.format_patch("HEAD~1"))  # needs patches 1-4 first
    git = ["--git", str(repository.path)]
    return {"not an mbox or a patch": ["review", str(text), *git],
            "no patch changes throttle code": ["review", str(docs), *git],
            "does not apply": ["review", str(last), *git, "--base", "base"],
            "unknown revision": ["review", str(last), *git, "--base", "v99.0"],
            "unknown revision in diff": ["diff", *git, "base", "no-such-tag"]}


@pytest.mark.real_qemu
def test_bad_input_is_one_error_line_and_leaves_nothing_behind(
        five: Tuple[build.Repository, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    repository, _ = five
    cases = _bad_inputs(repository, tmp_path / "inputs")
    work, scratch = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    expected = {"not an mbox or a patch": "not an mbox, a mail or a patch",
                "no patch changes throttle code": "no patch of the series changes throttle code",
                "does not apply": "patch 1/1 (monitor: exempt stop events, not report events)"
                                  " does not apply to base",
                "unknown revision": "v99.0: unknown revision",
                "unknown revision in diff": "no-such-tag: unknown revision"}
    for case, argv in cases.items():
        assert main(argv) == 2, case
        captured = capsys.readouterr()
        (line,) = captured.err.splitlines()
        assert line.startswith("qthrottle: error: ") and expected[case] in line, (case, line)
        assert captured.out == ""
        assert list(work.iterdir()) == [] and list(scratch.iterdir()) == [], case
    assert repository.git("status", "--porcelain") == ""
