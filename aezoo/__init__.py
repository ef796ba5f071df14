"""aezoo: a plugin-based model zoo for convolutional autoencoders.

Importing aezoo is cheap: torch is imported when a model is built or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aezoo._version import __version__
from aezoo.errors import AezooError

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from aezoo.model import Autoencoder
    from aezoo.specs import ModelSpec

__all__ = ["AezooError", "build", "list_variants", "load", "save", "__version__"]


def build(name_or_spec: str | ModelSpec | dict[str, Any], **overrides: Any) -> Autoencoder:
    """Build a model from a variant name, a ModelSpec or a dict.

    Overrides: ``input_shape=(3, 32, 32)``, ``loss="mse"``, ``encoder="strided"``,
    ``encoder_params={"channels": [32, 16, 8]}``, ``init="glorot"``, ...
    """
    from aezoo.model import build as _build

    return _build(name_or_spec, **overrides)


def save(model: Autoencoder, path: str | Path) -> Path:
    """Write weights + spec to a safetensors file, atomically."""
    from aezoo.checkpoint import save as _save

    return _save(model, path)


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild a model from a file saved by aezoo (or a run directory: its final model,
    else its last checkpoint), using the installed plugins."""
    from aezoo.checkpoint import load as _load

    return _load(path, device)


def list_variants(pattern: str | None = None) -> list[str]:
    """Installed variant names, optionally filtered by an fnmatch pattern ('cae-*')."""
    from aezoo import registry

    return registry.names("variant", pattern)
