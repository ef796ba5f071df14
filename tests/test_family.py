"""The first-party autoencoder family (aezoo_cae.family): cae-denoising, cae-sparse,
cae-vae and cae-resnet train on mnist5k, their logged terms add up, denoising denoises,
the VAE samples, resume is bit-exact after SIGKILL, and the regularisers and transforms
keep their contracts (transforms draw only from the generator they are given)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_trainer_resume import aezoo_cli, weights, write_plugin_site

import aezoo
from aezoo import testing
from aezoo.config import build_run_spec
from aezoo.errors import ShapeError, SpecError
from aezoo.metrics import psnr
from aezoo.objective import build_transform
from aezoo.protocols import Forward
from aezoo.run import train
from aezoo.specs import ComponentSpec
from aezoo.training.state import read_info

FAMILY = ("cae-denoising", "cae-sparse", "cae-vae", "cae-resnet")
# 64-320 steps each on 256 mnist5k images (batch 16: 16 steps per epoch).
BUDGET = {"cae-denoising": 20, "cae-sparse": 8, "cae-vae": 8, "cae-resnet": 4}  # epochs
DROP = 0.6  # the final val_loss is at most 60% of the first epoch's mean train loss


def _rows(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family variant trained briefly through the Python API (one run each)."""
    runs = {}
    for name in FAMILY:
        out = tmp_path_factory.mktemp(name) / "run"
        spec = build_run_spec(name, [{
            "train": {"device": "cpu", "epochs": BUDGET[name], "batch_size": 16,
                      "images": False, "precision": "32"},
            "data": {"limit": 256}}])
        train(spec, out)
        runs[name] = out
    return runs


@pytest.mark.parametrize("name", FAMILY)
def test_each_variant_learns_and_its_logged_terms_add_up(trained: dict[str, Path],
                                                         name: str) -> None:
    rows = _rows(trained[name])
    assert len(rows) == BUDGET[name]
    assert rows[-1]["val_loss"] < DROP * rows[0]["train_loss"], rows
    terms = aezoo.build(name).term_names
    for row in rows:
        for split in ("train", "val"):
            logged = [row[f"{split}_{t}"] for t in terms if len(terms) > 1]
            if logged:  # one term alone is the total itself, and is not logged twice
                assert sum(logged) == pytest.approx(row[f"{split}_loss"], rel=1e-5, abs=1e-7)
    if len(terms) > 1:
        assert all(row[f"val_{t}"] > 0 for row in rows for t in terms)


def _val_images(n: int = 256) -> torch.Tensor:
    from aezoo.data import load_dataset
    from aezoo.specs import DataSpec

    return torch.from_numpy(load_dataset(DataSpec()).val[:n].copy()).float() / 255


def test_denoising_reconstruction_is_closer_to_clean_than_the_noisy_input(
        trained: dict[str, Path]) -> None:
    model = aezoo.load(trained["cae-denoising"] / "model.safetensors").eval()
    clean = _val_images()
    noise = build_transform(ComponentSpec(name="gaussian", params={"sigma": 0.5}))
    noisy = noise(clean, torch.Generator().manual_seed(7))
    with torch.no_grad():
        recon = model(noisy)
    gain = float(psnr(recon, clean).mean() - psnr(noisy, clean).mean())
    assert gain >= 3.0, f"denoising gains only {gain:.2f} dB"  # 3.7 dB measured at this budget


def test_vae_kl_is_positive_and_prior_samples_decode_to_images(
        trained: dict[str, Path]) -> None:
    assert all(row["val_kl"] > 0 and row["train_kl"] > 0 for row in _rows(trained["cae-vae"]))
    model = aezoo.load(trained["cae-vae"] / "model.safetensors").eval()
    assert model.stochastic and model.term_names == ["recon", "kl"]
    with torch.no_grad():
        samples = model.decode(torch.randn(16, *model.latent_shape,
                                           generator=torch.Generator().manual_seed(0)))
    assert samples.shape == (16, 1, 28, 28)
    assert bool(torch.isfinite(samples).all())
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1
    assert float(samples.std()) > 0.05  # not one grey blur


# --- exact resume after SIGKILL (real `aezoo train` subprocesses) -------------------------

RESUME = ["--device", "cpu", "--epochs", "2", "--limit", "128", "--batch-size", "32",
          "--checkpoint-every", "3", "--no-images", "--precision", "32",
          "--callback", "signal-at"]  # 4 steps per epoch; checkpoints mid-epoch


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cae-denoising", "cae-vae"])
def test_resume_after_sigkill_is_bit_exact(tmp_path: Path, name: str) -> None:
    """Killed after step 7 (the state is of step 6, mid-epoch 2), resumed: the same
    weights, losses and terms as an uninterrupted run of the same spec (trained in this
    process, one thread like the subprocesses)."""
    site = write_plugin_site(tmp_path / "site")
    out = tmp_path / "run"
    killed = aezoo_cli(["train", name, *RESUME, "--out", str(out)], site, signal_at="7:SIGKILL")
    assert killed.returncode == -9, killed.stderr
    assert not (out / "model.safetensors").exists()
    info = read_info(out / "state.safetensors")
    assert (info["epoch"], info["step"], info["global_step"]) == (2, 2, 6)  # mid-epoch 2
    resumed = aezoo_cli(["train", "--resume", str(out)], site)
    assert resumed.returncode == 0, resumed.stderr

    ref = tmp_path / "ref"
    train(build_run_spec(name, [{
        "train": {"device": "cpu", "epochs": 2, "batch_size": 32, "checkpoint_every": 3,
                  "images": False, "precision": "32"}, "data": {"limit": 128}}]), ref)
    for file in ("model.safetensors", "best.safetensors", "last.safetensors"):
        a, b = weights(ref / file), weights(out / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file

    def losses(run: Path) -> list[dict[str, float]]:
        return [{k: v for k, v in row.items() if k.endswith(("_loss", "_recon", "_kl"))}
                for row in _rows(run)]

    assert losses(ref) == losses(out) and len(losses(out)) == 2
    if name == "cae-vae":
        assert all("val_kl" in row for row in losses(out))


# --- transforms ---------------------------------------------------------------------------

TRANSFORMS = {"gaussian": {}, "salt-pepper": {}, "mask": {}, "mask-patches": {"patch": 4}}


@pytest.mark.parametrize("label", sorted(TRANSFORMS))
def test_transforms_draw_only_from_their_generator(label: str) -> None:
    t = build_transform(ComponentSpec(name=label.split("-patches")[0], params=TRANSFORMS[label]))
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    before, global_state = x.clone(), torch.get_rng_state()
    a = t(x, torch.Generator().manual_seed(1))
    b = t(x, torch.Generator().manual_seed(1))
    c = t(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG is untouched
    assert torch.equal(x, before)  # the clean batch (the target) is not modified
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def _build(name: str, **params: Any) -> Any:
    return build_transform(ComponentSpec(name=name, params=params))


def test_transforms_corrupt_as_documented() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.full((64, 1, 28, 28), 0.5)
    raw = _build("gaussian", sigma=0.5, clip=False)(x, gen) - x
    assert float(raw.std()) == pytest.approx(0.5, rel=0.02)
    clipped = _build("gaussian")(x, gen)
    assert float(clipped.min()) == 0 and float(clipped.max()) == 1
    sp = _build("salt-pepper", amount=0.1)(x, gen)
    assert float((sp == 0).float().mean()) == pytest.approx(0.05, abs=0.005)
    assert float((sp == 1).float().mean()) == pytest.approx(0.05, abs=0.005)
    rgb = _build("salt-pepper", amount=0.5)(torch.full((4, 3, 8, 8), 0.5), gen)
    assert bool((rgb == rgb[:, :1]).all())  # a pixel's channels alike
    masked = _build("mask")(x, gen)
    assert float((masked == 0).float().mean()) == pytest.approx(0.25, abs=0.01)
    patches = _build("mask", fraction=0.5, patch=4)(torch.ones(16, 1, 30, 30), gen)
    cells = patches[:, :, :28, :28].unfold(2, 4, 4).unfold(3, 4, 4)  # 4x4 blocks
    assert bool((cells.amax(dim=(-1, -2)) == cells.amin(dim=(-1, -2))).all())  # whole patches
    assert float((patches == 0).float().mean()) == pytest.approx(0.5, abs=0.05)


# --- regularisers -------------------------------------------------------------------------

def _penalty(name: str, fwd: Forward) -> float:
    model = aezoo.build("cae-vae", regularizers=[{"name": name, "weight": 1.0}])
    return float(model.objective.regularizers[-1](fwd))


def test_regularizers_compute_their_documented_formulas() -> None:
    gen = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(6, 4, 2, 2, generator=gen), torch.randn(6, 4, 2, 2, generator=gen)
    x = torch.zeros(6, 1, 4, 4)
    fwd = Forward(x, x, mean, x, {"mean": mean, "logvar": logvar})
    assert _penalty("l1", fwd) == pytest.approx(float(mean.abs().mean()), rel=1e-6)
    posterior = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(posterior, prior).flatten(1).sum(1).mean()
    assert _penalty("kl", fwd) == pytest.approx(float(expected), rel=1e-5)
    # orthogonal: 0 for uncorrelated code dims, near 1 for copies of one another
    base = torch.randn(4096, 1, generator=gen)
    other = torch.randn(4096, 1, generator=gen)
    apart = Forward(x, x, torch.cat([base, other], 1).view(-1, 2, 1, 1), x)
    together = Forward(x, x, torch.cat([base, 2 * base], 1).view(-1, 2, 1, 1), x)
    assert _penalty("orthogonal", apart) < 1e-3
    assert _penalty("orthogonal", together) == pytest.approx(1.0, abs=1e-3)
    one = Forward(x, x, base[:1].view(1, 1, 1, 1), x)
    assert _penalty("orthogonal", one) == 0.0


def test_regularizers_are_float32_under_bf16() -> None:
    z = torch.full((4, 8, 2, 2), 300.0, dtype=torch.bfloat16)
    x = torch.zeros(4, 1, 4, 4)
    fwd = Forward(x, x, z, x, {"mean": z, "logvar": z.clamp(max=20)})
    for name in ("l1", "kl", "orthogonal"):
        value = aezoo.build("cae-vae", regularizers=[{"name": name}]).objective.regularizers[-1](
            fwd)
        assert value.dtype == torch.float32 and math.isfinite(float(value))


def test_kl_on_a_deterministic_encoder_is_a_build_time_error() -> None:
    with pytest.raises(SpecError, match="regularizer 'kl' needs the encoder to return mean "
                                        "and logvar, which encoder 'pool' does not"):
        aezoo.build("cae-upsample", regularizers=[{"name": "kl", "weight": 1.0}])


def test_any_variant_takes_a_regularizer_as_a_named_term() -> None:
    model = aezoo.build("cae-strided", regularizers=[{"name": "orthogonal", "weight": 0.1}])
    assert model.term_names == ["recon", "orthogonal"]
    with torch.no_grad():
        terms = model.terms(torch.rand(4, 1, 28, 28))
    assert set(terms) == {"recon", "orthogonal"} and float(terms["orthogonal"]) > 0


# --- shapes, params, conformance ----------------------------------------------------------

@pytest.mark.parametrize(("name", "shape", "message"), [
    ("cae-vae", (1, 2, 2), "encoder 'gaussian-pool' with 3 stages cannot take 2x2 inputs"),
    ("cae-resnet", (3, 3, 2), "encoder 'resnet' with 3 stages cannot take 3x2 inputs"),
])
def test_too_small_inputs_are_a_clear_shape_error(name: str, shape: tuple[int, int, int],
                                                  message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        aezoo.build(name, input_shape=shape)


def test_resnet_decoder_with_fewer_stages_is_a_clear_shape_error() -> None:
    with pytest.raises(ShapeError, match="decoder 'resnet' with 2 stages cannot turn a 4x4 "
                                         "latent into 28x28 images"):
        aezoo.build("cae-resnet", decoder_params={"channels": [32, 16]})


@pytest.mark.parametrize("shape", [(1, 27, 33), (3, 5, 7), (1, 64, 48)])
@pytest.mark.parametrize("norm", ["group", "batch", "none"])
def test_resnet_returns_exactly_the_input_shape(shape: tuple[int, int, int], norm: str) -> None:
    model = aezoo.build("cae-resnet", input_shape=shape, encoder_params={"norm": norm},
                        decoder_params={"norm": norm}).eval()
    with torch.no_grad():
        assert model(torch.rand(2, *shape)).shape == (2, *shape)


def test_family_parts_have_strict_params_and_torch_free_descriptors() -> None:
    from aezoo import registry

    refs = [("regularizer", n) for n in ("l1", "kl", "orthogonal")] + [
        ("transform", n) for n in ("gaussian", "salt-pepper", "mask")] + [
        ("encoder", "gaussian-pool"), ("encoder", "resnet"), ("decoder", "resnet")]
    testing.check_torch_free(refs)
    bad = {"gaussian": [{"sigma": -1.0}], "salt-pepper": [{"amount": 1.5}],
           "mask": [{"fraction": -0.1}, {"patch": 0}], "resnet": [{"norm": "layer"}],
           "gaussian-pool": [{"latent_channels": 0}]}
    for kind, name in refs:
        testing.check_params_model(registry.load(kind, name).params, bad=bad.get(name, ()))


def test_the_conformance_suite_covers_the_family() -> None:
    # tests/test_conformance.py runs aezoo.testing.check_variant on each of these.
    assert {f"aezoo:{n}" for n in FAMILY} <= set(testing.variant_names("aezoo"))
