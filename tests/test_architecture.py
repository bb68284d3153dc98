"""The architecture as docs/ARCHITECTURE.md draws it: layers that only point down, and
first-party imports that static tools resolve (through qthrottle/'s links)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERED = ("qthrottle", "model", "proofs", "harness", "engines", "cases")
TOOLS = Path(sys.executable).parent


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter with the contracts of @root's pyproject.toml, on @root's package."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(TOOLS / "lint-imports"), "--config", str(root / "pyproject.toml"),
                           "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          check=False)


def test_layers_point_down() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """The contract can fail: the model importing the command line is refused."""
    for name in LAYERED:  # qthrottle/ keeps its links to the copies beside it
        shutil.copytree(ROOT / name, tmp_path / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    timeline = tmp_path / "model" / "timeline.py"
    timeline.write_text(timeline.read_text() + "\nimport qthrottle.cli  # upward\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "qthrottle.model is not allowed to import qthrottle.cli" in result.stdout
    assert "qthrottle.model.timeline -> qthrottle.cli" in result.stdout


def test_mypy_resolves_first_party_types(tmp_path: Path) -> None:
    """Across layers, mypy sees a first-party function's real type, not Any."""
    probe = tmp_path / "probe.py"
    probe.write_text("from qthrottle.model.members import g_str_hash\n"
                     "from qthrottle.engines.bounds import clock_steps\n"
                     "reveal_type(g_str_hash)\nreveal_type(clock_steps)\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file",
                             str(ROOT / "pyproject.toml"), str(probe)], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    revealed = re.findall(r'Revealed type is "(.*)"', result.stdout)
    assert [re.sub(r"\b(builtins|typing)\.", "", t) for t in revealed] == [
        "def (text: str) -> int", "def (rates: Iterable[int]) -> list[int]"], result.stdout


def test_every_file_over_600_lines_is_listed_with_its_reason() -> None:
    listed = set(re.findall(r"^- `([^`]+\.py)`:", (ROOT / "docs" / "ARCHITECTURE.md").read_text(),
                            re.MULTILINE))
    # rglob does not descend into qthrottle/'s links to the other layers: each file once.
    sources = [path for top in (*LAYERED, "bench") for path in (ROOT / top).rglob("*.py")]
    long = {str(path.relative_to(ROOT)) for path in sources
            if len(path.read_text().splitlines()) > 600}
    assert long == listed
