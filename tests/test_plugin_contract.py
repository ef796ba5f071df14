"""The plugin contract, second edition: what a third-party plugin (a VQ-VAE, a KL-annealed
beta-VAE, a corruption, losses, a metric, a callback, a command) needed from aezoo.
Fake installed distributions, tiny models, in process."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from plugin_fixtures import GOOD_COMPONENTS, FakeSite, variant_source

import aezoo
from aezoo.callbacks import Callback
from aezoo.errors import AezooWarning
from aezoo.training import Trainer


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


# --- trainer.log across a resume -------------------------------------------------------

def tiny_data(n: int = 96, n_val: int = 32) -> Any:
    from aezoo.data import ArrayDataset

    rng = np.random.default_rng(0)
    return ArrayDataset("tiny", rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8),
                        rng.integers(0, 256, (n_val, 1, 28, 28), dtype=np.uint8))


def train_spec(**settings: Any) -> Any:
    from aezoo.specs import TrainSpec

    base = {"device": "cpu", "epochs": 1, "batch_size": 16, "seed": 0, "images": False,
            "precision": "32", "channels_last": False}
    return TrainSpec(**{**base, **settings})


def small_model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return aezoo.build("cae-upsample")


class StepLogger(Callback):
    """Logs a device tensor and a host number per step; saves and stops after ``stop_at``."""

    def __init__(self, path: Path | None = None, stop_at: int = 0) -> None:
        self.path, self.stop_at = path, stop_at

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        trainer.log("dev", torch.tensor(float(trainer.global_step) / 3))
        trainer.log("host", trainer.global_step ** 2 / 7)
        if self.path is not None and trainer.global_step == self.stop_at:
            trainer.save_state(self.path)
            raise RuntimeError("power cut")


def test_trainer_log_means_survive_a_mid_epoch_resume_exactly(tmp_path: Path) -> None:
    data = tiny_data()  # 6 steps per epoch
    whole = Trainer(small_model(), data, train_spec(epochs=2), [StepLogger()])
    whole.fit()
    first = Trainer(small_model(), data, train_spec(epochs=2),
                    [StepLogger(tmp_path / "state.safetensors", stop_at=8)])
    with pytest.raises(RuntimeError, match="power cut"):
        first.fit()
    second = Trainer(small_model(), data, train_spec(epochs=2), [StepLogger()])
    second.load_state(tmp_path / "state.safetensors")
    second.fit()
    assert second.history[1].terms["dev"] == whole.history[1].terms["dev"]
    assert second.history[1].terms["host"] == whole.history[1].terms["host"]
    assert [h.terms for h in second.history] == [h.terms for h in whole.history]



def test_trainer_state_dict_resumes_exactly_without_a_file() -> None:
    """trainer.state_dict() taken mid-epoch and given to another trainer's
    load_state_dict() (torch's convention, no file between) ends where an uninterrupted
    run does, bit for bit: weights, losses and trainer.log means."""
    import copy

    data = tiny_data()  # 6 steps per epoch
    whole = Trainer(small_model(), data, train_spec(epochs=2), [StepLogger()])
    whole.fit()
    taken: dict[str, Any] = {}

    class Take(StepLogger):
        def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
            super().on_step_end(trainer, step, images)
            if trainer.global_step == 8:
                taken.update(copy.deepcopy(trainer.state_dict()))
                raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        Trainer(small_model(), data, train_spec(epochs=2), [Take()]).fit()
    assert (taken["epoch"], taken["step"], taken["global_step"]) == (2, 2, 8)
    second = Trainer(small_model(seed=1), data, train_spec(epochs=2), [StepLogger()])
    second.load_state_dict(taken)
    second.fit()
    def measured(trainer: Trainer) -> list[Any]:  # all but the timings
        return [(r.epoch, r.train_loss, r.val_loss, r.lr, r.terms) for r in trainer.history]

    assert measured(second) == measured(whole)
    for name, value in whole.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], value), name

# --- metrics: failures isolated, chosen by name, forward-seeing ------------------------

METRICS = """
import torch
from aezoo.protocols import MetricComponent


def _broken(recon, target):
    raise ZeroDivisionError("division by zero")


def _abs(recon, target):
    return (recon - target).abs().flatten(1).mean(1)


def _code_energy(fwd):
    return fwd.latent.float().pow(2).flatten(1).mean(1)


broken = MetricComponent(_broken, "always raises")
mae = MetricComponent(_abs, "mean absolute error")
energy = MetricComponent(_code_energy, "mean squared code", sees_forward=True)
"""


@pytest.fixture
def metric_site(site: FakeSite, tmp_path: Path) -> Path:
    site.add("aezoo-metrics-test", version="2.0", entry_points={"aezoo.metrics": {
        "broken": "mets:broken", "mae": "mets:mae", "energy": "mets:energy"}},
        modules={"mets": METRICS})
    torch.manual_seed(0)
    path = tmp_path / "m.safetensors"
    aezoo.save(aezoo.build("cae-upsample"), path)
    return path


def test_a_failing_metric_is_left_out_with_a_warning_naming_its_plugin(
        metric_site: Path, cli: Any) -> None:
    # Recorded as a warning (the CLI prints AezooWarnings as "warning: ..."; in process,
    # pytest records them instead, whichever test imported aezoo.cli first).
    with pytest.warns(AezooWarning) as record:
        result = cli("eval", str(metric_site), "--limit", "64", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["metrics"]) == {"mae", "energy"}
    assert "unexpected" not in result.stderr
    said = [str(w.message) for w in record]
    assert any("metric 'broken' (plugin aezoo-metrics-test 2.0) failed" in m
               and "ZeroDivisionError" in m for m in said), said
    assert any("broken" in note for note in report["notes"])


def test_eval_reports_the_metrics_named_and_a_chosen_failure_is_an_error(
        metric_site: Path, cli: Any) -> None:
    result = cli("eval", str(metric_site), "--limit", "64", "--device", "cpu", "--json",
                 "--metric", "energy", "--metric", "mae")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["metrics"]) == {"mae", "energy"} and "notes" not in report
    assert report["metrics"]["energy"] > 0  # from the code the forward produced
    none = cli("eval", str(metric_site), "--limit", "64", "--device", "cpu", "--json",
               "--metric", "none")
    assert "metrics" not in json.loads(none.stdout)
    failed = cli("eval", str(metric_site), "--limit", "64", "--device", "cpu",
                 "--metric", "broken")
    assert failed.exit_code != 0
    assert "metric 'broken' (plugin aezoo-metrics-test 2.0) failed" in failed.stderr
    assert "unexpected" not in failed.stderr
    unknown = cli("eval", str(metric_site), "--device", "cpu", "--metric", "nope")
    assert unknown.exit_code != 0 and "nope" in unknown.stderr


# --- a regulariser's `needs`: the fix that is true for it ------------------------------

COMMITMENT = """
from pydantic import BaseModel, ConfigDict
from aezoo.protocols import RegularizerComponent


class P(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _build(params):
    from torch import nn

    class Commit(nn.Module):
        def forward(self, fwd):
            return (fwd.latent - fwd.extras["quantized"]).pow(2).mean()

    return Commit()


commit = RegularizerComponent(P, _build, "VQ commitment", needs=("quantized",))
"""


def test_a_missing_extra_gets_a_fix_for_the_part_that_needs_it(site: FakeSite) -> None:
    from aezoo.errors import SpecError

    site.add("aezoo-vq-test", entry_points={"aezoo.regularizers": {"commit": "vqreg:commit"}},
             modules={"vqreg": COMMITMENT})
    with pytest.raises(SpecError) as refused:
        aezoo.build("cae-upsample", regularizers=[{"name": "commit", "weight": 0.25}])
    error = refused.value
    assert "regularizer 'commit' needs the encoder to return quantized" in error.problem
    assert "(it returns only its code)" in error.problem
    assert "stochastic" not in error.fix and "'quantized': ..." in error.fix
    assert "model.regularizers.0" in error.fix
    with pytest.raises(SpecError) as kl:
        aezoo.build("cae-upsample", regularizers=[{"name": "kl", "weight": 0.1}])
    assert "stochastic encoder" in kl.value.fix


# --- --callback adds to a variant's own; --no-callback takes one out --------------------

CALLBACKS = """
from aezoo.callbacks import Callback


class Book(Callback):
    def __init__(self, run_dir):
        self.run_dir = run_dir
"""


@pytest.fixture
def book_site(site: FakeSite) -> FakeSite:
    site.add("aezoo-book-test", entry_points={
        "aezoo.callbacks": {"book": "books:Book", "other": "books:Book"},
        "aezoo.variants": {"booked": "booked:variant"}},
        modules={"books": CALLBACKS, "booked": variant_source(
            "pool", "upsample", "bce", train={"callbacks": ["book"], "epochs": 1})})
    return site


def test_callback_flags_add_to_and_drop_from_the_variants_own(
        book_site: FakeSite, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo import run
    from aezoo.config import run_spec_from

    assert run_spec_from("booked").train.callbacks == ["book"]
    assert run_spec_from("booked", callbacks=(["other"], [])).train.callbacks == ["book", "other"]
    assert run_spec_from("booked", callbacks=(["other"], ["book"])).train.callbacks == ["other"]
    seen: list[list[str]] = []
    monkeypatch.setattr(run, "train", lambda spec, *a, **k: seen.append(spec.train.callbacks))
    cli("train", "booked", "--callback", "other", "--limit", "64")
    cli("train", "booked", "--no-callback", "book", "--limit", "64")
    assert seen == [["book", "other"], []]
    refused = cli("train", "booked", "--no-callback", "tensorboard", "--limit", "64")
    assert refused.exit_code == 2 and "no callback 'tensorboard' is on (on: book)" in refused.stderr


# --- the conformance kit on a forward-seeing loss warns nothing --------------------------

ELBO = """
from pydantic import BaseModel, ConfigDict
from aezoo.protocols import LossComponent


class P(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _build(params):
    import torch.nn.functional as F
    from torch import nn

    class Elbo(nn.Module):
        sees_forward = True

        def forward(self, fwd):
            recon = F.binary_cross_entropy_with_logits(fwd.logits.float(), fwd.target.float())
            m, lv = fwd.extras["mean"].float(), fwd.extras["logvar"].float()
            return {"recon": recon, "kl": 0.5 * (m.pow(2) + lv.exp() - 1 - lv).mean()}

    return Elbo()


elbo = LossComponent(P, _build, "BCE + KL")
"""


def test_check_loss_component_on_a_forward_seeing_loss_warns_nothing(site: FakeSite) -> None:
    from aezoo.testing import check_loss_component

    site.add("aezoo-elbo-test", entry_points={"aezoo.losses": {"elbo-t": "elbo_t:elbo"}},
             modules={"elbo_t": ELBO})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_loss_component("elbo-t", torch_free=False)


def test_a_resumed_runs_summary_does_not_claim_less_time_than_it_trained(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from aezoo.cli.train import summary
    from aezoo.training.hooks import EpochResult

    history = [EpochResult(e, 0.1, 0.1, 28.0, 100.0, 1e-3, {}) for e in range(1, 9)]
    result = SimpleNamespace(out_dir=tmp_path, history=history, resumed=True,
                             model_path=tmp_path / "model.safetensors")
    line = summary(result, 81.0, before=6)[0]  # 6 epochs before the resume, 2 in it
    assert line == ("took 1m 21s (this session: 2 epochs, 56.0s of training and validation; "
                    "8 epochs in all)")
    fresh = summary(SimpleNamespace(**{**vars(result), "resumed": False}), 230.0)[0]
    assert fresh.startswith("took 3m 50s (8 epochs")


# --- train.anneal: a term's weight on a schedule, resumed exactly ------------------------

def vae(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return aezoo.build("cae-vae")


class Factors(Callback):
    def __init__(self, path: Path | None = None, stop_at: int = 0) -> None:
        self.seen: list[float] = []
        self.path, self.stop_at = path, stop_at

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        self.seen.append(float(trainer.model.objective.factors[0]))

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        if self.path is not None and trainer.global_step == self.stop_at:
            trainer.save_state(self.path)
            raise RuntimeError("power cut")


def test_anneal_ramps_a_terms_weight_and_resumes_exactly(tmp_path: Path) -> None:
    from aezoo.errors import SpecError
    from aezoo.specs import Anneal

    ramp = {"kl": {"epochs": 1}}  # 6 steps per epoch: 0, 1/6, ..., 5/6, then 1
    factors = Factors()
    whole = Trainer(vae(), tiny_data(), train_spec(epochs=2, anneal=ramp), [factors])
    whole.fit()
    assert factors.seen == pytest.approx([i / 6 for i in range(6)] + [1.0] * 6)
    assert whole.model.objective.scaled == []  # the model leaves with its full objective
    first = Trainer(vae(), tiny_data(), train_spec(epochs=2, anneal=ramp),
                    [Factors(tmp_path / "state.safetensors", stop_at=4)])
    with pytest.raises(RuntimeError, match="power cut"):
        first.fit()
    resumed = Factors()
    second = Trainer(vae(), tiny_data(), train_spec(epochs=2, anneal=ramp), [resumed])
    second.load_state(tmp_path / "state.safetensors")
    second.fit()
    assert resumed.seen == factors.seen[4:]
    for a, b in zip(whole.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [h.terms for h in second.history] == [h.terms for h in whole.history]
    after = Anneal(start=1, end=0, steps=4, after=1, shape="cosine")
    assert [after.factor(s, 6) for s in (0, 6, 8, 10, 99)] == pytest.approx([1, 1, .5, 0, 0])
    with pytest.raises(SpecError, match="train.anneal names the term 'kld'.*recon, kl"):
        Trainer(vae(), tiny_data(), train_spec(anneal={"kld": {"epochs": 1}}))
    from aezoo.specs import TrainSpec, validate

    with pytest.raises(SpecError, match="train.anneal.kl.*epochs or as steps"):
        validate(TrainSpec, {"anneal": {"kl": {}}}, "train")


# --- train.monitor / train.mode: what "best" and early stopping compare -------------------

def test_best_and_early_stopping_follow_the_monitored_value(tmp_path: Path) -> None:
    from aezoo.callbacks import Checkpointer
    from aezoo.callbacks.early_stopping import EarlyStopping
    from aezoo.errors import SpecError

    data = tiny_data()  # "host" (a trainer.log value) grows every epoch
    rising = Checkpointer(tmp_path / "max")
    (tmp_path / "max").mkdir()
    trainer = Trainer(small_model(), data, train_spec(epochs=3, monitor="host", mode="max"),
                      [StepLogger(), rising])
    trainer.fit()
    assert rising.best == -trainer.history[-1].terms["host"]  # the last epoch is the best
    (tmp_path / "min").mkdir()
    falling = Trainer(small_model(), data,
                      train_spec(epochs=3, monitor="host", mode="min", patience=1),
                      [StepLogger(), Checkpointer(tmp_path / "min"), EarlyStopping(None, None)])
    falling.fit()
    assert len(falling.history) == 2
    assert falling.stop_reason is not None and "host has not improved" in falling.stop_reason
    with pytest.raises(SpecError, match="train.monitor 'nope' is not among"):
        Trainer(small_model(), data, train_spec(monitor="nope"),
                [Checkpointer(tmp_path / "min")]).fit()
