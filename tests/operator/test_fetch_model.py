"""The fetch-model init container's command, as the plan writes it, run for real by `sh` against an HTTP server on
127.0.0.1: it downloads with curl where the image has it (curl checks TLS certificates; busybox's wget, the old
default, does not), else with wget; a failed download fails the container and leaves no file; a file already there
is kept; a cache folder it cannot write (a hostPath the kubelet made, root's) is named in its error, with the uid."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest

from foresail_operator import plan
from foresail_operator.runtimes import runtime_for
from foresail_operator.spec import parse_spec

TOOLS = ("sh", "dirname", "mkdir", "mv", "rm", "id")  # what the script runs besides the downloader
UID = 10001  # the init container's runAsUser


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, and its URL."""
    folder = tmp_path / "site"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def init_container(source: str) -> dict:
    spec = parse_spec({"model": {"source": source}})
    (init,) = plan.pod_template("m", spec, runtime_for(spec))["spec"]["initContainers"]
    return init


def fetch(source: str, target: Path, env: dict[str, str], *prefix: str) -> subprocess.CompletedProcess:
    """Run the planned command, with `target` for the file under /models-cache."""
    command = init_container(source)["command"]
    assert command[-1] == source
    return subprocess.run([*prefix, *command[:-2], str(target), source], env=env, capture_output=True, text=True,
                          timeout=120)


def only(downloader: str, folder: Path) -> dict[str, str]:
    """An environment whose PATH (symbolic links in `folder`) has the script's tools and one downloader."""
    folder.mkdir()
    for tool in (*TOOLS, downloader):
        found = shutil.which(tool)
        if found is None:
            pytest.skip(f"no {tool} on this machine")
        (folder / tool).symlink_to(found)
    return {"PATH": str(folder)}


@pytest.mark.parametrize("downloader", ["curl", "wget"])
def test_the_model_arrives_whole_or_not_at_all_and_once(downloader: str, site: tuple[Path, str],
                                                         tmp_path: Path) -> None:
    folder, url = site
    (folder / "tiny.gguf").write_bytes(b"weights" * 1000)
    env = only(downloader, tmp_path / "bin")
    target = tmp_path / "cache" / "downloads" / "tiny.gguf"

    done = fetch(f"{url}/tiny.gguf", target, env)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == b"weights" * 1000
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny.gguf"]

    missing = target.parent / "gone.gguf"
    failed = fetch(f"{url}/gone.gguf", missing, env)  # 404
    assert failed.returncode != 0
    assert sorted(p.name for p in target.parent.iterdir()) == ["tiny.gguf"]  # neither gone.gguf nor its .part

    (folder / "tiny.gguf").unlink()  # the server would answer 404 now: a second run must not ask it
    again = fetch(f"{url}/tiny.gguf", target, env)
    assert again.returncode == 0, again.stderr
    assert target.read_bytes() == b"weights" * 1000


def test_a_cache_folder_it_cannot_write_is_named_with_the_uid() -> None:
    """As the kubelet makes a hostPath (DirectoryOrCreate): a folder the init container's user cannot write. As
    root, the command runs as that user (10001); else as this user, in a folder made read-only."""
    prefix: tuple[str, ...] = ()
    uid = os.getuid()
    if uid == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv to run as a non-root user")
        prefix, uid = ("setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"), UID
    source = "http://127.0.0.1:9/tiny.gguf"  # never asked
    with tempfile.TemporaryDirectory() as cache:  # not under tmp_path: uid 10001 must be able to reach it
        os.chmod(cache, 0o555)
        try:
            failed = fetch(source, Path(cache) / "downloads" / "tiny.gguf", dict(os.environ), *prefix)
        finally:
            os.chmod(cache, 0o755)
    assert failed.returncode != 0
    assert f"fetch-model: uid {uid} cannot write to {cache}/downloads" in failed.stderr
    assert f"writable by uid {uid}" in failed.stderr
    assert init_container(source)["terminationMessagePolicy"] == "FallbackToLogsOnError"  # the pod shows why
