"""Where a model comes from, checked before torch is imported so that a bad path fails at once."""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BUILTIN_TINY = "builtin:tiny"


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


def check_fits(source: ModelSource, bytes_per_parameter: int) -> None:
    """Refuse a model whose weights alone, as loaded, exceed the memory left on this machine."""
    import psutil

    try:
        size = loaded_weights_bytes(source, bytes_per_parameter)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:  # a truncated or corrupt file
        raise ModelLoadError(f"cannot read the weights of {source.location}: {exc}") from exc
    available = psutil.virtual_memory().available
    if size > available:
        raise ModelLoadError(
            f"the model's weights ({size / 2**30:.1f} GiB) do not fit in the {available / 2**30:.1f} GiB of memory left"
        )


def loaded_weights_bytes(source: ModelSource, bytes_per_parameter: int) -> int:
    """The memory the weights take once loaded (none known for a Hub id before download): a GGUF file's dequantized
    to float32 (4 to 8 times the file), safetensors' at ``bytes_per_parameter``, and at least the files' size."""
    if source.kind == "gguf":
        path = Path(source.location)
        return max(path.stat().st_size, 4 * gguf_parameters(path))
    if source.kind != "folder":
        return 0
    size = 0
    for path in Path(source.location).iterdir():
        if path.suffix in (".safetensors", ".bin") and path.is_file():
            parameters = safetensors_parameters(path) if path.suffix == ".safetensors" else 0
            size += max(path.stat().st_size, bytes_per_parameter * parameters)
    return size


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
