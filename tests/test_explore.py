"""qthrottle explore: one counterexample format from z3 and from the stateful engine,
replayed on the C and the model, and a standalone pytest that fails on the bug only."""
from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from qthrottle.cases import SCHEMA_DIR
from qthrottle.cli import main
from qthrottle.harness.target import resolve

SEED = "20261125"


def explore(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["explore", *args, "--seed", SEED])
    return code, capsys.readouterr().out


def reproducers(out: str) -> List[Path]:
    return [Path(p) for p in re.findall(r"reproducer: (\S+\.py) ", out)]


def run_pytest(path: Path, cwd: Path, target: str) -> subprocess.CompletedProcess[str]:
    """The reproducer as a user runs it: its own pytest, from another directory."""
    env = {**os.environ, "QTHROTTLE_TARGET": target}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)


def reproducer_test(path: Path, monkeypatch: pytest.MonkeyPatch,
                    target: str = "") -> Callable[[], None]:
    """The reproducer's test function, loaded in this process (cheaper than a pytest run)."""
    if target:
        monkeypatch.setenv("QTHROTTLE_TARGET", target)
    else:
        monkeypatch.delenv("QTHROTTLE_TARGET", raising=False)
    namespace: Dict[str, Any] = runpy.run_path(str(path))
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) == 1
    test: Callable[[], None] = tests[0]
    return test


def test_z3_counterexample_becomes_a_reproducer_failing_on_the_bug_passing_on_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "repro"
    code, out = explore(capsys, "stop-irreflexive", "--invariant", "1",
                        "--output", str(output))
    assert code == 1
    assert f"seed {SEED}" in out and "solver timeout" in out and "profile quick" in out
    assert re.search(r"1 +equality is reflexive.* FALSIFIED \(z3\)", out)
    assert re.search(r"2 +equal keys hash equally +-  \(not explored\)", out)
    assert "invariant 1 FALSIFIED by z3, reflexive" in out
    assert re.search(r"#1 t=0 ns: compare keys .*\n +\^ invariant 1: equal\(a, a\) is false", out)
    [path] = reproducers(out)
    assert path == output / "test_stop_irreflexive_invariant_1.py"
    first = path.read_text().splitlines()[0]
    assert re.match(rf'"""qthrottle \d+\.\d+\.\d+\S* explore stop-irreflexive: invariant 1, '
                    rf"engine z3 \(reflexive\), seed {SEED}\.", first)
    with pytest.raises(pytest.fail.Exception, match=r"equal\(a, a\) is false"):
        reproducer_test(path, monkeypatch)()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fixed = run_pytest(path, elsewhere, "stop-bypass")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "1 passed" in fixed.stdout


def test_stateful_counterexample_shares_the_format(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The merged fix with the timer handler's release of the key data taken out: a
    # reference leak, invariant 8, which only the stateful engine looks for.
    source = resolve("stop-bypass").monitor_c.read_text()
    release = "        qobject_unref(rec->data);\n        timer_free(rec->timer);\n"
    assert release in source
    leaky = tmp_path / "leaky" / "monitor.c"
    leaky.parent.mkdir()
    leaky.write_text(source.replace(release, "        timer_free(rec->timer);\n"))
    code, out = explore(capsys, str(leaky), "--qapi-dir", str(SCHEMA_DIR), "--invariant", "8",
                        "--output", str(tmp_path / "repro"))
    assert code == 1
    assert "invariant 8 FALSIFIED by stateful: reference leak" in out
    assert re.search(r"\| C: .*\(table \d\)  \| model: .*\(table \d\)", out)
    assert re.search(r"\n +\^ invariant 8: reference leak", out)
    qmp = [json.loads(line) for line in re.findall(r"^ +(\{\"event\".*)$", out, re.M)]
    assert qmp and all(set(m) <= {"event", "data", "timestamp"} and
                       set(m["timestamp"]) == {"seconds", "microseconds"} for m in qmp)
    [path] = reproducers(out)
    assert path.name == "test_monitor_invariant_8.py"
    assert ", engine stateful, seed" in path.read_text().splitlines()[0]
    with pytest.raises(pytest.fail.Exception, match="reference leak"):
        reproducer_test(path, monkeypatch)()
    reproducer_test(path, monkeypatch, "stop-bypass")()


def test_totality_counterexample_replays_with_the_shim_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    code, out = explore(capsys, "optional-key", "--invariant", "7",
                        "--output", str(tmp_path))
    assert code == 1
    assert "invariant 7 FALSIFIED by z3, totality:hash" in out
    assert re.search(r"sanitizer / shim report:\n.*missing-member", out)
    [path] = reproducers(out)
    with pytest.raises(pytest.fail.Exception, match="missing-member"):
        reproducer_test(path, monkeypatch)()
    reproducer_test(path, monkeypatch, "stop-bypass")()


def test_nothing_falsified_exits_0_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = explore(capsys, "stop-bypass", "--invariant", "4",
                        "--output", str(tmp_path / "repro"))
    assert code == 0
    assert re.search(r"4 +BLOCK_IO_ERROR action=stop .* PROVED \(z3\)", out)
    assert "FALSIFIED" not in out and not (tmp_path / "repro").exists()


def test_unknown_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = resolve("stop-bypass").monitor_c.read_text()
    hang = "unsigned int hash = evstate->event * 255;"
    assert hang in source
    (tmp_path / "monitor.c").write_text(source.replace(hang, hang + " for (;;) {}", 1))
    code, out = explore(capsys, str(tmp_path / "monitor.c"), "--qapi-dir", str(SCHEMA_DIR),
                        "--invariant", "8", "--output", str(tmp_path / "repro"))
    assert code == 3
    assert re.search(r"8 +no memory error .* UNKNOWN", out)
    assert "UNKNOWN: stateful engine: the harness could not decide: timeout" in out
    # The loop also leaves the policy's keys underived: 5 is not judged on a guess.
    code, out = explore(capsys, str(tmp_path / "monitor.c"), "--qapi-dir", str(SCHEMA_DIR),
                        "--invariant", "5", "--output", str(tmp_path / "repro"))
    assert code == 3
    assert re.search(r"5 +throttled events .* UNKNOWN \(stateful engine: the key of the "
                     r"throttle policy is UNKNOWN \(.*a for loop", out)


def test_input_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "no-such-target"]) == 2
    assert capsys.readouterr().err.startswith("qthrottle: error: no-such-target")
    with pytest.raises(SystemExit) as exited:
        main(["explore", "stop-bypass", "--invariant", "9"])
    assert exited.value.code == 2
