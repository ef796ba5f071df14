"""The training loop's controls: callbacks, schedules, clipping, early stopping, the NaN
guard, precision and compile switches. Tiny random data, in process."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import aezoo
from aezoo.callbacks import Callback, Checkpointer, EarlyStopping, EpochResult
from aezoo.data import ArrayDataset
from aezoo.errors import SpecError, UsageError
from aezoo.specs import TrainSpec, validate
from aezoo.training import Trainer, TrainingError
from aezoo.training.optim import Schedule
from aezoo.training.state import read_state


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core box: more threads only wait on each other
    yield
    torch.set_num_threads(before)


def tiny_data(n: int = 96, n_val: int = 32) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset("tiny", rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8),
                        rng.integers(0, 256, (n_val, 1, 28, 28), dtype=np.uint8))


def tiny_spec(**settings: Any) -> TrainSpec:
    base = {"device": "cpu", "epochs": 2, "batch_size": 32, "seed": 0, "images": False}
    return TrainSpec(**{**base, **settings})


def model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return aezoo.build("cae-upsample")


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.lrs: list[float] = []

    def on_train_start(self, trainer: Trainer) -> None:
        self.calls.append(("train_start",))

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.calls.append(("epoch_start", epoch))

    def on_step_start(self, trainer: Trainer, step: int) -> None:
        self.calls.append(("step_start", step))
        self.lrs.append(trainer.lr)

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        self.calls.append(("step_end", step, images))

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        self.calls.append(("epoch_end", result.epoch))

    def on_train_end(self, trainer: Trainer) -> None:
        self.calls.append(("train_end", trainer.outcome))


# --- callbacks --------------------------------------------------------------------------

def test_hooks_run_in_order_and_a_plain_object_is_a_callback() -> None:
    rec = Recorder()

    class OnlyEpochs:  # not a Callback subclass: the protocol is duck-typed
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
            self.epochs.append(result.epoch)

    plain = OnlyEpochs()
    history = Trainer(model(), tiny_data(80), tiny_spec(), [rec, plain]).fit()
    steps = [("step_start", 1), ("step_end", 1, 32), ("step_start", 2), ("step_end", 2, 64),
             ("step_start", 3), ("step_end", 3, 80)]  # the last batch is partial, kept
    assert rec.calls == [("train_start",), ("epoch_start", 1), *steps, ("epoch_end", 1),
                         ("epoch_start", 2), *steps, ("epoch_end", 2),
                         ("train_end", "completed")]
    assert plain.epochs == [1, 2] and [h.epoch for h in history] == [1, 2]


# --- schedules --------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [
    {"scheduler": "none"}, {"scheduler": "none", "warmup": 4},
    {"scheduler": "cosine", "min_lr": 1e-5}, {"scheduler": "cosine", "warmup": 2},
    {"scheduler": "step", "step_size": 1, "gamma": 0.5}, {"scheduler": "onecycle"},
    {"scheduler": "onecycle", "warmup": 3},
])
def test_each_schedule_sets_the_lr_of_every_step(settings: dict[str, Any]) -> None:
    spec = tiny_spec(epochs=3, lr=0.01, **settings)
    rec = Recorder()
    trainer = Trainer(model(), tiny_data(), spec, [rec])
    trainer.fit()
    schedule = Schedule(spec, trainer.steps_per_epoch)
    assert rec.lrs == [schedule(k) for k in range(9)]
    assert [h.lr for h in trainer.history] == [rec.lrs[2], rec.lrs[5], rec.lrs[8]]


def test_schedule_shapes() -> None:
    def lrs(**settings: Any) -> list[float]:
        s = Schedule(TrainSpec(lr=0.1, epochs=10, **settings), steps_per_epoch=10)
        return [s(k) for k in range(100)]

    assert lrs() == [0.1] * 100
    warm = lrs(warmup=10)
    assert warm[:10] == pytest.approx([0.01 * (k + 1) for k in range(10)])
    assert warm[10:] == [0.1] * 90
    cos = lrs(scheduler="cosine", min_lr=0.001)
    assert cos[0] == pytest.approx(0.1) and all(a >= b for a, b in zip(cos, cos[1:], strict=False))
    assert cos[-1] == pytest.approx(0.001, abs=1e-4) and cos[50] == pytest.approx(0.0505)
    step = lrs(scheduler="step", step_size=3, gamma=0.5)
    assert step[29] == 0.1 and step[30] == 0.05 and step[60] == 0.025 and step[99] == 0.0125
    one = lrs(scheduler="onecycle", warmup=20)
    assert one[0] == pytest.approx(0.1 / 25) and max(one) == pytest.approx(0.1) == one[20]
    assert all(a <= b for a, b in zip(one[:20], one[1:21], strict=True))
    assert all(a >= b for a, b in zip(one[20:], one[21:], strict=False))
    assert one[-1] == pytest.approx(0.1 / 25 / 1e4)
    assert lrs(scheduler="onecycle").index(max(lrs(scheduler="onecycle"))) == 30  # 30% default


# --- clipping, early stopping -----------------------------------------------------------

def test_grad_clip_bounds_the_update() -> None:
    def update_norm(clip: float | None) -> float:
        m = model()
        before = torch.cat([p.detach().flatten().clone() for p in m.parameters()])
        spec = tiny_spec(epochs=1, batch_size=96, optimizer="sgd", momentum=0.0, lr=1.0,
                         grad_clip=clip)
        Trainer(m, tiny_data(), spec).fit()  # one step: the update is lr * clipped grad
        after = torch.cat([p.detach().flatten() for p in m.parameters()])
        return float((after - before).norm())

    assert 0.999e-3 < update_norm(1e-3) <= 1e-3  # clip_grad_norm_ divides by norm + 1e-6
    assert update_norm(None) > 2e-3  # unclipped, the same step moves further


def test_early_stopping_stops_when_val_loss_stalls(tmp_path: Path) -> None:
    stopper = EarlyStopping(patience=2, min_delta=10.0)  # nothing counts as better
    rec = Recorder()
    trainer = Trainer(model(), tiny_data(), tiny_spec(epochs=10),
                      [stopper, rec, Checkpointer(tmp_path)])
    history = trainer.fit()
    assert len(history) == 3 and trainer.outcome == "stopped"
    assert "early stopping" in (trainer.stop_reason or "")
    assert rec.calls[-1] == ("train_end", "stopped")
    _, info = read_state(tmp_path / "state.safetensors")
    assert info["callbacks"]["early_stopping"] == {"best": history[0].val_loss, "wait": 2}
    assert info["stopped"] == trainer.stop_reason


def test_checkpointer_keeps_the_best_by_val_loss(tmp_path: Path) -> None:
    trainer = Trainer(model(), tiny_data(), tiny_spec(epochs=3, lr=0.01),
                      [Checkpointer(tmp_path)])
    history = trainer.fit()
    best_epoch = min(history, key=lambda h: h.val_loss).epoch
    best = aezoo.load(tmp_path / "best.safetensors")
    last = aezoo.load(tmp_path / "last.safetensors")
    state = trainer.model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in last.state_dict().items())
    x = torch.from_numpy(tiny_data().val).float() / 255
    with torch.no_grad():
        assert float(best.loss(x)) == pytest.approx(history[best_epoch - 1].val_loss, rel=1e-5)


# --- the NaN guard ----------------------------------------------------------------------

class NaNAt(nn.Module):
    """The model's own loss, except NaN at training step ``k`` (evaluation untouched)."""

    def __init__(self, loss: nn.Module, k: int) -> None:
        super().__init__()
        self.loss, self.k, self.calls = loss, k, 0

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        value = self.loss(logits, target)
        if not torch.is_grad_enabled():
            return value
        self.calls += 1
        return value * float("nan") if self.calls == self.k else value


@pytest.mark.parametrize("eager", [True, False], ids=["cpu-every-step", "device-window"])
def test_nan_guard_stops_names_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path: Path, eager: bool) -> None:
    m = model()
    m.loss_fn = NaNAt(m.loss_fn, k=5)
    rec = Recorder()
    trainer = Trainer(m, tiny_data(), tiny_spec(epochs=4, checkpoint_every=2, check_every=3),
                      [rec, Checkpointer(tmp_path)])
    trainer.control.eager = eager  # False: the GPU path, a device window checked at sync points
    with pytest.raises(TrainingError) as info:
        trainer.fit()
    message = str(info.value)
    assert "NaN/inf at step 5 (epoch 2)" in message and "--lr" in message
    assert "--grad-clip" in message
    assert trainer.outcome == "diverged" and rec.calls[-1] == ("train_end", "diverged")
    tensors, state = read_state(tmp_path / "state.safetensors")
    assert state["global_step"] == 4  # the step-4 checkpoint, not a later one
    assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model."))
    last = aezoo.load(tmp_path / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in last.parameters())
    if eager:  # checked before the optimiser step: the weights in memory are still good
        assert trainer.weights_finite()


# --- precision, compile, layout ---------------------------------------------------------

def test_bf16_autocast_trains_on_cpu() -> None:
    history = Trainer(model(), tiny_data(), tiny_spec(precision="bf16")).fit()
    assert all(math.isfinite(h.train_loss) and math.isfinite(h.val_loss) for h in history)


def test_precision_16_fails_clearly_on_cpu_and_bad_values_are_spec_errors() -> None:
    with pytest.raises(UsageError, match="bf16 or 32 on CPU"):
        Trainer(model(), tiny_data(), tiny_spec(precision="16"))
    with pytest.raises(SpecError, match="train.precision"):
        validate(TrainSpec, {"precision": 8}, "train")
    assert validate(TrainSpec, {"precision": 16}).precision == "16"  # a TOML/JSON number


def test_a_compile_failure_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InductorError: no working C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda module, **kw: Broken())
    with pytest.raises(TrainingError, match=r"torch.compile failed.*drop --compile"):
        Trainer(model(), tiny_data(), tiny_spec(compile=True)).fit()


def test_channels_last_switch() -> None:
    on = Trainer(model(), tiny_data(), tiny_spec(channels_last=True))
    off = Trainer(model(), tiny_data(), tiny_spec(channels_last=False))
    assert on.memory_format == torch.channels_last and off.memory_format == torch.contiguous_format
    conv = next(p for p in on.model.parameters() if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert math.isfinite(off.fit()[-1].val_loss)


def test_metrics_files_have_one_row_per_epoch(tmp_path: Path) -> None:
    from aezoo.callbacks import MetricsWriter

    history = Trainer(model(), tiny_data(), tiny_spec(epochs=2),
                      [MetricsWriter(tmp_path / "m.jsonl", tmp_path / "m.csv")]).fit()
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in rows] == [h.val_loss for h in history]
    csv_lines = (tmp_path / "m.csv").read_text().splitlines()
    assert csv_lines[0] == "epoch,train_loss,val_loss,seconds,images_per_s,lr"
    assert [float(line.split(",")[2]) for line in csv_lines[1:]] == [h.val_loss for h in history]


NAN_LOSS_PLUGIN = '''
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from aezoo.protocols import LossComponent


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    nan_at: int = Field(5, description="the training step whose loss is NaN")


def build(params):
    import torch
    from torch import nn

    class NaNAt(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, logits, target):
            loss = F.binary_cross_entropy_with_logits(logits, target)
            if not torch.is_grad_enabled():
                return loss
            self.calls += 1
            return loss * float("nan") if self.calls == params.nan_at else loss

    return NaNAt()


nan_loss = LossComponent(params=Params, build=build, description="BCE, NaN at one step")
'''


def test_nan_from_a_loss_plugin_is_one_line_and_exit_1(
        cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    from aezoo import registry

    site = tmp_path / "site"
    (site / "aezoo_test_nanloss-1.0.dist-info").mkdir(parents=True)
    (site / "aezoo_test_nanloss.py").write_text(NAN_LOSS_PLUGIN)
    (site / "aezoo_test_nanloss-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: aezoo-test-nanloss\nVersion: 1.0\n")
    (site / "aezoo_test_nanloss-1.0.dist-info" / "entry_points.txt").write_text(
        "[aezoo.losses]\nnan-bce = aezoo_test_nanloss:nan_loss\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    registry.clear_cache()
    try:
        result = cli("train", "cae-upsample", "--loss", "nan-bce", "--device", "cpu",
                     "--epochs", "3", "--limit", "96", "--batch-size", "32", "--no-images",
                     "--checkpoint-every", "2", "--set", "model.loss.params.nan_at=7",
                     "--out", "run")
    finally:
        sys.modules.pop("aezoo_test_nanloss", None)
        registry.clear_cache()
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "NaN/inf at step 7 (epoch 3)" in lines[0]
    assert "--resume run" in lines[0] and "Traceback" not in result.output
    assert read_state(Path("run/state.safetensors"))[1]["global_step"] == 6
    assert not Path("run/model.safetensors").exists()
