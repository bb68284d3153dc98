"""CrossHair verifies the reference model (issue 5).

`qthrottle selfcheck` runs CrossHair on every contract of model/ (it must prove
each over all paths in the tiny world) and on every seeded bug (it must find a
counterexample for each). The model's key function has no condition: its keys are
tuples, whose equality and hash obey invariants 1 and 2 by construction.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from qthrottle import cli
from qthrottle.engines import selfcheck
from qthrottle.engines.seeded import SEEDED
from qthrottle.model import invariants as inv
from qthrottle.model.bounded import TINY_POLICY, TinyEvent
from qthrottle.model.throttle import Window
from qthrottle.model.timeline import Emission

Report = Dict[str, Any]


@pytest.fixture(scope="module")
def selfcheck_run() -> Tuple[int, Report]:
    """One real `qthrottle selfcheck --json` (CrossHair on model/ and on the seeded bugs)."""
    done = subprocess.run([sys.executable, "-m", "qthrottle", "selfcheck", "--json"],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode in (0, 1, 3), done.stderr
    report: Report = json.loads(done.stdout)
    return done.returncode, report


def test_crosshair_proves_every_contract_of_the_model(selfcheck_run: Tuple[int, Report]) -> None:
    code, report = selfcheck_run
    assert {r["target"] for r in report["model"]} == set(selfcheck.model_targets())
    assert len(report["model"]) >= 6  # queue, clock advance, timer expiry: two each
    not_proved = [(r["location"], r["status"], r["detail"]) for r in report["model"]
                  if r["status"] != selfcheck.PROVED]
    assert not_proved == []
    assert code == 0 and report["exit"] == 0


def test_crosshair_catches_every_seeded_bug(selfcheck_run: Tuple[int, Report]) -> None:
    _, report = selfcheck_run
    assert [s["name"] for s in report["seeded"]] == [bug.name for bug in SEEDED]
    for bug in report["seeded"]:
        found = [r for r in bug["results"] if r["status"] == "COUNTEREXAMPLE"]
        assert bug["caught"] and found, bug
        assert all(" when calling " in r["detail"] for r in found)


def test_report_maps_invariants_and_prints_its_bounds(selfcheck_run: Tuple[int, Report]) -> None:
    _, report = selfcheck_run
    table = report["by_invariant"]
    assert all(table[str(n)] for n in range(3, 7)), table
    # 1, 2: the model's keys are tuples (nothing to check); 7, 8: properties of the C
    assert all(table[str(n)] == [] for n in (1, 2, 7, 8)), table
    assert report["bounds"] and report["per_condition_timeout_s"] == selfcheck.DEFAULT_TIMEOUT_S
    assert all(r["timeout_s"] == selfcheck.DEFAULT_TIMEOUT_S for r in report["model"])


# ------------------------------------------------ exit codes, CrossHair failures

def _result(status: str, invariants: Tuple[int, ...] = (5,)) -> selfcheck.ConditionResult:
    condition = selfcheck.Condition("m.C.f", "/x/throttle.py", 1, "True", invariants)
    return selfcheck.ConditionResult(condition, status, "detail", 1.0, 60.0)


def _report(model: Tuple[str, ...], caught: bool = True) -> selfcheck.SelfcheckReport:
    seeded = selfcheck.SeededResult(
        "bug", 5, "what", (_result(selfcheck.COUNTEREXAMPLE if caught else selfcheck.PROVED),))
    return selfcheck.SelfcheckReport(60.0, tuple(map(_result, model)), (seeded,), 1.0, "0")


@pytest.mark.parametrize("model, caught, code", [
    ((selfcheck.PROVED, selfcheck.PROVED), True, 0),
    ((selfcheck.PROVED, selfcheck.BUDGET_EXHAUSTED), True, 3),
    ((selfcheck.COUNTEREXAMPLE, selfcheck.BUDGET_EXHAUSTED), True, 1),
    ((selfcheck.PROVED,), False, 1),  # the checker failed to fail
    ((selfcheck.BUDGET_EXHAUSTED,), False, 1),
])
def test_cli_exit_codes(model: Tuple[str, ...], caught: bool, code: int,
                        monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(model, caught)
    monkeypatch.setattr(selfcheck, "run_selfcheck", lambda *args, **kwargs: report)
    assert cli.main(["selfcheck"]) == code
    out = capsys.readouterr().out
    assert "budget 60 s" in out and ("MISSED" in out) != caught
    assert cli.main(["selfcheck", "--json"]) == code
    assert json.loads(capsys.readouterr().out)["exit"] == code


def test_a_crosshair_failure_is_exit_2(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = selfcheck.model_targets()[-1]
    with pytest.raises(selfcheck.SelfcheckError, match="CrossHair failed"):
        selfcheck.check_target(target, Path("/nonexistent/plugin.py"), 5.0)  # it crashes

    def crashed(*args: Any, **kwargs: Any) -> selfcheck.SelfcheckReport:
        raise selfcheck.SelfcheckError("CrossHair failed on x (exit -9): killed")

    monkeypatch.setattr(selfcheck, "run_selfcheck", crashed)
    assert cli.main(["selfcheck"]) == 2
    assert capsys.readouterr().err == "qthrottle: error: CrossHair failed on x (exit -9): killed\n"


class Unnumbered:
    def method(self) -> None:
        """post: True"""


def test_every_condition_names_its_invariants() -> None:
    with pytest.raises(selfcheck.SelfcheckError, match="without '# invariant N'"):
        selfcheck.conditions_of(f"{__name__}.Unnumbered.method")


# --------------------------------- the transition properties each can fail

def test_transition_properties_can_fail() -> None:
    port, stop = TinyEvent.PORT0_OPEN.queue, TinyEvent.DISK_STOP.queue
    key = TINY_POLICY.key(port.event, port.data)
    disk = TINY_POLICY.key(stop.event, stop.data)
    second = TINY_POLICY.rate("VSERPORT_CHANGE")
    assert inv.windows_sound(0, {key: Window(second, port)}, TINY_POLICY) == []
    assert inv.windows_sound(0, {key: Window(0, None)}, TINY_POLICY)  # a due timer not fired
    assert inv.windows_sound(0, {key: Window(0, None)}, TINY_POLICY, due=True) == []
    assert inv.windows_sound(0, {key: Window(second + 1, None)}, TINY_POLICY)
    assert inv.windows_sound(0, {disk: Window(1, stop)}, TINY_POLICY)  # a stop held back
    assert inv.windows_sound(0, {disk: Window(1, port)}, TINY_POLICY)  # another key's event
    emitted = [Emission(0, port.event, port.data)]
    assert inv.queue_sound(port, 0, emitted, TINY_POLICY, False, None) == []
    assert inv.queue_sound(port, 0, [], TINY_POLICY, False, None)  # quiet, yet held back
    assert inv.queue_sound(port, 0, emitted, TINY_POLICY, True, None)  # window open, emitted
    assert inv.queue_sound(stop, 0, [], TINY_POLICY, True, None)  # a stop held back
    assert inv.expiry_sound(port, 5, second, [Emission(5, port.event, port.data)],
                            Window(5 + second, None)) == []
    assert inv.expiry_sound(port, 5, second, [], None)  # the held-back event forgotten
    assert inv.expiry_sound(None, 5, second, [], Window(5 + second, None))  # stays open
    held = {key: (5, port)}
    assert inv.advance_sound(held, 9, [Emission(5, port.event, port.data)]) == []
    assert inv.advance_sound(held, 9, [])  # not emitted
    assert inv.advance_sound(held, 4, [Emission(5, port.event, port.data)])  # not due yet
    assert inv.advance_sound({}, 9, [Emission(5, stop.event, stop.data)])  # never held back
    late, early = Emission(7, port.event, port.data), Emission(5, stop.event, stop.data)
    both = {key: (7, port), disk: (5, stop)}
    assert inv.advance_sound(both, 9, [early, late]) == []
    assert inv.advance_sound(both, 9, [late, early]) == ["timers emitted out of time order"]
