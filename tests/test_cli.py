"""qthrottle verify as scripts and CI see it: exit codes, and output a developer can reuse."""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from qthrottle.cases import EXPECTED, SCHEMA_DIR
from qthrottle.cli import main
from qthrottle.cli import verify as verify_command
from qthrottle.harness.driver import Driver
from qthrottle.harness.target import resolve
from qthrottle.model.invariants import stop_not_delayed, trace_from_steps
from qthrottle.model.timeline import Advance, AdvanceToNext, Queue

SEED = "20261125"


def test_falsified_exits_1_with_a_timeline_that_replays(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "per-device", "--seed", SEED]) == 1
    out = capsys.readouterr().out
    assert f"seed {SEED}" in out and "profile quick" in out
    assert re.search(r"4 +BLOCK_IO_ERROR action=stop .* FALSIFIED", out)
    replay = re.search(r"replay \(qthrottle\.harness\.driver\.Driver\.run\): (.*)", out)
    assert replay is not None
    operations = eval(replay.group(1), {"Queue": Queue, "Advance": Advance,  # noqa: S307
                                        "AdvanceToNext": AdvanceToNext})
    with Driver(resolve("per-device").build().binary) as driver:
        run = driver.run(operations)
    assert stop_not_delayed(trace_from_steps(run.steps))


def test_the_bundled_demo_proves_in_workers_while_the_searches_run(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`./dev verify`: every case gets the verdict it is meant to get; the proofs of the
    cases went to worker processes (README)."""
    submitted: List[str] = []
    pool_of = verify_command.worker_pool

    @contextmanager
    def recording(jobs: int) -> Iterator[Any]:
        with pool_of(jobs) as pool:
            submit = pool.submit

            def recorded(function: Any, *args: Any, **kwargs: Any) -> Any:
                submitted.append(f"{function.__name__} {args[0].name}")
                return submit(function, *args, **kwargs)

            monkeypatch.setattr(pool, "submit", recorded)
            yield pool

    monkeypatch.setattr(verify_command, "worker_pool", recording)
    assert main(["verify", "--seed", SEED]) == 0
    out = capsys.readouterr().out
    assert out.count("-> as expected") == len(EXPECTED)
    assert submitted == [f"prove_target {name}" for name in EXPECTED]


def test_holds_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "stop-bypass", "--seed", SEED]) == 0
    out = capsys.readouterr().out
    assert "FALSIFIED" not in out and out.count("PASS") == 8


def test_unknown_is_never_a_pass_and_exits_3(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = resolve("stop-bypass").monitor_c.read_text()
    hang = "unsigned int hash = evstate->event * 255;"
    assert hang in source
    (tmp_path / "monitor.c").write_text(source.replace(hang, hang + " for (;;) {}", 1))
    code = main(["verify", str(tmp_path / "monitor.c"), "--qapi-dir", str(SCHEMA_DIR),
                 "--seed", SEED])
    out = capsys.readouterr().out
    assert code == 3
    assert "PASS" not in out and "UNKNOWN: the harness could not decide: timeout" in out


def test_missing_schema_is_an_input_error(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "monitor.c").write_text(resolve("stop-bypass").monitor_c.read_text())
    assert main(["verify", str(tmp_path / "monitor.c")]) == 2
    assert "pass --qapi-dir" in capsys.readouterr().err
