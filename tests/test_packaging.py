"""The distribution: a clean sdist and wheel, and the wheel alone running qthrottle verify
on every Python the project admits that this machine has (pyenv's, and the running one).

Under CI=true the oldest admitted Python (3.9) must be there: CI proves the floor.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
OLDEST, NEWEST = (3, 9), (3, 13)  # pyproject's requires-python, and the newest tested
# The oldest Python this pip installs into (pip --python); an older one uses its venv's pip.
PIP_PYTHON = (3, 10)


def _pythons() -> Dict[str, Path]:
    """'3.X' -> an interpreter, for each admitted minor version found here."""
    found: Dict[str, Path] = {f"{sys.version_info[0]}.{sys.version_info[1]}":
                              Path(sys.executable)}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in sorted(pyenv.glob("3.*")) if pyenv.is_dir() else []:
        match = re.fullmatch(r"3\.(\d+)\.\d+", version.name)
        minor = int(match.group(1)) if match else 0
        if OLDEST[1] <= minor <= NEWEST[1] and (version / "bin" / "python").is_file():
            found.setdefault(f"3.{minor}", version / "bin" / "python")
    return dict(sorted(found.items(), key=lambda item: int(item[0].split(".")[1])))


PYTHONS = _pythons()


@pytest.fixture(scope="module")
def dist() -> Iterator[Path]:
    """sdist and wheel, built as a user would (python -m build, isolated)."""
    with tempfile.TemporaryDirectory(prefix="qthrottle-dist-") as out:
        result = subprocess.run([sys.executable, "-m", "build", "--outdir", out, str(ROOT)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        log = result.stdout + result.stderr
        for warning in ("Warning", "would be ignored", "deprecated"):
            assert warning not in log, log
        yield Path(out)


def test_sdist_and_wheel_carry_the_license_and_the_data(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    for data in ("qthrottle/harness/shims/driver.c", "qthrottle/cases/qapi/qapi-schema.json",
                 "qthrottle/cases/stop-bypass.c", "qthrottle/model/invariants.py"):
        assert data in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names
                                                if n.endswith(".dist-info/METADATA")))
    assert b"License-Expression: GPL-2.0-or-later" in metadata
    assert sdist.stat().st_size > 0


@pytest.mark.parametrize("version", list(PYTHONS))
def test_the_wheel_alone_runs_verify(version: str, dist: Path) -> None:
    """A fresh venv of this Python, the wheel and its dependencies, nothing else (not
    even pip where this pip can install into it: a venv's own pip costs seconds). The
    dependencies are not byte-compiled; every module of the package is, by this Python."""
    (wheel,) = dist.glob("*.whl")
    own_pip = tuple(map(int, version.split("."))) < PIP_PYTHON
    with tempfile.TemporaryDirectory(prefix=f"qthrottle-py{version}-") as work:
        venv = Path(work) / "venv"
        subprocess.run([str(PYTHONS[version]), "-m", "venv", str(venv),
                        *([] if own_pip else ["--without-pip"])], check=True)
        python = venv / "bin" / "python"
        pip = [str(venv / "bin" / "pip")] if own_pip else [
            sys.executable, "-m", "pip", "--python", str(python)]
        install = subprocess.run([*pip, "install", "-q", "--no-compile", str(wheel)],
                                 capture_output=True, text=True, check=False)
        assert install.returncode == 0, install.stderr[-3000:]
        (package,) = venv.glob("lib/python3.*/site-packages/qthrottle")
        compiled = subprocess.run([str(python), "-m", "compileall", "-q", str(package)],
                                  capture_output=True, text=True, check=False)
        assert compiled.returncode == 0, compiled.stdout[-3000:]
        run = subprocess.run([str(venv / "bin" / "qthrottle"), "verify", "optional-key",
                              "--profile", "smoke", "--seed", "1"], cwd=work,
                             capture_output=True, text=True, check=False)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"^  7  .* FALSIFIED$", run.stdout, re.M), run.stdout
    assert "Traceback" not in run.stderr


def test_the_oldest_admitted_python_is_tested() -> None:
    oldest = f"{OLDEST[0]}.{OLDEST[1]}"
    if oldest in PYTHONS:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"Python {oldest} (requires-python's floor) is not on this machine",
                    pytrace=False)
    pytest.skip(f"Python {oldest} not found (pyenv): the wheel is not tested on it here")
