"""Reports for CI: --json (docs/report.schema.json), --junit, colours, progress, the CI snippet.

One `qthrottle verify per-device --json --junit` run (a small search profile:
the report is under test here, not the search) feeds every test; the engines'
results it produced are kept to build the other report shapes (bundled demo,
UNKNOWN, --strict) without running the engines again.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List

import jsonschema
import pytest
import yaml

from qthrottle import cli
from qthrottle.cli import verify as verify_command
from qthrottle.cli.terminal import Painter, Phases
from qthrottle.core import EXIT_UNKNOWN
from qthrottle.engines import selfcheck
from qthrottle.engines.bounds import PROFILES, Profile
from qthrottle.engines.stateful import SearchResult
from qthrottle.harness.target import resolve
from qthrottle.model.invariants import INVARIANTS
from qthrottle.model.qapi_schema import load_schema
from qthrottle.proofs.engine import ProofReport
from qthrottle.review.lint import lint_extraction
from qthrottle.review.reports import (
    LINT_TESTCASE,
    VerifyReport,
    target_lines,
    target_result,
    to_json,
    to_junit,
)
from qthrottle.review.target_policy import target_policy

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261125
SMALL = Profile("quick", runs=60, steps=8)  # invariant 4 of per-device falls in a few runs


@dataclass
class Run:
    code: int
    out: str
    err: str
    report: Dict[str, Any]
    junit: ET.Element
    searches: List[SearchResult]
    proofs: List[ProofReport]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = tmp_path_factory.mktemp("reports")
    searches: List[SearchResult] = []
    proofs: List[ProofReport] = []

    def spy(engine: Any, into: List[Any]) -> Any:
        def call(*args: Any) -> Any:
            into.append(engine(*args))
            return into[-1]
        return call

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(PROFILES, "quick", SMALL)
        # CrossHair's own run is tests/test_selfcheck.py's; --explain gets its real
        # conditions, all proved but one whose budget ran out.
        patch.setattr(verify_command, "run_selfcheck", crosshair_report)
        patch.setattr(verify_command, "verify_target", spy(verify_command.verify_target,
                                                           searches))
        patch.setattr(verify_command, "prove_target", spy(verify_command.prove_target, proofs))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["verify", "per-device", "--seed", str(SEED), "--explain",
                             "--json", str(folder / "r.json"), "--junit", str(folder / "r.xml")])
    yield Run(code, out.getvalue(), err.getvalue(),
              json.loads((folder / "r.json").read_text()),
              ET.parse(folder / "r.xml").getroot(), searches, proofs)


def crosshair_report(timeout_s: float) -> selfcheck.SelfcheckReport:
    conditions = [c for t in selfcheck.model_targets() for c in selfcheck.conditions_of(t)]
    exhausted = next(c for c in conditions if 4 not in c.invariants and 5 in c.invariants)
    results = tuple(selfcheck.ConditionResult(
        c, selfcheck.BUDGET_EXHAUSTED if c is exhausted else selfcheck.PROVED, "", 1.0,
        timeout_s) for c in conditions)
    return selfcheck.SelfcheckReport(timeout_s, results, (), 2.0, "test")


def test_explain_prints_the_invariant_by_engine_table(run: Run) -> None:
    table = run.out[run.out.index("invariant x engine for per-device:"):].splitlines()
    rows = {line.split()[0]: line for line in table[2:10]}
    assert sorted(rows) == [str(n) for n in INVARIANTS]
    assert re.search(r"FALSIFIED\s+FALSIFIED\s+PROVED all paths \(\d+/\d+\)\s+FALSIFIED$",
                     rows["4"]), rows["4"]  # z3, stateful, CrossHair, verdict
    assert "BUDGET EXHAUSTED (1/" in rows["5"] and "- (property of runs)" in rows["5"]
    assert "- (the model is Python" in rows["8"] and rows["8"].endswith("HOLDS")
    assert "- (the model's keys are tuples" in rows["1"]
    bounds = "\n".join(table[10:16])
    assert "60 runs x 8 steps per search, seed 20261125" in bounds
    assert "events: 9 throttled or required, all 3 unthrottled ones of the schema" in bounds
    assert "10000 ms per query" in bounds and "tiny world" in bounds


def validate(report: Dict[str, Any]) -> None:
    schema = json.loads((ROOT / "docs" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(report)


def cases(junit: ET.Element) -> Dict[str, ET.Element]:
    return {case.get("name", ""): case for case in junit.iter("testcase")}


def properties(case: ET.Element) -> Dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in case.findall("properties/property")}


def rebuild(run: Run, case: str, bundled: bool, strict: bool = False,
            search: SearchResult | None = None, proofs: ProofReport | None = None
            ) -> VerifyReport:
    """A report of another shape from the recorded engine results of per-device."""
    target = resolve(case)
    report = VerifyReport(SEED, SMALL, 10_000, bundled=bundled, strict=strict)
    derived = target_policy(resolve("per-device"))
    lint = lint_extraction(resolve("per-device").extract(), load_schema(target.qapi_dir or "."),
                           derived.policy, derived.key_reads, derived.unknown)
    target_result(report, target, search or run.searches[0], proofs or run.proofs[0], lint,
                  derived)
    return report


def test_plain_output_with_lint_and_exit_code(run: Run) -> None:
    assert run.code == 1
    assert "\x1b" not in run.out + run.err  # not a terminal: no colours, no progress
    assert run.err == ""
    assert re.search(r"4 +BLOCK_IO_ERROR action=stop .* FALSIFIED", run.out)
    assert "profile quick: up to 60 runs x 8 steps" in run.out
    assert "policy lint: 1 warning(s)" in run.out
    assert "warning: RTC_CHANGE carries per-instance member qom-path" in run.out


def test_json_report_follows_its_schema(run: Run) -> None:
    report = run.report
    validate(report)
    assert (report["mode"], report["exit_code"], report["seed"]) == ("target", 1, SEED)
    assert report["engines"]["stateful"] == {"profile": "quick", "runs": 60, "steps": 8,
                                             "seed": SEED}
    (target,) = report["targets"]
    assert target["name"] == "per-device" and target["broken"] == [4]
    invariants = {i["number"]: i for i in target["invariants"]}
    assert list(invariants) == list(INVARIANTS)
    stop = invariants[4]
    assert stop["status"] == "FALSIFIED"
    stateful_check, z3_check = stop["checks"]
    assert stateful_check["engine"] == "stateful" and stateful_check["status"] == "FALSIFIED"
    assert "#1 t=0 ns: queue BLOCK_IO_ERROR" in stateful_check["counterexample"]
    assert "replay (qthrottle.harness.driver.Driver.run)" in stateful_check["counterexample"]
    assert z3_check["status"] == "FALSIFIED" and z3_check["laws"][0]["confirmed"] is True
    assert [invariants[n]["checks"][1]["status"] for n in (5, 6, 8)] == ["NOT_APPLICABLE"] * 3
    assert [i["status"] for n, i in invariants.items() if n != 4] == ["HOLDS"] * 7
    assert [(w["event"], w["rule"]) for w in target["lint"]] == [
        ("RTC_CHANGE", "global-throttle")]
    policy = target["policy"]  # derived from per-device's C, as the model judged it
    assert policy["keys"]["BLOCK_IO_ERROR"] == ["qom-path"] and policy["keys"]["WATCHDOG"] == []
    assert policy["rates_ns"]["BLOCK_IO_ERROR"] == 1_000_000_000
    assert policy["assumptions"] == [] and policy["unknown"] == {}


def test_junit_one_testcase_per_invariant_falsified_is_a_failure(run: Run) -> None:
    junit = run.junit
    assert junit.tag == "testsuites"
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors")) == ("9", "1", "0")
    (suite,) = junit.findall("testsuite")
    assert suite.get("name") == "per-device" and suite.get("tests") == "9"
    found = cases(junit)
    assert list(found) == [f"invariant {n}: {name}" for n, name in INVARIANTS.items()] + [
        LINT_TESTCASE]
    assert {case.get("classname") for case in found.values()} == {"per-device"}
    stop = found[f"invariant 4: {INVARIANTS[4]}"]
    failure = stop.find("failure")
    assert failure is not None and failure.get("type") == "FALSIFIED"
    assert "stop event not emitted at once" in failure.get("message", "")
    assert "#2 t=0 ns: queue BLOCK_IO_ERROR" in (failure.text or "")
    assert "replay against the C (confirmed by the C)" in (failure.text or "")
    assert properties(stop) == {"stateful": "FALSIFIED", "z3": "FALSIFIED"}
    holds = [case for name, case in found.items() if "invariant 4" not in name]
    assert all(case.find("failure") is None and case.find("error") is None for case in holds)
    lint = found[LINT_TESTCASE]
    assert "RTC_CHANGE carries per-instance member qom-path" in lint.findtext("system-out", "")


def test_bundled_demo_expected_break_passes(run: Run) -> None:
    report = rebuild(run, "per-device", bundled=True)
    assert report.exit_code == 0
    validate(to_json(report))
    junit = to_junit(report).getroot()
    assert (junit.get("failures"), junit.get("errors")) == ("0", "0")
    stop = cases(junit)[f"invariant 4: {INVARIANTS[4]}"]
    assert properties(stop)["expected"] == "break"
    assert "#1 t=0 ns: queue BLOCK_IO_ERROR" in stop.findtext("system-out", "")
    assert any("meant to break: [4]; broke: [4] -> as expected" in line
               for line in target_lines(report.targets[0]))


def test_bundled_demo_unexpected_break_fails(run: Run) -> None:
    report = rebuild(run, "stop-bypass", bundled=True)  # meant to keep invariant 4
    assert report.exit_code == 1
    junit = to_junit(report).getroot()
    failure = cases(junit)[f"invariant 4: {INVARIANTS[4]}"].find("failure")
    assert failure is not None and failure.get("type") == "NOT_AS_EXPECTED"
    assert junit.get("failures") == "1"
    assert to_json(report)["targets"][0]["expected"]["as_expected"] is False


def test_unknown_is_an_error_never_a_pass(run: Run) -> None:
    # A NUL byte (event data can hold one) cannot be in XML: it is written escaped.
    undecided = SearchResult(SMALL, SEED, unknown="the harness could not decide: timeout \x00")
    proofs = run.proofs[0]
    unproved = ProofReport(proofs.target, proofs.timeout_ms,
                           [r for r in proofs.results if r.invariant != 4], proofs.seconds)
    report = rebuild(run, "per-device", bundled=False, search=undecided, proofs=unproved)
    assert report.exit_code == EXIT_UNKNOWN
    validate(to_json(report))
    junit = ET.fromstring(ET.tostring(to_junit(report).getroot(), encoding="unicode"))
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors")) == ("9", "0", "8")
    error = cases(junit)[f"invariant 5: {INVARIANTS[5]}"].find("error")
    assert error is not None and error.get("type") == "UNKNOWN"
    assert "stateful: the harness could not decide: timeout \\x00" in error.get("message", "")


def test_strict_makes_a_warning_fail(run: Run) -> None:
    assert rebuild(run, "per-device", bundled=True, strict=False).exit_code == 0
    strict = rebuild(run, "per-device", bundled=True, strict=True)
    assert strict.exit_code == 1
    lint = cases(to_junit(strict).getroot())[LINT_TESTCASE].find("failure")
    assert lint is not None and "RTC_CHANGE" in (lint.text or "")


def test_unwritable_report_is_an_input_error(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no" / "such" / "r.xml"
    assert cli.main(["verify", "per-device", "--junit", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qthrottle: error: --junit")
    assert "cannot be written: No such file or directory" in err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colours_and_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    line = "  4  BLOCK_IO_ERROR action=stop ...    FALSIFIED"
    assert "\x1b[" in Painter(Terminal())(line)
    assert Painter(io.StringIO())(line) == line
    screen = Terminal()
    with Phases(screen).phase("stateful search"):
        pass
    assert "stateful search" in screen.getvalue()
    log = io.StringIO()
    with Phases(log).phase("stateful search"):
        pass
    assert log.getvalue() == ""
    monkeypatch.setenv("NO_COLOR", "1")
    assert Painter(Terminal())(line) == line


def test_gitlab_snippet_parses_and_matches_its_artifacts() -> None:
    text = (ROOT / "docs" / "gitlab-ci.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    job = yaml.safe_load(block)["qthrottle"]
    commands = [shlex.split(line) for line in job["script"] if "qthrottle" in line]
    assert commands, "the job runs no qthrottle command"
    for argv in commands:
        assert argv[0].endswith("qthrottle")
        args = cli.parser().parse_args(argv[1:])
        assert args.func is verify_command.cmd_verify
    args = cli.parser().parse_args(commands[0][1:])
    assert job["artifacts"]["reports"]["junit"] == args.junit
    assert {args.junit, args.json} <= set(job["artifacts"]["paths"])
    assert job["allow_failure"]["exit_codes"] == EXIT_UNKNOWN
    install = " ".join(job["before_script"])
    for package in ("gcc", "pkg-config", "libglib2.0-dev", "libjson-glib-dev"):
        assert f" {package} " in f" {install} "
