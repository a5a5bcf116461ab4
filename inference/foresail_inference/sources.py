"""Where a model comes from, checked before torch is imported so that a bad path fails at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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


def check_fits(paths: list[Path]) -> None:
    """Refuse a model whose weight files alone exceed the memory left on this machine."""
    import psutil

    size = sum(p.stat().st_size for p in paths if p.is_file())
    available = psutil.virtual_memory().available
    if size > available:
        raise ModelLoadError(
            f"the model's weights ({size / 2**30:.1f} GiB) do not fit in the {available / 2**30:.1f} GiB of memory left"
        )


def weight_files(source: ModelSource) -> list[Path]:
    """The files whose size bounds the model's memory (none known for a Hub id before download)."""
    if source.kind == "gguf":
        return [Path(source.location)]
    if source.kind == "folder":
        return [p for p in Path(source.location).iterdir() if p.suffix in (".safetensors", ".bin")]
    return []


def hub_offline() -> bool:
    """True when the Hub must not be reached (HF_HUB_OFFLINE=1)."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
