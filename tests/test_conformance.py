"""aezoo.testing: first-party variants pass; each check catches the defect it is for."""

from __future__ import annotations

import pytest
from plugin_fixtures import GOOD_COMPONENTS, FakeSite, variant_source

from aezoo import testing

FIRST_PARTY_BAD_PARAMS = {
    "encoder": [{"channels": []}, {"channels": [0, 8]}, {"kernel_size": 4}],
    "decoder": [{"channels": [-1]}, {"kernel_size": 0}],
}


@pytest.mark.parametrize("name", testing.variant_names(dist="aezoo"))
def test_first_party_variants_conform(name):
    ran = testing.check_variant(name, bad_params=FIRST_PARTY_BAD_PARAMS)
    assert {"gradients", "seed determinism", "save/load", "bf16 autocast", "param_count",
            "impossible shapes", "torch-free descriptors"} <= set(ran)
    assert sum(r.startswith("shape round trip") for r in ran) >= 2  # example_shapes too


def test_variant_and_component_names_filter_by_distribution():
    assert "aezoo:cae-upsample" in testing.variant_names("aezoo")
    assert testing.variant_names("not-installed") == []
    assert set(testing.component_names("loss", "aezoo")) >= {"aezoo:bce", "aezoo:mse"}


# Defective variants: GOOD_COMPONENTS with one thing broken each. Every source replaces
# part of the good module, so the rest of the checks keep passing.
DEFECTS = {
    "unused-param": ("_dec", '''
def _dec(params, latent_shape, output_shape):
    from torch import nn

    class Dec(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(latent_shape[0], output_shape[0], 3, padding=1)
            self.spare = nn.Linear(2, 2)  # never used in forward
            self.latent_shape = tuple(latent_shape)
            self.output_shape = tuple(output_shape)

        def forward(self, z):
            return self.conv(z)

    return Dec()
'''),
    "unseeded": ("_enc", '''
def _enc(params, input_shape):
    import random
    from torch import nn

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(input_shape[0], params.width, 3, padding=1)
            with __import__("torch").no_grad():
                self.conv.bias.fill_(random.random())  # not torch's generator
            self.input_shape = tuple(input_shape)
            self.latent_shape = (params.width, *input_shape[1:])

        def forward(self, x):
            return self.conv(x)

    return Enc()
'''),
    "hidden-state": ("_enc", '''
def _enc(params, input_shape):
    import torch
    from torch import nn

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(input_shape[0], params.width, 3, padding=1)
            self.scale = torch.rand(1)  # not a buffer: lost by save/load
            self.input_shape = tuple(input_shape)
            self.latent_shape = (params.width, *input_shape[1:])

        def forward(self, x):
            return self.conv(x) * self.scale

    return Enc()
'''),
    "raw-shape-error": ("_enc", '''
def _enc(params, input_shape):
    from torch import nn

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            if input_shape[1] < 3:
                raise RuntimeError("kernel size can't be greater than actual input size")
            self.conv = nn.Conv2d(input_shape[0], params.width, 3, padding=1)
            self.input_shape = tuple(input_shape)
            self.latent_shape = (params.width, *input_shape[1:])

        def forward(self, x):
            return self.conv(x)

    return Enc()
'''),
    "probability-loss": ("_loss", '''
def _loss(params):
    from torch import nn

    class L(nn.Module):
        def forward(self, logits, target):
            return ((logits.float() - target.float()) ** 2).mean()  # treats logits as probs

    return L()
'''),
    "lax-params": ("class Params", '''
class Params(BaseModel):
    width: int = Field(4, ge=1)  # no extra="forbid": typos pass silently
'''),
    "wrong-latent": ("_enc", '''
def _enc(params, input_shape):
    from torch import nn

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(input_shape[0], params.width, 3, padding=1)
            self.input_shape = tuple(input_shape)
            self.latent_shape = (params.width, input_shape[1] * 2, input_shape[2])  # wrong

        def forward(self, x):
            return self.conv(x)

    return Enc()
'''),
}
EXPECTED = {  # defect -> (failed check, phrase in its message, number of failed checks)
    "unused-param": ("gradients", "spare.weight gets no gradient", 1),
    "unseeded": ("seed determinism", "two builds with seed 0 differ", 1),
    "hidden-state": ("save/load", "different outputs", 1),
    "raw-shape-error": ("impossible shapes", "raised RuntimeError", 1),
    "probability-loss": ("loss", "must take logits", 1),
    "lax-params": ("encoder 'lax-params-encoder' params", "accepts unknown keys", 2),
    "wrong-latent": ("shape round trip 1x8x8", "declares latent_shape 4x16x8", 2),
}


def _with_defect(defect: str) -> str:
    """GOOD_COMPONENTS with one definition swapped for the defective one."""
    marker, replacement = DEFECTS[defect]
    source = GOOD_COMPONENTS
    start = source.index(f"\n{marker}" if marker.startswith("class") else f"\ndef {marker}(")
    end = source.index("\n\n\n", start + 1)
    return source[:start] + "\n" + replacement.strip("\n") + source[end:]


@pytest.fixture
def site(tmp_path, monkeypatch):
    with FakeSite(tmp_path / "site", monkeypatch) as s:
        yield s


def _install(site: FakeSite, defect: str, components: str, **variant: object) -> str:
    mod = f"plug_{defect.replace('-', '_')}"
    names = {kind: f"{defect}-{kind}" for kind in ("encoder", "decoder", "loss")}
    groups = {f"aezoo.{g}": {names[k]: f"{mod}:{k}"}
              for k, g in (("encoder", "encoders"), ("decoder", "decoders"),
                           ("loss", "losses"))}
    groups["aezoo.variants"] = {defect: f"{mod}_v:variant"}
    site.add(f"plug-{defect}", entry_points=groups, modules={
        mod: components,
        f"{mod}_v": variant_source(names["encoder"], names["decoder"], names["loss"],
                                   input_shape=(1, 8, 8), **variant)})
    return defect


def test_a_crashing_builder_is_a_failure_not_a_crash(site):
    name = _install(site, "crash", GOOD_COMPONENTS.replace(
        "def _dec(params, latent_shape, output_shape):\n",
        "def _dec(params, latent_shape, output_shape):\n    raise KeyError('oops')\n"))
    with pytest.raises(AssertionError, match="  - build: KeyError: 'oops'"):
        testing.check_variant(name, torch_free=False)


def test_a_good_fake_plugin_passes(site):
    name = _install(site, "fine", GOOD_COMPONENTS, param_count=(36 + 4) + (36 + 1),
                    example_shapes=((3, 5, 7),))
    ran = testing.check_variant(name, torch_free=False)
    assert "shape round trip 3x5x7" in ran


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_check_catches_its_defect(site, defect):
    name = _install(site, defect, _with_defect(defect))
    label, phrase, count = EXPECTED[defect]
    with pytest.raises(AssertionError) as err:
        testing.check_variant(name, torch_free=False)
    message = str(err.value)
    assert f"variant '{name}' failed {count} conformance check" in message, message
    assert f"  - {label}: " in message and phrase in message, message


def test_a_wrong_param_count_names_the_real_one(site):
    name = _install(site, "counted", GOOD_COMPONENTS, param_count=1000)
    with pytest.raises(AssertionError, match="declares param_count=1,000 but the model at "
                                             "1x8x8 has 77 parameters"):
        testing.check_variant(name, torch_free=False)


def test_a_descriptor_module_importing_torch_is_caught(site):
    name = _install(site, "heavy", "import torch\n" + GOOD_COMPONENTS)
    with pytest.raises(AssertionError, match="imports torch"):
        testing.check_torch_free([("encoder", f"{name}-encoder")])


def test_params_checks_reject_accept_anything_fields_and_missing_bad_values():
    from typing import Any

    from pydantic import BaseModel, ConfigDict

    class Loose(BaseModel):
        model_config = ConfigDict(extra="forbid")
        anything: Any = 1
        rate: float = 0.5

    with pytest.raises(AssertionError, match="Loose.anything accepts any value"):
        testing.check_params_model(Loose)
    testing.check_params_model(Loose, unchecked_fields=["anything"])
    with pytest.raises(AssertionError, match="accepts the bad value {'rate': -1.0}"):
        testing.check_params_model(Loose, unchecked_fields=["anything"], bad=[{"rate": -1.0}])
