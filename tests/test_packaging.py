"""What the wheel holds: the three packages with their data (the CRDs the demo applies included), nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from foresail.demo.stack import CRDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"foresail", "foresail_operator", "foresail_inference"}


def test_the_packages_crds_are_the_repositorys() -> None:
    assert sorted(path.name for path in CRDS.glob("*.yaml")) == sorted(path.name for path in (ROOT / "crds").glob("*"))
    for path in (ROOT / "crds").glob("*"):
        assert (CRDS / path.name).read_bytes() == path.read_bytes(), f"copy crds/{path.name} to {CRDS}"


def test_a_wheel_built_as_the_dockerfile_builds_it_holds_the_crds_and_no_demo_output(tmp_path: Path) -> None:
    project = tmp_path / "project"  # what the Dockerfile copies, and a demo's output folder left in the checkout
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for name in ("foresail", "operator", "inference"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (project / "foresail-demo").mkdir()
    (project / "foresail-demo" / "timeline.json").write_text("[]")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(project)], check=True, timeout=120, capture_output=True)
    wheel = next((tmp_path / "dist").glob("foresail-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {top for top in (name.split("/")[0] for name in names) if not top.endswith(".dist-info")} == PACKAGES
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    found = subprocess.run([sys.executable, "-c", "from foresail.demo.stack import crd_dir; print(crd_dir())"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True,
                           timeout=60, check=True).stdout.strip()
    assert Path(found) == site / "foresail" / "demo" / "data" / "crds"
    for path in (ROOT / "crds").glob("*"):
        assert (Path(found) / path.name).read_bytes() == path.read_bytes()
