"""Where a model comes from, checked before torch is imported so that a bad path fails at once."""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

BUILTIN_TINY = "builtin:tiny"
CGROUP_ROOT = Path("/sys/fs/cgroup")  # where the container's cgroup is mounted (v2; v1's memory controller below)
# this process's cgroups: without a cgroup namespace (cgroup v1, Docker's --cgroupns=host) the mount holds the host's
# whole tree, and the process's own cgroup is the folder this file names
PROC_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit number (v2 writes "max")
_CGROUP_NO_LIMIT = 1 << 62


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says why in words an operator can act on."""


@dataclass(frozen=True)
class ModelSource:
    """A checked ``--model``: ``kind`` is builtin, gguf, folder or hub."""

    kind: str
    location: str

    @property
    def default_name(self) -> str:
        """The name clients use when ``--served-model-name`` is not given."""
        return Path(self.location).stem if self.kind == "gguf" else self.location


def resolve_source(model: str) -> ModelSource:
    """Classify ``--model`` and refuse a path that is not there or not a model."""
    if model == BUILTIN_TINY:
        return ModelSource("builtin", model)
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist")
        return ModelSource("gguf", str(path))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} is a folder but holds no config.json: not a transformers model")
        return ModelSource("folder", str(path))
    if model.startswith((".", "/", "~")) or path.exists() or model.count("/") > 1:
        raise ModelLoadError(f"model path {path} does not exist or is not a folder or a .gguf file")
    return ModelSource("hub", model)


def check_fits(source: ModelSource, bytes_per_parameter: int, cgroup_root: Path | None = None) -> None:
    """Refuse a model whose weights alone, as loaded, exceed the memory left on this machine or in this container
    (its cgroup, under ``cgroup_root``, default ``CGROUP_ROOT``)."""
    try:
        size = loaded_weights_bytes(source, bytes_per_parameter)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:  # a truncated or corrupt file
        raise ModelLoadError(f"cannot read the weights of {source.location}: {exc}") from exc
    available, where = memory_left(cgroup_root or CGROUP_ROOT)
    if size > available:
        raise ModelLoadError(
            f"the model's weights ({size / 2**30:.1f} GiB) do not fit in the {available / 2**30:.1f} GiB of memory "
            f"left {where}"
        )


def memory_left(cgroup_root: Path, proc_cgroup: Path | None = None) -> tuple[int, str]:
    """The bytes left for the weights and where: the machine's available memory, or less under the memory limit
    of the container's cgroup (mounted at ``cgroup_root``), which the kernel enforces by killing the process."""
    import psutil

    available, where = psutil.virtual_memory().available, "on this machine"
    cgroup = cgroup_memory(cgroup_root, proc_cgroup)
    if cgroup is not None and cgroup[0] - cgroup[1] < available:
        limit, used, limit_file = cgroup
        available = max(limit - used, 0)
        where = f"under the container's memory limit of {limit / 2**30:.1f} GiB ({limit_file})"
    return available, where


def cgroup_memory(root: Path, proc_cgroup: Path | None = None) -> tuple[int, int, Path] | None:
    """The memory limit of this process's cgroup under the mount ``root`` (v2, else v1), its usage less the inactive
    page cache (reclaimed before the kernel kills; the kubelet counts usage the same) and the file of the limit; None
    without a limit or a readable cgroup. The nearest limit counts: of the cgroup that ``proc_cgroup`` (default
    ``PROC_CGROUP``) names, of its parents, or of the mount's root (the container's own in a cgroup namespace)."""
    own_v2, own_v1 = _own_cgroups(proc_cgroup or PROC_CGROUP)
    folders = [(folder, "memory.max", "memory.current", "inactive_file") for folder in _cgroup_folders(root, own_v2)]
    folders += [(folder, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
                for folder in _cgroup_folders(root / "memory", own_v1)]
    for folder, limit_name, usage_name, inactive in folders:
        limit_file, usage_file, stat_file = folder / limit_name, folder / usage_name, folder / "memory.stat"
        try:
            limit_text = limit_file.read_text().strip()
            if limit_text == "max" or int(limit_text) >= _CGROUP_NO_LIMIT:
                continue
            used = int(usage_file.read_text())
        except (OSError, ValueError):
            continue
        return int(limit_text), max(used - _stat_value(stat_file, inactive), 0), limit_file
    return None


def _own_cgroups(proc_cgroup: Path) -> tuple[str, str]:
    """This process's cgroup paths, as /proc/self/cgroup gives them: v2's and v1's memory controller's ("/" if none)."""
    v2 = v1 = "/"
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return v2, v1
    for hierarchy, controllers, path in (line.split(":", 2) for line in lines if line.count(":") >= 2):
        if hierarchy == "0":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2, v1


def _cgroup_folders(mount: Path, own: str) -> list[Path]:
    """The folders of the cgroup ``own`` and of its parents under ``mount``, nearest first, ``mount`` last."""
    relative = PurePosixPath(own.lstrip("/"))
    return [mount / folder for folder in (relative, *relative.parents)]


def _stat_value(path: Path, key: str) -> int:
    """One value of a cgroup's memory.stat, 0 when it is not there."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def loaded_weights_bytes(source: ModelSource, bytes_per_parameter: int) -> int:
    """The memory the weights take once loaded (none known for a Hub id before download): a GGUF file's dequantized
    to float32 (4 to 8 times the file), safetensors' at ``bytes_per_parameter``, and at least the files' size."""
    if source.kind == "gguf":
        path = Path(source.location)
        return max(path.stat().st_size, 4 * gguf_parameters(path))
    if source.kind != "folder":
        return 0
    size = 0
    for path in weight_files(Path(source.location)):
        parameters = safetensors_parameters(path) if path.suffix == ".safetensors" else 0
        size += max(path.stat().st_size, bytes_per_parameter * parameters)
    return size


def weight_files(folder: Path) -> list[Path]:
    """The weight files transformers loads from a model folder, where it finds them in its order: model.safetensors,
    the shards its index names, pytorch_model.bin, the shards of that one's index (a folder may hold the same weights
    twice: both formats, or Mistral's consolidated.safetensors beside its shards). Without any: every .safetensors
    and .bin file."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (folder / single).is_file():
            return [folder / single]
        if (folder / index).is_file():
            shards = dict(json.loads((folder / index).read_text())["weight_map"]).values()
            return [folder / name for name in sorted(set(shards))]
    return [path for path in folder.iterdir() if path.suffix in (".safetensors", ".bin") and path.is_file()]


def safetensors_parameters(path: Path) -> int:
    """The number of parameters in a safetensors file, from its JSON header."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    return sum(math.prod(tensor["shape"]) for name, tensor in header.items() if name != "__metadata__")


# GGUF's metadata value types (gguf-py's GGUFValueType) and the bytes of the fixed-size ones
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def gguf_parameters(path: Path) -> int:
    """The number of parameters in a GGUF file (v2 or v3), from its tensor infos; the metadata before them (a
    vocabulary of 100,000 strings) is skipped, not decoded."""
    with path.open("rb") as file:
        data = file.read(8 + 16)
        if data[:4] != b"GGUF":
            raise ModelLoadError(f"{path} is not a GGUF file")
        n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
        reader = _GGUFReader(file)
        for _ in range(n_kv):
            reader.skip_string()
            reader.skip_value(reader.unpack("<I"))
        parameters = 0
        for _ in range(n_tensors):
            reader.skip_string()
            n_dims = reader.unpack("<I")
            parameters += math.prod(reader.unpack("<Q") for _ in range(n_dims))
            reader.file.seek(4 + 8, os.SEEK_CUR)  # the tensor's type and offset
        return parameters


class _GGUFReader:
    """Reads and skips GGUF header fields."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file

    def unpack(self, fmt: str) -> int:
        """One little-endian integer."""
        return int(struct.unpack(fmt, self.file.read(struct.calcsize(fmt)))[0])

    def skip_string(self) -> None:
        """Skip a length-prefixed string."""
        self.file.seek(self.unpack("<Q"), os.SEEK_CUR)

    def skip_value(self, value_type: int) -> None:
        """Skip a metadata value of ``value_type`` (an array's elements one by one only when they are strings)."""
        if value_type == _GGUF_STRING:
            self.skip_string()
        elif value_type == _GGUF_ARRAY:
            element_type, count = self.unpack("<I"), self.unpack("<Q")
            if element_type in _GGUF_SCALARS:
                self.file.seek(count * struct.calcsize("<" + _GGUF_SCALARS[element_type]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    self.skip_value(element_type)
        elif value_type in _GGUF_SCALARS:
            self.file.seek(struct.calcsize("<" + _GGUF_SCALARS[value_type]), os.SEEK_CUR)
        else:
            raise ModelLoadError(f"{self.file.name} has a GGUF metadata value of unknown type {value_type}")


def hub_offline() -> bool:
    """True when the Hub must not be reached (HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
