"""The conformance kit tells the truth about modes: BatchNorm and stochastic models pass,
single-part plugins have their own checks, and checks can be skipped or models shrunk."""

from __future__ import annotations

import pytest
import torch

import aezoo
from aezoo import testing


def test_a_batchnorm_model_passes_the_kit() -> None:
    ran = testing.check_variant("cae-resnet", overrides={
        "encoder_params": {"channels": [8, 8, 8], "latent_channels": 4, "norm": "batch"},
        "decoder_params": {"channels": [8, 8, 8], "norm": "batch"}})
    assert "bf16 autocast" in ran and "seed determinism" in ran


def test_the_build_time_probe_leaves_batchnorm_statistics_alone() -> None:
    model = aezoo.build("cae-resnet", encoder_params={"channels": [8, 8], "norm": "batch"},
                        decoder_params={"channels": [8, 8], "norm": "batch"})
    stats = [b for n, b in model.named_buffers() if n.endswith("num_batches_tracked")]
    assert stats and all(int(b) == 0 for b in stats)  # the shape probe ran in eval mode


def test_skip_leaves_checks_out_and_says_which_ran() -> None:
    ran = testing.check_variant("cae-upsample", skip=("bf16", "shape round trip"))
    assert "bf16 autocast" not in ran and not [r for r in ran if r.startswith("shape")]
    assert "save/load" in ran


def test_a_plugin_with_only_a_loss_or_a_transform_has_its_checks() -> None:
    testing.check_loss_component("bce")
    for name in ("gaussian", "salt-pepper", "mask"):
        testing.check_transform(name)


def test_check_transform_catches_the_global_rng(tmp_path, monkeypatch) -> None:
    from plugin_fixtures import FakeSite

    leaky = (
        "from pydantic import BaseModel, ConfigDict\n"
        "from aezoo.protocols import TransformComponent\n"
        "class P(BaseModel):\n    model_config = ConfigDict(extra='forbid')\n"
        "def build(params):\n"
        "    import torch\n"
        "    return lambda x, g: (x + torch.rand(x.shape) * 0.1).clamp(0, 1)\n"
        "leaky = TransformComponent(P, build)\n")
    with FakeSite(tmp_path / "site", monkeypatch) as site:
        site.add("plug-leaky", entry_points={"aezoo.transforms": {"leaky": "leaky_mod:leaky"}},
                 modules={"leaky_mod": leaky})
        with pytest.raises(AssertionError, match="global RNG"):
            testing.check_transform("leaky")


def test_zero_initialised_parameters_are_allowed() -> None:
    model = aezoo.build("cae-upsample")
    last = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    torch.nn.init.zeros_(last.weight)  # blocks every upstream gradient at init
    testing.check_gradients(model)
