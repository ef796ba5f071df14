"""The objective as a value, tested with a third-party plugin written against the new
contract: a stochastic encoder, a loss that sees the whole forward pass and returns named
terms, a regulariser, a transform; sampling and interpolation; inference-only loads."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from plugin_fixtures import FakeSite

import aezoo
from aezoo import registry
from aezoo.config import build_run_spec
from aezoo.errors import AezooWarning, PluginError, SpecError, UsageError
from aezoo.generation import interpolate, sample

FAMILY = '''
from pydantic import BaseModel, ConfigDict, Field
from aezoo.protocols import (EncoderComponent, LossComponent, MetricComponent,
                             RegularizerComponent, TransformComponent, Variant)

class P(BaseModel):
    model_config = ConfigDict(extra="forbid")

class Noise(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sigma: float = Field(0.3, ge=0)

encoder = EncoderComponent(P, "MODULE_impl:gaussian_encoder", "a Gaussian over a pool code")
loss = LossComponent(P, "MODULE_impl:elbo", "BCE plus a KL term, from the whole forward")
shrink = RegularizerComponent(P, "MODULE_impl:shrink", "mean squared code", needs=("mean",))
noise = TransformComponent(Noise, "MODULE_impl:noise", "Gaussian noise from the generator")
mae = MetricComponent("MODULE_impl:mae", "mean absolute error per image")
vae = Variant(encoder="gauss", decoder="upsample", loss="elbo",
              decoder_params={"channels": [8, 8, 16]}, param_count=None,
              train={"epochs": 1, "batch_size": 64, "images": False, "device": "cpu"})
'''

IMPL = '''
import torch
import torch.nn.functional as F
from torch import nn
from aezoo_cae.layers import StageEncoder

class GaussianEncoder(nn.Module):
    def __init__(self, input_shape):
        super().__init__()
        self.body = StageEncoder("pool", input_shape, [16, 8, 8], 3)
        self.input_shape, self.latent_shape = input_shape, self.body.latent_shape
        c = self.latent_shape[0]
        self.logvar = nn.Conv2d(c, c, 1)

    def forward(self, x):
        mean = self.body(x)
        return {"mean": mean, "logvar": self.logvar(mean)}

def gaussian_encoder(params, input_shape):
    return GaussianEncoder(input_shape)

class Elbo(nn.Module):
    sees_forward = True

    def forward(self, fwd):
        recon = F.binary_cross_entropy_with_logits(fwd.logits.float(), fwd.target.float())
        m, lv = fwd.extras["mean"].float(), fwd.extras["logvar"].float()
        kl = 0.5 * (m.pow(2) + lv.exp() - 1 - lv).flatten(1).sum(1).mean() / m[0].numel()
        return {"recon": recon, "kl": kl}

def elbo(params):
    return Elbo()

class Shrink(nn.Module):
    def forward(self, fwd):
        return fwd.extras["mean"].float().pow(2).mean()

def shrink(params):
    return Shrink()

def mae(recon, target):
    return (recon - target).abs().flatten(1).mean(1)

def noise(params):
    def corrupt(x, generator):
        draw = torch.randn(x.shape, generator=generator, device=x.device)
        return (x + params.sigma * draw).clamp(0, 1)
    return corrupt
'''


@pytest.fixture
def family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with FakeSite(tmp_path / "site", monkeypatch) as site:
        site.add("aezoo-family-test", entry_points={
            "aezoo.encoders": {"gauss": "fam:encoder"},
            "aezoo.losses": {"elbo": "fam:loss"},
            "aezoo.regularizers": {"shrink": "fam:shrink"},
            "aezoo.transforms": {"noise": "fam:noise"},
            "aezoo.metrics": {"mae": "fam:mae"},
            "aezoo.variants": {"fam-vae": "fam:vae"}},
            modules={"fam": FAMILY.replace("MODULE", "fam"), "fam_impl": IMPL})
        yield site


def _train(tmp_path: Path, *layers: dict[str, Any]) -> Any:
    from aezoo.run import train

    spec = build_run_spec("fam-vae", [{"data": {"limit": 256}}, *layers])
    return train(spec, tmp_path / "run")


def test_named_terms_are_logged_and_sum_to_the_total(family: Any, tmp_path: Path) -> None:
    result = _train(tmp_path, {"model": {"regularizers": [{"name": "shrink", "weight": 0.5}]},
                               "train": {"epochs": 2}})
    assert result.model.stochastic and result.model.term_names == ["recon", "kl", "shrink"]
    rows = [json.loads(line) for line in
            (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for split in ("train", "val"):
            terms = sum(row[f"{split}_{n}"] for n in ("recon", "kl", "shrink"))
            assert terms == pytest.approx(row[f"{split}_loss"], rel=1e-6)
        assert row["val_kl"] > 0
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[-6:] == ["train_recon", "train_kl", "train_shrink", "val_recon", "val_kl",
                           "val_shrink"]


def test_a_plugin_metric_asked_for_is_logged_each_epoch(family: Any, tmp_path: Path) -> None:
    _train(tmp_path, {"train": {"metrics": ["mae"], "epochs": 2}})
    rows = [json.loads(line) for line in
            (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [0 < r["val_mae"] < 1 for r in rows] == [True, True]
    assert rows[1]["val_mae"] < rows[0]["val_mae"] * 1.5


def test_the_reparameterisation_samples_in_training_and_uses_the_mean_in_eval(
        family: Any) -> None:
    model = aezoo.build("fam-vae")
    x = torch.rand(4, 1, 28, 28)
    model.train()
    a, b = model.forward_pass(x).latent, model.forward_pass(x).latent
    assert not torch.equal(a, b)
    model.eval()
    mean = model.encode(x)
    assert torch.equal(model.forward_pass(x).latent, mean)


def test_a_regulariser_that_needs_a_gaussian_refuses_a_plain_encoder(family: Any) -> None:
    with pytest.raises(SpecError, match="regularizer 'shrink' needs the encoder to return mean"):
        aezoo.build("cae-upsample", regularizers=[{"name": "shrink"}])


def test_corruption_feeds_the_encoder_noisy_images_and_resume_stays_exact(
        family: Any, tmp_path: Path) -> None:
    from aezoo.run import resume, train
    from aezoo.training import Trainer

    seen: list[torch.Tensor] = []

    class Spy:
        def on_step_start(self, trainer: Trainer, step: int) -> None:
            seen.append(trainer.noise.get_state().clone())

    layers = [{"data": {"limit": 192}},
              {"train": {"corrupt": {"name": "noise"}, "epochs": 2, "checkpoint_every": 2}}]
    whole = train(build_run_spec("fam-vae", layers), tmp_path / "whole", callbacks=[Spy()])
    assert len({bytes(s.numpy()) for s in seen}) == len(seen)  # a fresh draw each step
    spec = build_run_spec("fam-vae", [*layers, {"train": {"epochs": 1}}])
    train(spec, tmp_path / "half")
    resumed = resume(tmp_path / "half", {"epochs": 2})
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert whole.spec.train.corrupt is not None
    assert whole.spec.train.corrupt.params == {"sigma": 0.3}  # defaults filled in


def test_sample_and_interpolate(family: Any) -> None:
    model = aezoo.build("fam-vae")
    images = sample(model, 9, seed=3)
    assert images.shape == (9, 1, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(images, sample(model, 9, seed=3))
    assert not torch.equal(images, sample(model, 9, seed=4))
    strip = interpolate(model, images[0], images[1], steps=5)
    assert strip.shape == (5, 1, 28, 28)
    with pytest.raises(UsageError, match="not a variational model"):
        sample(aezoo.build("cae-upsample"), 4)


def test_sample_and_interpolate_commands(family: Any, tmp_path: Path, cli: Any) -> None:
    aezoo.save(aezoo.build("fam-vae"), tmp_path / "vae.safetensors")
    result = cli("sample", str(tmp_path / "vae.safetensors"), "--n", "10",
                 "--out", str(tmp_path / "s.png"), "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
    result = cli("interpolate", str(tmp_path / "vae.safetensors"), "--from", "0", "--to", "3",
                 "--steps", "6", "--out", str(tmp_path / "i.png"), "--device", "cpu",
                 "--split", "val")
    assert result.exit_code == 0, result.output
    result = cli("interpolate", str(tmp_path / "vae.safetensors"), "--to", "99999",
                 "--out", str(tmp_path / "j.png"), "--device", "cpu", "--split", "val")
    assert result.exit_code == 2 and "--to 99999 is not an image" in result.output


def test_a_model_loads_for_inference_when_its_loss_plugin_is_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as installed, FakeSite(tmp_path / "site", installed) as site:
        site.add("aezoo-family-test", entry_points={
            "aezoo.encoders": {"gauss": "fam:encoder"}, "aezoo.losses": {"elbo": "fam:loss"}},
            modules={"fam": FAMILY.replace("MODULE", "fam"), "fam_impl": IMPL})
        model = aezoo.build({"encoder": {"name": "gauss"}, "decoder": {"name": "upsample"},
                             "loss": {"name": "elbo"}})
        path = aezoo.save(model, tmp_path / "m.safetensors")
        x = torch.rand(2, 1, 28, 28)
        expected = model.eval()(x)  # uninstalled at the end of this block
    # The loss is gone, the encoder stays (a plugin that only ships the loss uninstalled).
    with FakeSite(tmp_path / "site2", monkeypatch) as site:
        site.add("aezoo-family-enc", entry_points={"aezoo.encoders": {"gauss": "fam:encoder"}},
                 modules={"fam": FAMILY.replace("MODULE", "fam"), "fam_impl": IMPL})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = aezoo.load(path)
        assert [w for w in caught if issubclass(w.category, AezooWarning)
                and "loss 'elbo' not installed" in str(w.message)]
        torch.testing.assert_close(loaded.eval()(x), expected)
        with pytest.raises(PluginError, match="loaded for inference only"):
            loaded.loss(x)
        assert loaded.spec.loss.name == "elbo"  # the spec still says what it was trained with
    registry.clear_cache()


def test_eval_and_reconstruct_with_corrupt_measure_denoising(family: Any, tmp_path: Path,
                                                             cli: Any) -> None:
    _train(tmp_path, {"train": {"corrupt": {"name": "noise", "params": {"sigma": 0.4}}}})
    run = str(tmp_path / "run")
    report = json.loads(cli("eval", run, "--corrupt", "noise", "--json", "--split", "val",
                            "--device", "cpu").stdout)
    assert report["corrupt"] == "noise" and report["input_psnr"] < report["psnr"] + 50
    assert set(report["terms"]) == {"recon", "kl"}
    assert report["loss"] == pytest.approx(sum(report["terms"].values()), rel=1e-6)
    again = json.loads(cli("eval", run, "--corrupt", "noise", "--json", "--split", "val",
                           "--device", "cpu").stdout)
    assert again["input_psnr"] == report["input_psnr"]  # the same seed, the same draw
    clean = json.loads(cli("eval", run, "--json", "--split", "val", "--device", "cpu").stdout)
    assert "input_psnr" not in clean and clean["psnr"] > report["psnr"]
    picture = tmp_path / "three.png"
    result = cli("reconstruct", run, "--corrupt", "noise", "--n", "4", "--out", str(picture),
                 "--split", "val", "--device", "cpu")
    assert result.exit_code == 0, result.output
    from PIL import Image

    from aezoo.viz import default_scale

    with Image.open(picture) as image:  # three rows
        assert image.size[1] == 3 * 28 * default_scale(28, 28) + 4 * 2
    bad = cli("eval", run, "--corrupt", "nope", "--device", "cpu", "--split", "val")
    assert bad.exit_code == 2 and "unknown transform 'nope'" in bad.output


def test_encode_outputs_of_a_stochastic_encoder(family: Any, tmp_path: Path, cli: Any) -> None:
    import numpy as np

    aezoo.save(aezoo.build("fam-vae"), tmp_path / "vae.safetensors")
    arrays = {}
    for output in ("mean", "logvar", "sample"):
        out = tmp_path / f"{output}.npy"
        result = cli("encode", str(tmp_path / "vae.safetensors"), "--output", output,
                     "--out", str(out), "--limit", "8", "--device", "cpu", "--split", "val")
        assert result.exit_code == 0, result.output
        arrays[output] = np.load(out)
    assert arrays["mean"].shape == arrays["logvar"].shape == arrays["sample"].shape
    assert not np.array_equal(arrays["mean"], arrays["sample"])
    aezoo.save(aezoo.build("cae-upsample"), tmp_path / "plain.safetensors")
    refused = cli("encode", str(tmp_path / "plain.safetensors"), "--output", "sample",
                  "--out", str(tmp_path / "x.npy"), "--device", "cpu", "--split", "val")
    assert refused.exit_code == 2 and "needs a stochastic encoder" in refused.output


def test_mid_epoch_resume_is_exact_with_ema_corruption_accumulation_and_sampling(
        family: Any, tmp_path: Path) -> None:
    """A state saved mid-epoch (step 3 of 6) by a run with every new piece on resumes to
    the uninterrupted run's weights, averages and logged terms, bit for bit."""
    from aezoo.callbacks import Checkpointer
    from aezoo.data import load_dataset
    from aezoo.model import from_spec
    from aezoo.training import Trainer

    spec = build_run_spec("fam-vae", [{"data": {"limit": 384}, "train": {
        "epochs": 2, "batch_size": 32, "accumulate": 2, "ema": 0.9, "precision": "32",
        "corrupt": {"name": "noise"}, "checkpoint_every": 3}},
        {"model": {"regularizers": [{"name": "shrink", "weight": 0.1}]}}])
    data = load_dataset(spec.data)

    def trainer(callbacks: list[Any]) -> Trainer:
        torch.manual_seed(0)
        return Trainer(from_spec(spec.model), data, spec.train, callbacks)

    whole = trainer([])
    whole.fit()

    class StopAt(Checkpointer):
        def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
            super().on_step_end(trainer, step, images)
            if trainer.global_step == 3:
                raise KeyboardInterrupt  # a crash right after the mid-epoch checkpoint

    first = trainer([StopAt(tmp_path)])
    assert first.steps_per_epoch == 6
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    second = trainer([])
    second.load_state(tmp_path / "state.safetensors")
    assert (second.epoch, second.step) == (1, 3)
    second.fit()
    for a, b in zip(whole.model.state_dict().values(), second.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert whole.ema is not None and second.ema is not None
    assert all(torch.equal(a, b) for a, b in zip(whole.ema.averages, second.ema.averages,
                                                 strict=True))
    assert [r.terms for r in whole.history] == [r.terms for r in second.history]
