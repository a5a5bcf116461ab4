"""A command whose extra is not installed says which one to install, in one line, instead of a traceback."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from foresail.cli import EXTRAS

ROOT = Path(__file__).resolve().parents[1]


def test_the_extras_modules_are_pyprojects_optional_dependencies() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    distributions = importlib.metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        wanted = {_normalise(re.split(r"[<>=!~;\[ ]", requirement)[0]) for requirement in declared[extra]}
        assert {_normalise(dist) for module in modules for dist in distributions[module]} == wanted, extra


@pytest.mark.parametrize("command, extra", [
    (["serve", "--port", "0"], "inference"),
    (["dev", "apiserver", "--port", "0"], "dev"),
    (["demo", "--minutes", "1"], "inference"),
])
def test_a_command_without_its_extra_says_what_to_install(tmp_path: Path, command: list[str], extra: str) -> None:
    site = tmp_path / "site"  # the installed packages less the extra's, as in the operator image
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if _normalise(entry.name.split("-")[0].split(".")[0]) not in {_normalise(m) for m in EXTRAS[extra]}:
            (site / entry.name).symlink_to(entry)
    path = os.pathsep.join(str(p) for p in (site, ROOT, ROOT / "operator", ROOT / "inference"))
    done = subprocess.run([sys.executable, "-S", "-m", "foresail", *command], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"is not installed): pip install 'foresail[{extra}]'\n"), done.stderr
    assert len(done.stderr.splitlines()) == 1 and not done.stdout, done.stdout + done.stderr


def _normalise(name: str) -> str:
    """A distribution or module name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()
