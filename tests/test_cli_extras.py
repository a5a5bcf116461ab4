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

from foresail.cli import COMMANDS, EXTRAS

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


def test_a_command_imports_its_own_module_only_and_help_lists_every_command() -> None:
    """`foresail activator` (a process kept running, in a pod with a memory limit) must not carry what another
    command's module imports: numpy, pandas, scipy and scikit-learn (`foresail history`'s). `foresail --help`
    still lists every command, and a command's own flags are there."""
    code = ("import sys\nfrom foresail.cli import main\ntry:\n    main(['activator', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('numpy', 'pandas', 'scipy', 'sklearn', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--max-held-mib" in done.stdout and done.stdout.splitlines()[-1] == "[]", done.stdout[-500:]
    listing = subprocess.run([sys.executable, "-m", "foresail", "--help"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert [name for name in COMMANDS if not re.search(rf"^ +{name}\b", listing.stdout, re.M)] == []
