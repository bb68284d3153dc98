"""The end-to-end engine: the reference model against a real qemu-system binary under qtest.

Tests that need the binary use the `qemu_build` fixture: they skip locally until
`qthrottle fetch-qemu --build` has run, and fail under CI=true.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Iterator, List

import pytest

from qthrottle.cli import main, parser
from qthrottle.cli.e2e import _source_of
from qthrottle.engines.bounds import Profile
from qthrottle.engines.e2e import (
    Drain,
    Run,
    Side,
    StepRecord,
    Subject,
    format_transcript,
    open_subject,
    realize,
    report_lines,
    search,
)
from qthrottle.harness import qemu_build
from qthrottle.harness.qemu_build import QemuBuild, build_key, cached_build, recipe_digest
from qthrottle.harness.qemu_machine import (
    RTC_OFFSETS,
    DiskIo,
    Machine,
    QuorumRead,
    RtcSet,
    find_libfaketime,
)
from qthrottle.harness.qemu_process import QemuError, QemuProcess, QemuTimeout
from qthrottle.harness.target import resolve
from qthrottle.model.members import g_str_hash
from qthrottle.model.timeline import Advance, Emission, Queue
from qthrottle.review.target_policy import target_policy

SEED = 20260315
UNIVERSE_PATHS = ["/machine/peripheral/disk0", "/machine/peripheral/disk1",
                  "/machine/peripheral/diskbZ", "/machine/peripheral/diskc9"]
UNIVERSE_NODES = ["node0", "node1", "node-name-bZ", "node-name-c9"]


def _under_ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def subject(qemu_build: QemuBuild) -> Iterator[Subject]:
    target = resolve(str(qemu_build.tree))
    with open_subject(qemu_build.binary, target, 12, target_policy(target).policy) as opened:
        yield opened


def _qemu_children() -> List[int]:
    """QEMU processes whose parent is this one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"qemu-system" in command:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # dead, waiting for init to reap it


# ------------------------------------------------------------- against QEMU


def test_qemu_harness_and_model_agree_exactly(subject: Subject) -> None:
    """Acceptance: N timelines, zero mismatches, every event kind and action exercised."""
    result = search(subject, Profile("e2e", runs=40, steps=12), SEED)
    assert result.undecided is None, result.undecided
    assert result.mismatch is None, "\n".join(report_lines(result.mismatch))
    assert result.runs == 40
    coverage = result.coverage
    kinds = {"BLOCK_IO_ERROR action=report", "BLOCK_IO_ERROR action=ignore",
             "BLOCK_IO_ERROR action=stop", "QUORUM_REPORT_BAD", "STOP", "RESUME"}
    assert kinds <= set(coverage.queued), coverage.lines()
    assert coverage.keys["BLOCK_IO_ERROR"] == set(UNIVERSE_PATHS)
    assert g_str_hash(UNIVERSE_PATHS[2]) == g_str_hash(UNIVERSE_PATHS[3])  # in QEMU's table too
    assert coverage.queued["RESUME"] == coverage.queued["BLOCK_IO_ERROR action=stop"]  # cont
    # Delayed emissions happened, at the throttle's own deadlines (compared to the ns).
    assert sum(coverage.by_timer.values()) > 0
    assert coverage.stops_in_window > 0  # invariant 4's situation, on the real binary


def test_rtc_change_offsets_are_exact_with_a_frozen_host_clock(subject: Subject) -> None:
    if find_libfaketime() is None:
        if _under_ci():
            pytest.fail("libfaketime missing (./dev installs it): CI must cover RTC_CHANGE",
                        pytrace=False)
        pytest.skip("libfaketime not installed (apt-get install libfaketime): RTC_CHANGE "
                    "is left out of the timelines")
    assert "RTC_CHANGE" in subject.kinds
    result = search(subject, Profile("e2e", runs=15, steps=12), SEED + 1)
    assert result.mismatch is None and result.undecided is None
    assert result.coverage.queued["RTC_CHANGE"] > 0
    assert result.coverage.by_timer["RTC_CHANGE"] > 0


def test_same_seed_same_events_and_times(subject: Subject) -> None:
    first = search(subject, Profile("e2e", runs=12, steps=12), SEED)
    again = search(subject, Profile("e2e", runs=12, steps=12), SEED)
    other = search(subject, Profile("e2e", runs=12, steps=12), SEED + 7)
    assert first.events and first.events == again.events
    assert first.events != other.events  # the comparison can fail


def test_seeded_wrong_model_rate_is_caught_with_a_readable_transcript(
        qemu_build: QemuBuild) -> None:
    """A model 1 ns off the real rate: QEMU and the harness agree, the model is blamed."""
    target = resolve(str(qemu_build.tree))
    true = target_policy(target).policy
    wrong = dataclasses.replace(true, rates={**true.rates,
                                             "QUORUM_REPORT_BAD": 1_000_000_000 - 1})
    with open_subject(qemu_build.binary, target, 12, wrong) as seeded:
        result = search(seeded, Profile("e2e", runs=40, steps=12), SEED)
    assert result.mismatch is not None
    run = result.mismatch
    assert run.mismatch is not None
    record = run.records[run.mismatch]
    assert "QEMU and the harness driver agree, the model differs" in record.verdict()
    text = "\n".join(report_lines(run))
    assert "1 s - 1 ns" in text  # the model's deadline, printed exactly
    assert "-accel qtest" in text and "clock_step" in text and "QUORUM_REPORT_BAD" in text
    assert len(run.records) <= 4, text  # shrunk: one read, then the timers


def test_a_binary_of_another_monitor_c_is_blamed_on_qemu(
        qemu_build: QemuBuild, qemu_tree_72: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The 10.0.x binary against QEMU 7.2's monitor.c (BLOCK_IO_ERROR unthrottled there):
    the harness and the model agree with each other, QEMU is the side that differs (exit 1)."""
    assert main(["e2e", "--tree", str(qemu_tree_72), "--runs", "40", "--seed", str(SEED)]) == 1
    out = capsys.readouterr().out
    assert "FALSIFIED: QEMU, the harness driver and the model disagree" in out
    assert "the harness driver and the model agree, QEMU differs" in out
    assert "QEMU command line" in out and "qtest/QMP transcript" in out
    assert "BLOCK_IO_ERROR" in out


def test_a_qemu_that_cannot_be_driven_is_unknown(
        qemu_build: QemuBuild, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """QEMU runs for the first start and then no more: exit 3, never a pass."""
    count = tmp_path / "starts"
    wrapper = tmp_path / "qemu-system-x86_64"
    wrapper.write_text(f"#!/bin/sh\nn=$(cat {count} 2>/dev/null || echo 0)\n"
                       f"echo $((n + 1)) > {count}\n"
                       f"[ \"$n\" -ge 3 ] && {{ echo 'gone' >&2; exit 1; }}\n"
                       f"exec {qemu_build.binary} \"$@\"\n")
    wrapper.chmod(0o755)
    code = main(["e2e", "--qemu", str(wrapper), "--tree", str(qemu_build.tree), "--runs", "10",
                 "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 3, out
    assert "UNKNOWN: after 2 timelines" in out and "QEMU exited with status 1" in out


def test_without_libfaketime_rtc_change_is_left_out_and_said(
        qemu_build: QemuBuild, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("qthrottle.engines.e2e.find_libfaketime", lambda: None)
    assert main(["e2e", "--runs", "3", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "RTC_CHANGE left out: libfaketime not found" in out
    assert "RTC_CHANGE  " not in out  # nothing of it in the coverage


def test_no_qemu_outlives_a_search(subject: Subject) -> None:
    result = search(subject, Profile("e2e", runs=5, steps=12), SEED)
    assert result.runs == 5
    assert _qemu_children() == []


def test_qemu_dies_when_python_is_killed(qemu_build: QemuBuild) -> None:
    """SIGKILL to the Python side: the kernel kills QEMU (PR_SET_PDEATHSIG)."""
    script = ("import sys, time; from pathlib import Path\n"
              "from qthrottle.harness.qemu_process import QemuProcess\n"
              "q = QemuProcess(Path(sys.argv[1]), ['-machine', 'none', '-accel', 'qtest',"
              " '-nodefaults', '-display', 'none'])\n"
              "print(q.pid, flush=True); time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(qemu_build.binary)],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    qemu = int(parent.stdout.readline())
    assert not _gone(qemu)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while not _gone(qemu) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(qemu), f"QEMU {qemu} outlived the Python process that started it"


def test_a_hung_qemu_times_out_and_is_killed(qemu_build: QemuBuild) -> None:
    qemu = QemuProcess(qemu_build.binary, ["-machine", "none", "-accel", "qtest",
                                           "-nodefaults", "-display", "none"], timeout=0.5)
    try:
        os.kill(qemu.pid, signal.SIGSTOP)
        with pytest.raises(QemuTimeout):
            qemu.qtest("clock_step 1")
        assert qemu.process.poll() is not None
    finally:
        qemu.close()
    assert _gone(qemu.pid)


def test_a_dead_qemu_is_reported_with_how_it_died(qemu_build: QemuBuild) -> None:
    with QemuProcess(qemu_build.binary, ["-machine", "none", "-accel", "qtest",
                                         "-nodefaults", "-display", "none"]) as qemu:
        os.kill(qemu.pid, signal.SIGKILL)
        with pytest.raises(QemuError, match="killed by signal 9"):
            qemu.qtest("clock_step 1")


def test_cli_e2e_on_the_built_qemu(qemu_build: QemuBuild,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["e2e", "--runs", "3", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert f"QEMU {qemu_build.version}" in out
    assert "PASS: 3 timelines, 0 mismatches" in out
    assert "rerun with --seed 5" in out


# ---------------------------------------------------------- without QEMU


def _machine() -> Machine:
    return Machine.create(UNIVERSE_PATHS, UNIVERSE_NODES, 4)


def test_generated_events_become_what_a_guest_can_do() -> None:
    machine = _machine()
    stop = realize(machine, Queue("BLOCK_IO_ERROR", {"qom-path": UNIVERSE_PATHS[0],
                                                     "action": "stop"}))
    assert stop == DiskIo(machine.disks[0], "write")
    queued = machine.queued(stop, "/rtc")
    assert [op.event for op in queued] == ["BLOCK_IO_ERROR", "STOP", "RESUME"]
    assert queued[0].data is not None and queued[0].data["action"] == "stop"
    assert queued[0].data["nospace"] is False  # iostatus is on for a disk that can stop
    for action in ("report", "ignore", "stop"):  # each on two disks at least
        assert sum(action in (d.werror, d.rerror) for d in machine.disks) >= 2, action
    ignore = realize(machine, Queue("BLOCK_IO_ERROR", {"qom-path": UNIVERSE_PATHS[3],
                                                       "action": "ignore"}))
    ignored = machine.queued(ignore, "/rtc")[0].data
    assert ignored is not None and "nospace" not in ignored
    assert realize(machine, Queue("RTC_CHANGE", {"offset": 4096})) == RtcSet(4096)
    # The schema's offset is any int64; the guest's CMOS clock holds 1970 to 2099.
    assert realize(machine, Queue("RTC_CHANGE", {"offset": -1})) == RtcSet(-1)
    for offset in (-2**63, 2**63 - 1, RTC_OFFSETS[1] + 1):
        folded = realize(machine, Queue("RTC_CHANGE", {"offset": offset}))
        assert isinstance(folded, RtcSet) and RTC_OFFSETS[0] <= folded.offset <= RTC_OFFSETS[1]
        assert folded.describe()[-19:-15] in {str(year) for year in range(1970, 2100)}
    bad = realize(machine, Queue("QUORUM_REPORT_BAD", {"node-name": "node1"}))
    assert bad == QuorumRead("quorum0", "node1", 2)  # sector 0 stays readable


def test_machine_command_line_has_the_disks_and_no_other_virtual_timers() -> None:
    args = _machine().args(Path("/bios"))
    line = " ".join(args)
    assert "pit=off,hpet=off" in line and "apic-common.vapic=off" in line
    for disk_id, werror, rerror in (("disk0", "stop", "report"), ("diskc9", "ignore", "report")):
        assert f"id={disk_id}," in line and f"werror={werror},rerror={rerror}" in line
    blockdevs = [json.loads(args[i + 1]) for i, arg in enumerate(args) if arg == "-blockdev"]
    quorum = next(b for b in blockdevs if b["driver"] == "quorum")
    assert quorum["children"] == [*UNIVERSE_NODES, "quorum0-good"]
    child = next(b for b in blockdevs if b["node-name"] == "node0")
    assert child["file"]["inject-error"] == [{"event": "read_aio", "iotype": "read", "sector": 1}]


def _record(qemu: List[Emission], harness: List[Emission], model: List[Emission]) -> StepRecord:
    return StepRecord(Advance(1), 0, 1, (), Side(tuple(qemu)), Side(tuple(harness)),
                      Side(tuple(model)))


def test_verdict_says_which_side_differs() -> None:
    a, b = [Emission(1, "RTC_CHANGE", {"offset": 0})], []
    assert "the model differs" in _record(a, a, b).verdict()
    assert "QEMU differs" in _record(b, a, a).verdict()
    assert "the harness driver differs" in _record(a, b, a).verdict()
    assert _record(a, a, a).agree


def test_transcript_folds_repeated_lines() -> None:
    transcript = [("qtest>", "outw 0x1f0 0x0")] * 256 + [("qtest<", "OK")] * 256
    run = Run([StepRecord(Drain(), 0, 0, (), Side(), Side(), Side(), transcript=(0, 512))],
              [], {}, transcript)
    lines = format_transcript(run)
    assert "qtest> outw 0x1f0 0x0   (x256)" in "\n".join(lines)
    assert len(lines) == 4


def test_build_key_hashes_the_source_and_the_recipe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dsc = tmp_path / "qemu_10.0.13.dsc"
    dsc.write_text("Version: 1:10.0.13\nChecksums-Sha256:\n abc 1 qemu.orig.tar.xz\n")
    first = build_key(dsc)
    monkeypatch.setattr(qemu_build, "RECIPE_VERSION", qemu_build.RECIPE_VERSION + 1)
    assert build_key(dsc) != first
    monkeypatch.undo()
    dsc.write_text("Version: 1:10.0.13\nChecksums-Sha256:\n abd 1 qemu.orig.tar.xz\n")
    assert build_key(dsc) != first and len(first) == 16
    assert {"--target-list=x86_64-softmmu", "--disable-tcg",
            "--without-default-features"} <= set(qemu_build.CONFIGURE_ARGS)


def test_meson_comes_from_the_e2e_extra() -> None:
    assert any(r.startswith("meson") and ">=1.5" in r and 'extra == "e2e"' in r
               for r in metadata.requires("qthrottle") or [])


def test_cached_build_ignores_half_written_and_foreign_entries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path))
    root = tmp_path / "qemu-build"
    for name, digest, complete in ((".tmp-build-x", recipe_digest(), True),
                                   ("0123", "another recipe", True),
                                   ("4567", recipe_digest(), False)):
        entry = root / name
        (entry / "monitor").mkdir(parents=True)
        (entry / "qapi").mkdir()
        (entry / "BUILD.json").write_text(json.dumps({"recipe_digest": digest}))
        if complete:
            (entry / "qemu-system-x86_64").write_text("")
    assert cached_build() is None
    (root / "4567" / "qemu-system-x86_64").write_text("")
    found = cached_build()
    assert found is not None and found.root == root / "4567"


def test_cli_without_a_build_says_how_to_get_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path))
    assert parser().parse_args(["e2e"]).runs == 100  # the README's default
    assert main(["e2e"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["qthrottle: error: no qtest-capable QEMU built yet: run `qthrottle "
                   "fetch-qemu --build` (minutes, once), or pass --qemu BINARY"]
    binary = tmp_path / "qemu-system-x86_64"
    binary.write_text("")
    assert main(["e2e", "--qemu", str(binary)]) == 2
    assert "pass --tree DIR" in capsys.readouterr().err
    assert main(["e2e", "--qemu", str(tmp_path / "absent")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_a_build_directory_names_its_source(tmp_path: Path) -> None:
    tree = tmp_path / "qemu"
    (tree / "monitor").mkdir(parents=True)
    (tree / "monitor" / "monitor.c").write_text("")
    (tree / "qapi").mkdir()
    (tree / "qapi" / "qapi-schema.json").write_text("")
    build = tree / "build"
    (build / "meson-info").mkdir(parents=True)
    (build / "meson-info" / "meson-info.json").write_text(
        json.dumps({"directories": {"source": str(tree), "build": str(build)}}))
    assert _source_of(build / "qemu-system-x86_64") == tree
    assert _source_of(tmp_path / "qemu-system-x86_64") is None


def test_cached_build_is_none_in_an_empty_cache(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path))
    assert cached_build() is None
