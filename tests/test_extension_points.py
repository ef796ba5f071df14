"""The trainer's extension points beyond watching: gradient accumulation, an EMA of the
weights, the hook before each optimiser step, hooks around validation, ``trainer.log``.
Tiny random data, in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import aezoo
from aezoo.callbacks import Callback, Checkpointer, MetricsWriter
from aezoo.data import ArrayDataset
from aezoo.specs import TrainSpec
from aezoo.training import Trainer


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_data(n: int = 96, n_val: int = 32) -> ArrayDataset:
    rng = np.random.default_rng(0)
    return ArrayDataset("tiny", rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8),
                        rng.integers(0, 256, (n_val, 1, 28, 28), dtype=np.uint8))


def spec(**settings: Any) -> TrainSpec:
    base = {"device": "cpu", "epochs": 1, "batch_size": 32, "seed": 0, "images": False,
            "precision": "32", "channels_last": False}
    return TrainSpec(**{**base, **settings})


def model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return aezoo.build("cae-upsample")


class Grads(Callback):
    """Records the gradients each optimiser step is about to apply."""

    def __init__(self) -> None:
        self.grads: list[list[torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer: Trainer, optimizer: Any) -> None:
        self.grads.append([p.grad.detach().clone() for g in optimizer.param_groups
                           for p in g["params"]])


def test_accumulating_k_batches_of_n_is_one_batch_of_k_times_n() -> None:
    data = tiny_data(n=64)
    one, accumulated = Grads(), Grads()
    Trainer(model(), data, spec(batch_size=64), [one]).fit()
    trainer = Trainer(model(), data, spec(batch_size=16, accumulate=4), [accumulated])
    assert trainer.steps_per_epoch == 1
    trainer.fit()
    assert len(one.grads) == len(accumulated.grads) == 1
    for a, b in zip(one.grads[0], accumulated.grads[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_accumulation_with_a_partial_last_batch_weights_by_images() -> None:
    data = tiny_data(n=40)  # 40 = 16 + 16 + 8: the last batch counts for its 8 images
    one, accumulated = Grads(), Grads()
    Trainer(model(), data, spec(batch_size=40), [one]).fit()
    Trainer(model(), data, spec(batch_size=16, accumulate=3), [accumulated]).fit()
    for a, b in zip(one.grads[0], accumulated.grads[0], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_ema_weights_differ_from_the_raw_ones_and_are_the_saved_model(tmp_path: Path) -> None:
    from aezoo.config import build_run_spec
    from aezoo.run import train

    run_spec = build_run_spec("cae-upsample", [{"train": {
        "epochs": 2, "device": "cpu", "ema": 0.9, "images": False, "precision": "32"},
        "data": {"limit": 256}}])
    result = train(run_spec, tmp_path / "run")
    saved = aezoo.load(tmp_path / "run" / "model.safetensors").state_dict()
    from aezoo.training.state import read_state

    tensors, _ = read_state(tmp_path / "run" / "state.safetensors")
    raw = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    differs = [k for k in saved if not torch.equal(saved[k], raw[k])]
    assert differs, "EMA weights should differ from the raw weights after training"
    floats = [k for k, t in (*result.model.named_parameters(), *result.model.named_buffers())
              if t.is_floating_point()]  # the EMA's tensors, in its order
    ema = [tensors[f"ema.{i}"] for i in range(len(floats))]
    assert f"ema.{len(floats)}" not in tensors
    for average, key in zip(ema, floats, strict=True):
        torch.testing.assert_close(saved[key], average)  # model.safetensors holds the average


def test_ema_resume_is_exact(tmp_path: Path) -> None:
    data = tiny_data()
    whole = Trainer(model(), data, spec(epochs=2, ema=0.8))
    whole.fit()
    first = Trainer(model(), data, spec(epochs=1, ema=0.8), [Checkpointer(tmp_path)])
    first.fit()
    second = Trainer(model(), data, spec(epochs=2, ema=0.8))
    second.load_state(tmp_path / "state.safetensors")
    second.fit()
    assert whole.ema is not None and second.ema is not None
    for a, b in zip(whole.ema.averages, second.ema.averages, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(whole.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)


class Logs(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.validated: list[dict[str, float]] = []

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        trainer.log("step_number", torch.tensor(float(step)))  # a device tensor: no sync
        self.calls.append("step")

    def on_validation_start(self, trainer: Trainer) -> None:
        self.calls.append("validation_start")

    def on_validation_end(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.calls.append("validation_end")
        self.validated.append(metrics)

    def on_epoch_end(self, trainer: Trainer, result: Any) -> None:
        self.calls.append("epoch_end")


def test_validation_hooks_and_trainer_log_reach_the_metrics(tmp_path: Path) -> None:
    logs = Logs()
    trainer = Trainer(model(), tiny_data(), spec(epochs=2),
                      [logs, MetricsWriter(tmp_path / "metrics.jsonl")])
    trainer.fit()
    assert logs.calls == ["step"] * 3 + ["validation_start", "validation_end", "epoch_end"] \
        + ["step"] * 3 + ["validation_start", "validation_end", "epoch_end"]
    assert [m["loss"] for m in logs.validated] == [r.val_loss for r in trainer.history]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step_number"] for r in rows] == [2.0, 2.0]  # the mean of steps 1, 2, 3
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[-1] == "step_number"
