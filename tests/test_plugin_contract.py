"""The plugin contract, second edition: what a third-party plugin (a VQ-VAE, a KL-annealed
beta-VAE, a corruption, losses, a metric, a callback, a command) needed from aezoo.
Fake installed distributions, tiny models, in process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from plugin_fixtures import GOOD_COMPONENTS, FakeSite, variant_source

import aezoo


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    with FakeSite(tmp_path / "site", monkeypatch) as s:
        yield s


SOBEL_LAYERS = """
import torch
import torch.nn.functional as F
from torch import nn

SOBEL = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])  # at import


class Edges(nn.Module):
    def __init__(self, input_shape, width):
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], width, 3, padding=1)
        self.input_shape = tuple(input_shape)
        self.latent_shape = (width, *input_shape[1:])

    def forward(self, x):
        k = SOBEL.to(x).expand(x.shape[1], 1, 3, 3)
        return self.conv(x + F.conv2d(x, k, padding=1, groups=x.shape[1]))


def build(params, input_shape):
    return Edges(input_shape, params.width)
"""

SOBEL_COMPONENTS = GOOD_COMPONENTS + """
edges = EncoderComponent(params=Params, build="sobel_layers:build", description="edges")
"""


def test_a_plugin_module_imported_by_load_keeps_its_tensors_off_meta(
        site: FakeSite, tmp_path: Path) -> None:
    site.add("aezoo-sobel", entry_points={
        "aezoo.encoders": {"sobel": "sobel_parts:edges"},
        "aezoo.decoders": {"sobel-dec": "sobel_parts:decoder"},
        "aezoo.losses": {"sobel-loss": "sobel_parts:loss"},
        "aezoo.variants": {"sobel": "sobel_variant:variant"}},
        modules={"sobel_parts": SOBEL_COMPONENTS, "sobel_layers": SOBEL_LAYERS,
                 "sobel_variant": variant_source("sobel", "sobel-dec", "sobel-loss")})
    model = aezoo.build("sobel")
    aezoo.save(model, tmp_path / "m.safetensors")
    for module in ("sobel_parts", "sobel_layers", "sobel_variant"):  # as a fresh process
        sys.modules.pop(module)  # (`aezoo eval RUN`): load imports the builder's module
    site.add("aezoo-unused")  # clears the registry's caches
    loaded = aezoo.load(tmp_path / "m.safetensors")
    assert sys.modules["sobel_layers"].SOBEL.device.type == "cpu"
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x))
