"""Proof results kept in the cache (proofs/remembered.py): used again for the same inputs
only, never an UNKNOWN, a damaged one proved again, QTHROTTLE_PROOF_CACHE=off obeyed."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, List

import pytest

from qthrottle.cases import SCHEMA_DIR
from qthrottle.cli import main
from qthrottle.harness.target import Target, resolve
from qthrottle.proofs import remembered
from qthrottle.proofs.engine import ProofReport, prove_target
from qthrottle.proofs.solve import UNKNOWN
from qthrottle.review.target_policy import target_policy


@pytest.fixture
def proved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> List[str]:
    """A cache of the test's own; the names of the targets z3 proved (not kept ones)."""
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(remembered.SWITCH, raising=False)
    names: List[str] = []
    prove = remembered.prove

    def counted(extraction: Any, catalog: Any, name: str, *args: Any, **kwargs: Any
                ) -> ProofReport:
        names.append(name)
        return prove(extraction, catalog, name, *args, **kwargs)
    monkeypatch.setattr(remembered, "prove", counted)
    return names


def _answers(report: ProofReport) -> List[Any]:
    return [(r.invariant, r.law, r.status, r.reason, r.events, r.timeline, r.replay,
             r.confirmed) for r in report.results]


def _entries(tmp_path: Path) -> List[Path]:
    return sorted((tmp_path / "cache" / remembered.KIND).glob(f"*/{remembered.FILE}"))


def _copy(tmp_path: Path, case: str, comment: str = "") -> Target:
    """@case's monitor.c in @tmp_path, @comment added to a function the prover reads."""
    source = resolve(case).monitor_c.read_text()
    changed = source.replace("static void monitor_qapi_event_handler(void *opaque)\n{\n",
                             "static void monitor_qapi_event_handler(void *opaque)\n{\n"
                             f"    /* {comment} */\n", 1) if comment else source
    assert changed != source or not comment
    path = tmp_path / "monitor.c"
    path.write_text(changed)
    return Target(case, path, SCHEMA_DIR)


def test_a_proof_is_used_again_for_the_same_inputs_only(proved: List[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first = prove_target(resolve("stop-bypass"))
    again = prove_target(resolve("stop-bypass"))
    assert proved == ["stop-bypass"] and not first.cached and again.cached
    assert _answers(again) == _answers(first) and again.policy == first.policy
    assert len(_entries(tmp_path)) == 1
    # Each input of the proof is in the key: another timeout, another path, the same path
    # with one comment more in the code, another qthrottle.
    prove_target(resolve("stop-bypass"), timeout_ms=9000)
    prove_target(_copy(tmp_path, "stop-bypass"))
    prove_target(_copy(tmp_path, "stop-bypass", "a reviewer's note"))
    monkeypatch.setattr(remembered, "_own_sources", lambda: "another qthrottle")
    prove_target(resolve("stop-bypass"))
    assert proved == ["stop-bypass"] * 5 and len(_entries(tmp_path)) == 5


def test_off_proves_every_time_and_keeps_nothing(proved: List[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(remembered.SWITCH, "off")
    assert not prove_target(resolve("stop-bypass")).cached
    assert not prove_target(resolve("stop-bypass")).cached
    assert proved == ["stop-bypass"] * 2 and _entries(tmp_path) == []


def test_an_unknown_is_never_kept(proved: List[str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An UNKNOWN may be a solver timeout (the machine's load): asked again next time."""
    prove = remembered.prove

    def timed_out(*args: Any, **kwargs: Any) -> ProofReport:
        report: ProofReport = prove(*args, **kwargs)
        report.results[-1].status, report.results[-1].reason = UNKNOWN, "timeout"
        return report
    monkeypatch.setattr(remembered, "prove", timed_out)
    for _ in range(2):
        assert prove_target(resolve("stop-bypass")).unknown
    assert proved == ["stop-bypass"] * 2 and _entries(tmp_path) == []


def test_a_damaged_result_is_proved_again(proved: List[str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    first = prove_target(resolve("stop-bypass"))
    (entry,) = _entries(tmp_path)
    entry.write_bytes(entry.read_bytes()[:100])
    again = prove_target(resolve("stop-bypass"))
    assert proved == ["stop-bypass"] * 2 and not again.cached
    assert _answers(again) == _answers(first)
    assert re.search(r"qthrottle: warning: cache entry .* is damaged .*: made again",
                     capsys.readouterr().err)
    assert prove_target(resolve("stop-bypass")).cached  # kept again, intact


def test_the_derived_policy_is_kept_too(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path / "cache"))
    derived: List[str] = []
    derive = remembered.derive_policy

    def counted(*args: Any, **kwargs: Any) -> Any:
        derived.append("derived")
        return derive(*args, **kwargs)
    monkeypatch.setattr(remembered, "derive_policy", counted)
    assert target_policy(resolve("per-device")) == target_policy(resolve("per-device"))
    assert derived == ["derived"]


def test_prove_says_a_result_was_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The same answer, exit code and counterexamples replayed on the C; the header says
    where the result came from."""
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(remembered.SWITCH, raising=False)
    outputs = []
    for _ in range(2):
        assert main(["prove", "per-device"]) == 1
        outputs.append(capsys.readouterr().out)
    kept = "kept from an earlier run of the same inputs: QTHROTTLE_PROOF_CACHE=off proves again; "
    assert kept not in outputs[0] and f"s ({kept}z3 " in outputs[1]
    assert "replay against the C (confirmed by the C)" in outputs[1]
    assert outputs[1].replace(kept, "") == outputs[0]


def test_diff_says_which_side_was_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(remembered.SWITCH, raising=False)
    assert main(["prove", "stop-bypass"]) == 0
    assert main(["diff", "per-device", "stop-bypass", "--timelines", "20"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("invariants, old -> new"))
    # OLD was proved here, NEW by `prove` before
    assert re.search(r"z3 proofs in [\d.]+ s and [\d.]+ s \(kept from an earlier run of the "
                     r"same inputs: QTHROTTLE_PROOF_CACHE=off proves again\);", line), line
