"""A weight set: trained weights of one variant, named ``VARIANT.TAG`` (timm's convention).

A plugin declares one per entry point in the ``aezoo.weights`` group. The descriptor is
data only (no torch): ``aezoo list --pretrained`` reads it. Where the weights live:

- ``package:MODULE/PATH``: a file shipped inside a plugin's package (importlib.resources);
- ``hf://ORG/REPO[@REVISION]``: the ``model.safetensors`` of a Hugging Face Hub repo;
- ``https://...`` (or ``http://``: the SHA-256 guards it): a URL, downloaded once into
  aezoo's cache;
- ``NAME.safetensors``: a file beside the card (a shared folder's ``config.json``).

The file's SHA-256 is declared and checked before the weights are used.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aezoo.errors import PluginError

CARD_FILE = "config.json"  # a shared model folder's machine-readable card
WEIGHTS_FILE = "model.safetensors"
TAG_PATTERN = r"[a-z0-9][a-z0-9_-]*"
MAX_CARD_BYTES = 1 << 20  # a card is a few KB; a hostile one is refused before parsing


class WeightSet(BaseModel):
    """Trained weights of ``variant``, their provenance and what they measure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    variant: str = Field(min_length=1, max_length=200)
    tag: str = Field(pattern=f"^{TAG_PATTERN}$", max_length=100)
    file: str = Field(min_length=1, max_length=2000,
                      description="package:MODULE/PATH, hf://ORG/REPO[@REV] or https://URL")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, ge=0, description="bytes of the file, when known")
    dataset: str = Field(min_length=1, max_length=2000)
    recipe: dict[str, Any] = Field(description="the complete run spec that trained it")
    metrics: dict[str, Any] = Field(description="`aezoo eval --json` on that dataset")
    license: str = Field(min_length=1, max_length=200)
    description: str = Field(max_length=1000)
    default: bool = Field(False, description="the variant's default tag (pretrained=True)")
    init: str | None = Field(None, description="the weights this run started from")

    @property
    def name(self) -> str:
        return f"{self.variant}.{self.tag}"

    @field_validator("file")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not (value.startswith(("package:", "hf://", "https://", "http://"))
                or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors", value)):
            raise ValueError("must be package:MODULE/PATH, hf://ORG/REPO[@REV], https://URL "
                             "or a .safetensors file name beside the card")
        return value


def read_card(text: str | bytes, where: str) -> WeightSet:
    """A weight set from a ``config.json`` card (refused in one line when it is not one)."""
    if len(text) > MAX_CARD_BYTES:
        raise PluginError(f"{where} is {len(text):,} bytes, more than a card's "
                          f"{MAX_CARD_BYTES:,}", "write it again with `aezoo push --to`")
    try:
        raw = json.loads(text)
        fields = raw.get("aezoo") if isinstance(raw, dict) else None
        return WeightSet.model_validate(fields)
    except (ValueError, RecursionError, ValidationError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            first = f"{'.'.join(str(p) for p in err['loc']) or 'aezoo'}: {err['msg']}"
        raise PluginError(f"{where} is not an aezoo weight-set card ({first[:200]})",
                          "write it again with `aezoo push RUN --to DIR`") from None


def packaged(module: str, folder: str, *, default: bool = False) -> WeightSet:
    """The weight set in ``folder`` (written by ``aezoo push RUN --to``) of a plugin's
    package ``module``: reads its ``config.json``, points ``file`` at its weights.

    For a plugin's ``aezoo.weights`` entry point (torch-free: listings read it)."""
    root = resources.files(module).joinpath(folder)
    card = read_card(root.joinpath(CARD_FILE).read_bytes(), f"{module}/{folder}/{CARD_FILE}")
    return card.model_copy(update={"file": f"package:{module}/{folder}/{WEIGHTS_FILE}",
                                   "default": default})


def split_name(name: str) -> tuple[str, str] | None:
    """``cae-upsample.mnist5k`` -> (variant, tag); None when ``name`` is not of that form."""
    variant, dot, tag = name.rpartition(".")
    if not dot or not variant or not re.fullmatch(TAG_PATTERN, tag):
        return None
    return variant, tag
