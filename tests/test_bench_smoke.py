"""The libFuzzer target of bench/engines_bench.py: it builds, decodes its input, finds a crash.

Not a benchmark: this only keeps harness/shims/fuzz_entry.c from rotting. It skips
with the reason when clang or its libFuzzer runtime is missing, and fails under
CI=true, where ./dev installs clang.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from qthrottle.harness.build import FuzzerUnavailable, build_fuzzer
from qthrottle.harness.driver import SANITIZER_ENV
from qthrottle.harness.target import resolve
from qthrottle.model.timeline import Advance, AdvanceToNext, Queue

DISK0 = {"qom-path": "/machine/peripheral/disk0", "device": "disk0", "operation": "read",
         "reason": "r"}
STOP = Queue("BLOCK_IO_ERROR", {**DISK0, "action": "stop"})
REPORT = Queue("BLOCK_IO_ERROR", {**DISK0, "action": "report"})
SECOND = Advance(1_000_000_000)
ALPHABET = [STOP, REPORT, SECOND]  # an input byte picks ALPHABET[byte % 3]

Fuzzer = Tuple[Path, Dict[str, str]]


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Fuzzer:
    """stop-irreflexive's libFuzzer target, and the environment that gives it ALPHABET."""
    target = resolve("stop-irreflexive")
    try:
        binary = build_fuzzer(target.extract(), target.schema_events()).binary
    except FuzzerUnavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{error} (CI must build the libFuzzer target)", pytrace=False)
        pytest.skip(str(error))
    commands = tmp_path_factory.mktemp("fuzz") / "commands.json"
    commands.write_text(json.dumps([op.to_json() for op in ALPHABET]))
    return binary, {**os.environ, **SANITIZER_ENV, "QTHROTTLE_FUZZ_COMMANDS": str(commands)}


def _echoed(binary: Path, env: Dict[str, str], data: bytes, tmp_path: Path,
            *flags: str) -> Tuple[List[Dict[str, Any]], subprocess.CompletedProcess[str]]:
    """Run one input with every command echoed; the commands, in order, and the run."""
    path = tmp_path / "input"
    path.write_bytes(data)
    run = subprocess.run([str(binary), *flags, str(path)], capture_output=True, text=True,
                         env={**env, "QTHROTTLE_FUZZ_ECHO": "1"}, timeout=60, check=False)
    prefix = "fuzz_entry: "
    return [json.loads(line[len(prefix):]) for line in run.stderr.splitlines()
            if line.startswith(prefix + "{")], run


def test_each_input_is_a_timeline_then_the_clock_runs_out(fuzzer: Fuzzer,
                                                          tmp_path: Path) -> None:
    # 4 % 3 == 1: REPORT. Run repeatedly, each run starting again from a fresh table and clock.
    commands, run = _echoed(*fuzzer, bytes([4]), tmp_path, "-runs=2")
    assert run.returncode == 0, run.stderr[-2000:]
    # The record's window ends with nothing held back: one timer firing releases it.
    one_run = [REPORT.to_json(), AdvanceToNext().to_json()]
    assert len(commands) >= 2 * len(one_run)
    assert commands == one_run * (len(commands) // len(one_run))


def test_the_freed_record_is_read_on_the_next_lookup(fuzzer: Fuzzer, tmp_path: Path) -> None:
    # stop, 1 s later its timer frees the record it could not remove, report looks it up.
    commands, run = _echoed(*fuzzer, bytes([0, 5, 1]), tmp_path)
    assert commands == [STOP.to_json(), SECOND.to_json(), REPORT.to_json()]
    assert run.returncode != 0
    assert "ERROR: AddressSanitizer: heap-use-after-free" in run.stderr


def test_libfuzzer_finds_the_use_after_free(fuzzer: Fuzzer, tmp_path: Path) -> None:
    binary, env = fuzzer
    run = subprocess.run([str(binary), "-seed=1", "-max_total_time=15", "-detect_leaks=0",
                          f"-artifact_prefix={tmp_path}/"], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert "ERROR: AddressSanitizer: heap-use-after-free" in run.stderr, run.stderr[-2000:]
    assert list(tmp_path.glob("crash-*")), "libFuzzer saved no crashing input"
