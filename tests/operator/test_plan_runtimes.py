"""The command line and probes the plan gives each runtime, against the engine's own interface."""

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from foresail_inference.cli import add_arguments as foresail_serve_arguments
from foresail_operator import plan
from foresail_operator.runtimes import RUNTIMES, runtime_for
from foresail_operator.spec import parse_spec

# The flags the operator sets, per runtime; runtime.args may set any of them again but --port and --served-model-name.
OPERATOR_FLAGS = {
    "foresail": ["--model", "--served-model-name", "--host", "--port", "--cache-dir", "--drain-timeout", "--revision"],
    "vllm": ["--served-model-name", "--host", "--port", "--tensor-parallel-size", "--revision"],
    "tgi": ["--model-id", "--hostname", "--port", "--num-shard", "--revision"],
    "sglang": ["--model-path", "--served-model-name", "--host", "--port", "--tp-size", "--revision"],
}


def server(spec: dict, name: str = "m") -> dict:
    parsed = parse_spec(spec)
    return plan.deployment(name, "ns", parsed, runtime_for(parsed))["spec"]["template"]["spec"]["containers"][0]


def times_given(command: list[str], flag: str) -> int:
    return sum(1 for arg in command if arg == flag or arg.startswith(flag + "="))


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_a_flag_that_runtime_args_set_is_given_once_with_their_value(runtime: str):
    # TGI's launcher (clap) exits at once on a flag given twice ("the argument '--num-shard <NUM_SHARD>' cannot be
    # used multiple times"): the pods crash-looped when runtime.args set --revision or --num-shard. The others
    # take the last value, so the args' value is the one that counts everywhere.
    assert set(OPERATOR_FLAGS) == set(RUNTIMES)
    source = "builtin:tiny" if runtime == "foresail" else "org/model"
    gpus = 0 if runtime == "foresail" else 2
    planned = server({"model": {"source": source, "revision": "abc"}, "runtime": {"name": runtime},
                      "resources": {"gpus": gpus}})["command"]
    for flag in OPERATOR_FLAGS[runtime]:
        assert times_given(planned, flag) == 1, (flag, planned)
    for flag in set(OPERATOR_FLAGS[runtime]) - {"--port", "--served-model-name"}:  # those two spec.py refuses
        for args in ([flag, "7"], [f"{flag}=7"]):
            command = server({"model": {"source": source, "revision": "abc"},
                              "runtime": {"name": runtime, "args": ["--extra", *args]},
                              "resources": {"gpus": gpus}})["command"]
            assert times_given(command, flag) == 1, (flag, command)
            assert command[-len(args):] == args and "--extra" in command
    drain = server({"model": {"source": "builtin:tiny"}, "runtime": {"args": ["--drain-timeout", "7"]}})["command"]
    parser = argparse.ArgumentParser()
    foresail_serve_arguments(parser)
    assert parser.parse_args(drain[2:]).drain_timeout == 7  # the real `foresail serve` parser takes the line


@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_sglang_gets_its_tensor_parallel_flag_by_its_own_name(gpus: int):
    # SGLang 0.5's ServerArgs names tp_size --tensor-parallel-size or --tp-size; the plan's --tp was taken only as
    # an argparse abbreviation, refused where abbreviations are off or another flag starts with --tp.
    command = server({"model": {"source": "org/model"}, "runtime": {"name": "sglang"},
                      "resources": {"gpus": gpus}})["command"]
    assert command[:3] == ["python3", "-m", "sglang.launch_server"] and "--enable-metrics" in command
    sglang = argparse.ArgumentParser(allow_abbrev=False)
    sglang.add_argument("--tensor-parallel-size", "--tp-size", type=int, default=1, dest="tp_size")
    assert sglang.parse_known_args(command[3:])[0].tp_size == gpus


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_every_probe_waits_as_long_as_the_runtimes_health_check_takes(runtime: str):
    # SGLang's /health sends a one-token request and answers after 1 s at the soonest (it sleeps 1 s before it first
    # looks for the answer): under the kubelet's default 1-s timeout its startup probe never passed, and the pod
    # was killed after the hour the probe allows, never ready.
    source = "builtin:tiny" if runtime == "foresail" else "org/model"
    container = server({"model": {"source": source}, "runtime": {"name": runtime}})
    least = RUNTIMES[runtime].health_timeout_s
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe].get("timeoutSeconds", 1) >= least, (probe, container[probe])
    if runtime == "sglang":
        assert container["startupProbe"]["timeoutSeconds"] > 1
    else:  # the kubelet's default: these pods are as they were
        assert container["startupProbe"]["timeoutSeconds"] == 1


def test_an_image_override_keeps_the_runtimes_probe_timeout():
    spec = parse_spec({"model": {"source": "org/model"}, "runtime": {"name": "sglang", "image": "mirror/sglang:1"}})
    runtime = runtime_for(spec)
    assert runtime.image == "mirror/sglang:1" and runtime.health_timeout_s == RUNTIMES["sglang"].health_timeout_s
    assert runtime.metrics == RUNTIMES["sglang"].metrics


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="runs a process as root with the planned capabilities (util-linux setpriv)")
@pytest.mark.parametrize("runtime", ["vllm", "tgi", "sglang"])
def test_a_root_engine_can_write_to_a_model_cache_folder_of_uid_10001(runtime: str, tmp_path: Path):
    # docs/install.md has a model.cache.hostPath folder made for uid 10001 (0755), as fetch-model and the foresail
    # runtime write there; these engines run as root, and with every capability dropped root could not make
    # HF_HOME (/models-cache/hf) in it: no weights could be downloaded.
    cache = tmp_path / "models-cache"
    cache.mkdir()
    os.chown(cache, 10001, 10001)
    cache.chmod(0o755)
    context = server({"model": {"source": "org/model", "cache": {"hostPath": "/var/cache/models"}},
                      "runtime": {"name": runtime}})["securityContext"]
    assert "runAsUser" not in context and context["capabilities"]["drop"] == ["ALL"]
    bounding = ",".join(["-all", *(f"+{cap.lower()}" for cap in context["capabilities"].get("add", []))])
    made = subprocess.run(["setpriv", f"--bounding-set={bounding}", "--no-new-privs", "--", "mkdir", str(cache / "hf")],
                          capture_output=True, text=True, timeout=10, check=False)
    assert made.returncode == 0, made.stderr
