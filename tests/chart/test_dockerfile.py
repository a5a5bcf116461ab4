"""Static checks of the Dockerfile (no Docker engine runs here): targets, pinned bases, non-root users,
no torch or build tools in the operator image."""
import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "Dockerfile").read_text()


def stages() -> dict[str, str]:
    """Stage name -> its instructions (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", TEXT)
    parts = re.split(r"^FROM\s+", joined, flags=re.M)[1:]
    named = {}
    for p in parts:
        match = re.match(r"\S+\s+AS\s+(\S+)", p, re.I)
        assert match is not None, f"a stage without a name: FROM {p[:80]}"
        named[match.group(1)] = p
    return named


def test_the_two_targets_and_a_build_stage_exist():
    assert set(stages()) == {"wheels", "operator", "inference"}


def test_base_images_are_pinned_to_a_version():
    bases = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", TEXT, flags=re.M))
    assert bases, "base images are ARGs with defaults"
    for name, image in bases.items():
        tag = image.rpartition(":")[2]
        assert ":" in image and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}={image} is not pinned"
    for stage in stages().values():
        base = stage.split()[0]
        assert base.strip("${}") in bases, f"stage based on {base}, not a pinned ARG"


def test_final_images_run_as_a_non_root_user():
    for name in ("operator", "inference"):
        users = re.findall(r"^USER\s+(\d+)", stages()[name], flags=re.M)
        assert users and int(users[-1]) != 0, f"{name} must end as a non-root numeric user"


def test_the_operator_image_has_no_torch_and_no_build_tools():
    operator = stages()["operator"]
    assert "torch" not in operator and "[inference]" not in operator
    for name in ("operator", "inference"):
        assert not re.search(r"build-essential|\bgcc\b|\bg\+\+|\bmake\b", stages()[name]), name
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith(("torch", "transformers")) for d in deps), "the base install must not pull torch"


def test_the_build_context_leaves_out_local_state():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", "tests"} <= ignored


def test_the_inference_image_caps_malloc_arenas_as_the_memory_test_runs_the_server():
    conftest = (ROOT / "tests" / "inference" / "conftest.py").read_text()
    assert re.search(r"^ENV .*\bMALLOC_ARENA_MAX=2\b", stages()["inference"], flags=re.M)
    assert '"MALLOC_ARENA_MAX": "2"' in conftest


def test_the_inference_image_listens_on_ipv4_and_ipv6():
    # --host 0.0.0.0 listened on IPv4 only ("": every address of each family, as the operator's pods run it)
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", stages()["inference"], flags=re.M)
    assert entrypoint is not None
    command = json.loads(entrypoint.group(1))
    assert command[:2] == ["foresail", "serve"] and command[command.index("--host") + 1] == ""
