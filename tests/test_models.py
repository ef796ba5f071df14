"""Models: the tutorial CAE exactly, every component combination, shapes, init, overrides."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import aezoo
from aezoo import registry
from aezoo.errors import ShapeError, SpecError

# The Keras tutorial model (../shared/seeds/000_*.txt), layer by layer, as
# (layer, filters, padding, activation). Transcribed here so the test runs anywhere;
# test_tutorial_transcription checks it against the seed file where that file exists.
TUTORIAL = [
    ("conv", 16, "same", "relu"), ("pool",),
    ("conv", 8, "same", "relu"), ("pool",),
    ("conv", 8, "same", "relu"), ("pool",),
    ("conv", 8, "same", "relu"), ("up",),
    ("conv", 8, "same", "relu"), ("up",),
    ("conv", 16, "valid", "relu"), ("up",),
    ("conv", 1, "same", "sigmoid"),
]
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

ENCODERS = ("pool", "strided")
DECODERS = ("upsample", "convtranspose")
LOSSES = ("bce", "mse")
SHAPES = ((1, 28, 28), (3, 32, 32))


def keras_shapes(input_shape: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Output shape after each TUTORIAL layer, by Keras' rules (3x3 kernels, 'same' pool)."""
    c, h, w = input_shape
    out = []
    for layer in TUTORIAL:
        if layer[0] == "conv":
            c = layer[1]
            if layer[2] == "valid":
                h, w = h - 2, w - 2
        elif layer[0] == "pool":
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        else:
            h, w = h * 2, w * 2
        out.append((c, h, w))
    return out


def trace(model: aezoo.model.Autoencoder, x: torch.Tensor) -> list[tuple[nn.Module, tuple]]:
    """(leaf module, output shape) in the order the forward pass runs them."""
    calls: list[tuple[nn.Module, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, _i, out: calls.append((mod, tuple(out.shape[1:]))))
             for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return calls


def as_layers(calls: list[tuple[nn.Module, tuple]]) -> list[tuple]:
    """Leaf modules folded into TUTORIAL's vocabulary (a conv takes the ReLU after it)."""
    layers: list[tuple] = []
    for mod, _ in calls:
        if isinstance(mod, nn.Conv2d):
            assert mod.kernel_size == (3, 3) and mod.stride == (1, 1)
            padding = {(1, 1): "same", (0, 0): "valid"}[mod.padding]
            layers.append(("conv", mod.out_channels, padding, "sigmoid"))
        elif isinstance(mod, nn.ReLU):
            assert layers and layers[-1][0] == "conv", "ReLU must follow a conv"
            layers[-1] = (*layers[-1][:3], "relu")
        elif isinstance(mod, nn.MaxPool2d):
            assert mod.kernel_size == 2 and mod.stride == 2 and mod.ceil_mode  # Keras 'same'
            layers.append(("pool",))
        elif isinstance(mod, nn.Upsample):
            assert mod.scale_factor == 2 and mod.mode == "nearest"
            layers.append(("up",))
        elif not isinstance(mod, (nn.Identity,)) and list(mod.parameters()):
            pytest.fail(f"unexpected layer with parameters: {mod}")
    return layers


# --- the tutorial model --------------------------------------------------------------

def test_cae_upsample_has_4385_parameters() -> None:
    model = aezoo.build("cae-upsample")
    assert model.input_shape == (1, 28, 28)
    assert model.num_parameters() == 4385
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 4385
    # Independently: what the tutorial's convs hold (3x3 weights + bias each).
    channels, expected = 1, 0
    for layer in TUTORIAL:
        if layer[0] == "conv":
            expected += (channels * 9 + 1) * layer[1]
            channels = layer[1]
    assert expected == 4385


def test_cae_upsample_layers_and_shapes_match_the_tutorial() -> None:
    model = aezoo.build("cae-upsample")
    calls = trace(model, torch.rand(2, 1, 28, 28))
    assert as_layers(calls) == TUTORIAL  # sigmoid: the Autoencoder's decode applies it
    shapes = [shape for mod, shape in calls if not isinstance(mod, nn.ReLU)]
    assert shapes == keras_shapes((1, 28, 28))
    assert model.latent_shape == (8, 4, 4)  # the tutorial's `encoded`
    assert model.spec.init == "glorot"  # Keras' initialisers (see DESIGN.md section 3)


@pytest.mark.skipif(not SEEDS.is_dir(), reason="tutorial seed files are not beside this checkout")
def test_tutorial_transcription_matches_the_seed_file() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(SEEDS.glob("*.txt")))
    code = text[text.index("# Encoder"):text.index("autoencoder = Model")]
    found: list[tuple] = []
    for m in re.finditer(r"(Conv2D|MaxPooling2D|UpSampling2D)\(([^)]*\)?[^)]*)\)", code):
        kind, args = m.groups()
        if kind == "Conv2D":
            filters = int(args.split(",")[0])
            assert "(3, 3)" in args
            padding = "same" if "padding='same'" in args else "valid"
            activation = re.search(r"activation='(\w+)'", args).group(1)  # type: ignore[union-attr]
            found.append(("conv", filters, padding, activation))
        else:
            found.append(("pool",) if kind == "MaxPooling2D" else ("up",))
    assert found == TUTORIAL


def test_every_variant_declares_its_true_parameter_count() -> None:
    names = registry.names("variant")
    assert {"cae-upsample", "cae-strided"} <= set(names)
    for name in names:
        variant = registry.variant(name)
        model = aezoo.build(name)
        assert model.input_shape == tuple(variant.input_shape), name
        assert variant.param_count == model.num_parameters(), name


# --- every combination ---------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("encoder", "decoder", "loss"),
                         list(itertools.product(ENCODERS, DECODERS, LOSSES)))
def test_every_combination_reconstructs_the_input_shape(
        encoder: str, decoder: str, loss: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = aezoo.build("cae-upsample", encoder=encoder, decoder=decoder, loss=loss,
                        input_shape=shape)
    assert (model.spec.encoder.name, model.spec.decoder.name, model.spec.loss.name) == (
        encoder, decoder, loss)
    x = torch.rand(3, *shape)
    z = model.encode(x)
    assert tuple(z.shape) == (3, *model.encoder.latent_shape)
    assert model.latent_shape == tuple(model.encoder.latent_shape)
    assert tuple(model.decoder.latent_shape) == model.latent_shape
    assert tuple(model.decode(z).shape) == (3, *shape)
    y = model(x).detach()
    assert tuple(y.shape) == (3, *shape)
    assert y.dtype == torch.float32
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0
    value = model.loss(x)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ["cae-upsample", "cae-strided"])
def test_forward_output_is_in_unit_range_for_any_input(name: str) -> None:
    torch.manual_seed(1)
    model = aezoo.build(name)
    for x in (torch.rand(4, 1, 28, 28), torch.randn(4, 1, 28, 28) * 1e3, torch.zeros(4, 1, 28, 28)):
        with torch.no_grad():
            y = model(x)
        assert torch.isfinite(y).all()
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


# --- impossible shapes fail at build time ----------------------------------------------

@pytest.mark.parametrize(("overrides", "words"), [
    ({"input_shape": (1, 30, 30)}, ["upsample", "30x30"]),
    ({"input_shape": (1, 28, 30)}, ["upsample", "28x30"]),
    ({"input_shape": (1, 1, 1)}, ["pool", "1x1", "too small"]),
    ({"encoder": "strided", "input_shape": (3, 1, 1)}, ["strided", "1x1", "too small"]),
    ({"input_shape": (1, 4, 4)}, ["pool", "4x4", "too small"]),
    ({"encoder_params": {"channels": [8] * 6}}, ["pool", "6 stages", "28x28"]),
    ({"decoder": "convtranspose", "decoder_params": {"channels": [8, 8]}},
     ["convtranspose", "2 stages", "28x28"]),
    ({"encoder": "strided", "decoder": "convtranspose",
      "decoder_params": {"channels": [8, 8, 8, 8]}}, ["convtranspose", "4 stages"]),
], ids=["upsample-30x30", "upsample-28x30", "pool-1x1", "strided-1x1", "pool-4x4",
        "pool-6-stages", "convtranspose-2-of-3-stages", "convtranspose-4-of-3-stages"])
def test_impossible_shapes_are_rejected_at_build_time(overrides: dict, words: list[str]) -> None:
    with pytest.raises(ShapeError) as info:
        aezoo.build("cae-upsample", **overrides)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert info.value.fix  # says what to do about it
    assert info.value.exit_code == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoder=st.sampled_from(ENCODERS), decoder=st.sampled_from(DECODERS),
       channels=st.integers(1, 3), height=st.integers(1, 48), width=st.integers(1, 48),
       enc_stages=st.integers(1, 4), dec_stages=st.integers(1, 4),
       enc_kernel=st.sampled_from([1, 3, 5]), dec_kernel=st.sampled_from([1, 3, 5]))
def test_any_shape_builds_exactly_or_raises_shape_error(
        encoder: str, decoder: str, channels: int, height: int, width: int, enc_stages: int,
        dec_stages: int, enc_kernel: int, dec_kernel: int) -> None:
    """No third outcome: never another exception, never a model of the wrong shape."""
    try:
        model = aezoo.build(
            "cae-upsample", encoder=encoder, decoder=decoder,
            input_shape=(channels, height, width),
            encoder_params={"channels": [4] * enc_stages, "kernel_size": enc_kernel},
            decoder_params={"channels": [4] * dec_stages, "kernel_size": dec_kernel})
    except ShapeError as exc:
        assert "\n" not in str(exc) and exc.fix
        return
    with torch.no_grad():
        y = model(torch.rand(2, channels, height, width))
    assert tuple(y.shape) == (2, channels, height, width)


# --- initialisation --------------------------------------------------------------------

def _glorot_bound(weight: torch.Tensor) -> float:
    receptive = weight[0, 0].numel()
    # Conv: (out, in, k, k); ConvTranspose: (in, out, k, k); the bound is symmetric.
    return math.sqrt(6.0 / ((weight.shape[0] + weight.shape[1]) * receptive))


@pytest.mark.parametrize(("encoder", "decoder"), [("pool", "upsample"),
                                                  ("strided", "convtranspose")])
def test_glorot_init_zero_biases_and_bounded_weights(encoder: str, decoder: str) -> None:
    torch.manual_seed(2)
    model = aezoo.build("cae-upsample", encoder=encoder, decoder=decoder, init="glorot")
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs
    for m in convs:
        assert m.bias is not None and torch.count_nonzero(m.bias) == 0
        bound = _glorot_bound(m.weight)
        largest = float(m.weight.detach().abs().max())
        assert largest <= bound
        assert largest > 0.5 * bound  # uniform over [-bound, bound], not a narrower init


def test_default_init_is_pytorchs() -> None:
    torch.manual_seed(3)
    model = aezoo.build("cae-upsample", init="default")
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert torch.count_nonzero(first.bias) > 0
    # PyTorch's bound 1/sqrt(fan_in) = 1/3 here exceeds Glorot's sqrt(6/153) ~= 0.198.
    assert float(first.weight.detach().abs().max()) > _glorot_bound(first.weight)


# --- build overrides -------------------------------------------------------------------

def test_build_loss_override() -> None:
    torch.manual_seed(4)
    model = aezoo.build("cae-upsample", loss="mse")
    assert model.spec.loss.name == "mse"
    assert (model.spec.encoder.name, model.spec.decoder.name) == ("pool", "upsample")
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        expected = torch.mean((model(x) - x) ** 2)
        torch.testing.assert_close(model.loss(x), expected)


def test_build_encoder_override_drops_the_old_encoders_params() -> None:
    model = aezoo.build("cae-upsample", encoder="strided")
    strided = registry.encoder("strided")
    # The pool params of the variant are dropped: strided's own defaults apply.
    assert model.spec.encoder.params == strided.params().model_dump(mode="json")
    layers = list(model.encoder.modules())
    assert not any(isinstance(m, nn.MaxPool2d) for m in layers)
    assert all(m.stride == (2, 2) for m in layers if isinstance(m, nn.Conv2d))
    # The decoder keeps the variant's params.
    assert model.spec.decoder.params == aezoo.build("cae-upsample").spec.decoder.params


def test_build_encoder_params_override() -> None:
    model = aezoo.build("cae-upsample", encoder_params={"channels": [32, 16, 4]})
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [32, 16, 4]
    assert model.latent_shape == (4, 4, 4)
    assert model.spec.encoder.params["channels"] == [32, 16, 4]
    assert model.spec.encoder.params["kernel_size"] == 3  # defaults are filled in
    assert model.num_parameters() != 4385
    assert tuple(model(torch.rand(1, 1, 28, 28)).shape) == (1, 1, 28, 28)


def test_build_rejects_unknown_params_naming_the_key() -> None:
    with pytest.raises(SpecError, match=r"model\.encoder\.params\.chanels"):
        aezoo.build("cae-upsample", encoder_params={"chanels": [8, 8, 8]})


def test_build_from_spec_and_dict_round_trip() -> None:
    model = aezoo.build("cae-strided", input_shape=(3, 32, 32))
    again = aezoo.build(model.spec)
    from_dict = aezoo.build(model.spec.model_dump(mode="json"))
    assert again.spec == model.spec == from_dict.spec
    assert again.num_parameters() == model.num_parameters()
