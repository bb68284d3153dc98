"""Proof results kept in the cache (proofs/remembered.py): used again for the same inputs
only, never an UNKNOWN, a damaged one proved again, QTHROTTLE_PROOF_CACHE=off obeyed."""
from __future__ import annotations

import re
import shutil
from enum import Enum
from pathlib import Path
from typing import Any, List

import pytest

import qthrottle
from qthrottle.cases import SCHEMA_DIR
from qthrottle.cli import main
from qthrottle.harness.target import Target, resolve
from qthrottle.proofs import engine, remembered
from qthrottle.proofs.engine import ProofReport, prove, prove_target
from qthrottle.proofs.policy import derive_policy
from qthrottle.proofs.report import AGAIN, KEPT
from qthrottle.proofs.solve import FALSIFIED, UNKNOWN
from qthrottle.review.target_policy import target_policy

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache directory of this file's tests: the drivers are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cache(builds: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """That cache directory, without proof results or policies kept before."""
    for kind in (remembered.KIND, remembered.POLICY_KIND):
        shutil.rmtree(builds / kind, ignore_errors=True)
    monkeypatch.setenv("QTHROTTLE_CACHE_DIR", str(builds))
    monkeypatch.delenv(remembered.SWITCH, raising=False)
    return builds


@pytest.fixture
def proved(cache: Path, monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """The names of the targets z3 proved (not the kept ones)."""
    names: List[str] = []

    def counted(extraction: Any, catalog: Any, name: str, *args: Any, **kwargs: Any
                ) -> ProofReport:
        names.append(name)
        return prove(extraction, catalog, name, *args, **kwargs)
    monkeypatch.setattr(remembered, "prove", counted)
    return names


def quick(target: Target, **options: Any) -> ProofReport:
    """The callback laws and totality (runs=False), kept like every proof: a tenth of the
    time of the run invariants."""
    return prove_target(target, runs=False, **options)


def _answers(report: ProofReport) -> List[Any]:
    return [(r.invariant, r.law, r.status, r.reason, r.events, r.timeline, r.replay,
             r.confirmed) for r in report.results]


def _entries(cache: Path) -> List[Path]:
    return sorted((cache / remembered.KIND).glob(f"*/{remembered.FILE}"))


def _copy(tree: Path, case: str, comment: str = "") -> Target:
    """@case's monitor.c as @tree/monitor/monitor.c, @comment added to a function the
    prover reads."""
    source = resolve(case).monitor_c.read_text()
    changed = source.replace("static void monitor_qapi_event_handler(void *opaque)\n{\n",
                             "static void monitor_qapi_event_handler(void *opaque)\n{\n"
                             f"    /* {comment} */\n", 1) if comment else source
    assert changed != source or not comment
    path = tree / "monitor" / "monitor.c"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(changed)
    return Target(str(tree), path, SCHEMA_DIR)


def test_a_proof_is_used_again_for_the_same_inputs_only(proved: List[str], cache: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = quick(resolve("stop-bypass"))
    again = quick(resolve("stop-bypass"))
    assert proved == ["stop-bypass"] and not first.cached and again.cached
    assert _answers(again) == _answers(first)
    assert len(_entries(cache)) == 1
    # The name is a label (a review's "base (0123abcd) in ~/src/qemu"), not an input.
    renamed = quick(Target("base (0123abcd) in ~/src/qemu", resolve("stop-bypass").monitor_c,
                           SCHEMA_DIR))
    assert renamed.cached and renamed.target == "base (0123abcd) in ~/src/qemu"
    # Each input of the proof is in the key: another timeout, another file name in its
    # tree, the same file with one comment more in the code, another qthrottle.
    quick(resolve("stop-bypass"), timeout_ms=9000)
    quick(_copy(tmp_path / "tree", "stop-bypass"))
    quick(_copy(tmp_path / "tree", "stop-bypass", "a reviewer's note"))
    monkeypatch.setattr(remembered, "_own_sources", lambda: "another qthrottle")
    quick(resolve("stop-bypass"))
    assert proved == ["stop-bypass"] * 2 + [str(tmp_path / "tree")] * 2 + ["stop-bypass"] \
        and len(_entries(cache)) == 5


def test_off_proves_every_time_and_keeps_nothing(proved: List[str], cache: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(remembered.SWITCH, "off")
    assert not quick(resolve("stop-bypass")).cached
    assert not quick(resolve("stop-bypass")).cached
    assert proved == ["stop-bypass"] * 2 and _entries(cache) == []


def test_an_unknown_is_never_kept(proved: List[str], cache: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An UNKNOWN may be a solver timeout (the machine's load): asked again next time."""
    counted = vars(remembered)["prove"]  # the fixture's

    def timed_out(*args: Any, **kwargs: Any) -> ProofReport:
        report: ProofReport = counted(*args, **kwargs)
        report.results[-1].status, report.results[-1].reason = UNKNOWN, "timeout"
        return report
    monkeypatch.setattr(remembered, "prove", timed_out)
    for _ in range(2):
        assert quick(resolve("stop-bypass")).unknown
    assert proved == ["stop-bypass"] * 2 and _entries(cache) == []


def test_a_damaged_result_is_proved_again(proved: List[str], cache: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    first = quick(resolve("stop-bypass"))
    (entry,) = _entries(cache)
    entry.write_bytes(entry.read_bytes()[:100])
    again = quick(resolve("stop-bypass"))
    assert proved == ["stop-bypass"] * 2 and not again.cached
    assert _answers(again) == _answers(first)
    assert re.search(r"qthrottle: warning: cache entry .* is damaged .*: made again",
                     capsys.readouterr().err)
    assert quick(resolve("stop-bypass")).cached  # kept again, intact


def test_the_derived_policy_is_kept_too(cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    derived: List[str] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        derived.append("derived")
        return derive_policy(*args, **kwargs)
    monkeypatch.setattr(remembered, "derive_policy", counted)
    assert target_policy(resolve("per-device")) == target_policy(resolve("per-device"))
    assert derived == ["derived"]


def test_prove_says_a_result_was_kept(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The same answer, exit code and counterexamples replayed on the C; the header says
    where the result came from."""
    replayed: List[str] = []

    def counted(name: str) -> Any:
        original = getattr(engine, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            replayed.append(name)
            return original(*args, **kwargs)
        return run
    for name in ("replay", "replay_run"):  # what runs a counterexample on the C
        monkeypatch.setattr(engine, name, counted(name))
    outputs, replays = [], []
    for _ in range(2):
        assert main(["prove", "per-device"]) == 1
        outputs.append(capsys.readouterr().out)
        replays.append(sorted(replayed))
        replayed.clear()
    assert replays[0] == replays[1] == ["replay", "replay_run"]  # kept: on the C again
    # "z3 proofs in 4.3 s (z3 ..." once, "z3 proofs kept from an earlier run of the same
    # inputs, 4.3 s then (QTHROTTLE_PROOF_CACHE=off proves again; z3 ..." the second time
    seconds = re.search(r"z3 proofs in ([\d.]+) s \(z3 ", outputs[0])
    assert seconds is not None and KEPT not in outputs[0]
    kept = f"z3 proofs {KEPT}, {seconds.group(1)} s then ({AGAIN}; z3 "
    assert kept in outputs[1]
    assert "replay against the C (confirmed by the C)" in outputs[1]
    assert outputs[1].replace(kept, f"z3 proofs in {seconds.group(1)} s (z3 ") == outputs[0]


def test_verify_says_a_result_was_kept(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for _ in range(2):
        assert main(["verify", "stop-bypass", "--profile", "smoke", "--seed", "1"]) == 0
        outputs.append(capsys.readouterr().out)
    assert KEPT not in outputs[0] and re.search(
        rf"z3 proofs {KEPT}, [\d.]+ s then \({AGAIN}; z3 ", outputs[1])


def test_explore_says_a_result_was_kept(cache: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for _ in range(2):
        assert main(["explore", "per-device", "--invariant", "4", "--seed", "1",
                     "--output", str(tmp_path)]) == 1
        outputs.append(capsys.readouterr().out)
    assert KEPT not in outputs[0] and re.search(r"z3 proofs in [\d.]+ s: ", outputs[0])
    assert re.search(rf"z3 proofs {KEPT}, [\d.]+ s then \({AGAIN}\): ", outputs[1]), outputs[1]


def test_diff_says_which_side_was_kept(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prove", "stop-bypass"]) == 0
    assert main(["diff", "per-device", "stop-bypass", "--timelines", "20"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines()
                if line.startswith("invariants, old -> new"))
    # OLD was proved here, NEW by `prove` before
    assert re.search(rf"z3 proofs: OLD in [\d.]+ s, NEW {KEPT}, [\d.]+ s then \({AGAIN}\);",
                     line), line


def test_the_same_tree_elsewhere_is_the_same_proof_naming_its_own_files(
        proved: List[str], tmp_path: Path) -> None:
    """A review proves private copies of a tree: the kept result of one copy is the
    result of another, with the other's paths (totality names the line of an abort)."""
    first = quick(_copy(tmp_path / "one", "optional-key"))
    again = quick(_copy(tmp_path / "two-longer", "optional-key"))
    assert proved == [str(tmp_path / "one")] and again.cached
    assert first.status(7) == again.status(7) == FALSIFIED
    assert str(tmp_path / "one") in repr(first)
    assert str(tmp_path / "one") not in repr(again)
    assert _answers(again) == [_moved(answer, str(tmp_path / "one"), str(tmp_path / "two-longer"))
                               for answer in _answers(first)]


def _moved(value: Any, old: str, new: str) -> Any:
    """@value's strings with @old made @new (its containers are tuples, lists, dicts)."""
    if isinstance(value, str) and not isinstance(value, Enum):
        return value.replace(old, new)
    if isinstance(value, (list, tuple)):
        return type(value)(_moved(v, old, new) for v in value)
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    return value


def test_the_key_holds_the_prover_and_the_layers_below_it(tmp_path: Path) -> None:
    """A change to the engines, a review or the command line keeps the results kept; a
    change to what the prover is made of does not. The prover's layers are the ones the
    import-linter contract lets proofs/ import."""
    import tomllib  # type: ignore[import-not-found,unused-ignore]  # 3.11: the suite's
    contract = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in contract["contracts"] if c["type"] == "layers"]
    prover = layers.index("proofs | engines")
    below = [name.strip() for layer in layers[prover + 1:] for name in layer.split("|")]
    assert sorted(remembered.PROVER_LAYERS) == sorted(["proofs", *below])

    package = tmp_path / "qthrottle"
    shutil.copytree(Path(qthrottle.__file__).parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    digest = remembered.sources_digest(package)
    for outside in ("engines/minimise.py", "review/diff.py", "cli/prove.py"):
        with (package / outside).open("a") as stream:
            stream.write("# a change that decides no proof\n")
        assert remembered.sources_digest(package) == digest, outside
    for inside in ("proofs/translate.py", "model/invariants.py", "harness/shims/driver.c",
                   "core.py", "cases/qapi/block.json"):
        with (package / inside).open("a") as stream:
            stream.write("\n")
        changed = remembered.sources_digest(package)
        assert changed != digest, inside
        digest = changed
