"""aezoo: a plugin-based model zoo for convolutional autoencoders.

Importing aezoo is cheap: torch is imported when a model is built or loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aezoo._version import __version__
from aezoo.api import (
    bench,
    compare,
    encode,
    evaluate,
    export,
    fit,
    interpolate,
    reconstruct,
    runs,
    sample,
    score,
)
from aezoo.errors import AezooError, UsageError
from aezoo.plotting import plot

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from aezoo.model import Autoencoder
    from aezoo.specs import ModelSpec

__all__ = ["AezooError", "bench", "build", "compare", "encode", "evaluate", "export", "fit",
           "interpolate", "list_pretrained", "list_variants", "load", "plot", "reconstruct", "runs",
           "sample", "save", "score", "__version__"]

def build(name_or_spec: str | ModelSpec | dict[str, Any], *, pretrained: bool | str = False,
          **overrides: Any) -> Autoencoder:
    """Build a model from a variant name, a ModelSpec or a dict.

    Overrides: ``input_shape=(3, 32, 32)``, ``loss="mse"``, ``encoder="strided"``,
    ``encoder_params={"channels": [32, 16, 8]}``, ``init="glorot"``, ...

    ``pretrained=True`` loads the variant's default weight set (``aezoo list
    --pretrained``), ``pretrained="TAG"`` the weight set ``VARIANT.TAG``; with overrides,
    every tensor of the weights must still fit the model (else a ShapeError names them).
    """
    from aezoo.model import build as _build

    if pretrained is False:
        return _build(name_or_spec, **overrides)
    if not isinstance(name_or_spec, str):
        raise UsageError("pretrained= needs a variant name", "build('cae-upsample', "
                         "pretrained=True), or aezoo.load('VARIANT.TAG')")
    from aezoo.pretrained import default_tag, weight_set

    ws = default_tag(name_or_spec) if pretrained is True else weight_set(
        f"{name_or_spec}.{pretrained}")
    if not overrides:
        return load(ws.name)
    from aezoo.checkpoint import load_matching
    from aezoo.pretrained import weights_file

    model = _build(name_or_spec, **overrides)
    load_matching(model, weights_file(ws), ws.name, strict=True)
    return model


def save(model: Autoencoder, path: str | Path) -> Path:
    """Write weights + spec to a safetensors file, atomically."""
    from aezoo.checkpoint import save as _save

    return _save(model, path)


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild a model from a file saved by aezoo, a run directory (its final model, else
    its last checkpoint), a weight set ``VARIANT.TAG`` (``aezoo.list_pretrained()``) or a
    Hub repo ``hf://ORG/REPO[@REVISION]``, using the installed plugins."""
    import os

    from aezoo.checkpoint import load as _load
    from aezoo.pretrained import is_reference, locate

    text = os.fspath(path)
    return _load(locate(text).path if is_reference(text) else path, device)


def list_pretrained(pattern: str | None = None) -> list[str]:
    """Installed weight sets ``VARIANT.TAG``, optionally filtered ('cae-*.mnist5k')."""
    from aezoo.pretrained import list_weight_sets

    return [w.name for w in list_weight_sets(pattern)]


def list_variants(pattern: str | None = None) -> list[str]:
    """Installed variant names, optionally filtered by an fnmatch pattern ('cae-*')."""
    from aezoo import registry

    return registry.names("variant", pattern)
