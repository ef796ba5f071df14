"""What the seed job does besides training steps, made cheaper without changing results:
torch's optimisers with foreach kernels, one durable commit for files saved together, the
pictures from validation's own forward pass."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import aezoo
from aezoo import fileio
from aezoo.config import build_run_spec
from aezoo.data import ArrayDataset
from aezoo.rundir import BEST_FILE, LAST_FILE, STATE_FILE
from aezoo.training import Trainer, optim
from aezoo.training.validation import reconstructions


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_data(n: int = 96, val: int = 24) -> ArrayDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n + val, 1, 28, 28), generator=g, dtype=torch.uint8).numpy()
    return ArrayDataset("tiny", images[:n], images[n:])


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers_step_exactly_as_torch(name: str, one_thread: None) -> None:
    spec = build_run_spec("cae-upsample", [{"train": {"device": "cpu", "optimizer": name,
                                                      "weight_decay": 0.01}}]).train
    ours_model, torch_model = aezoo.build("cae-upsample"), aezoo.build("cae-upsample")
    torch_model.load_state_dict(ours_model.state_dict())
    build = {"adam": optim.build_adam, "adamw": optim.build_adamw, "sgd": optim.build_sgd}[name]
    ours = build(None, ours_model.parameters(), spec, False)
    base = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    assert type(ours) is base  # torch's class as it is
    kwargs = ({"momentum": spec.momentum} if name == "sgd"
              else {"betas": spec.betas, "eps": spec.eps})
    theirs = base(torch_model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay,
                  **kwargs)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    for model, opt in ((ours_model, ours), (torch_model, theirs)):
        for _ in range(4):
            opt.zero_grad(set_to_none=True)
            model.loss(x).backward()
            opt.step()
    for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        assert torch.equal(a, b)
    mine, real = ours.state_dict(), theirs.state_dict()
    # Adam and AdamW run torch's foreach kernels on a CPU: the same numbers, one call per op.
    assert mine["param_groups"][0].pop("foreach") is (True if name != "sgd" else None)
    real["param_groups"][0].pop("foreach")
    assert mine["param_groups"] == real["param_groups"]  # resume files are unchanged
    assert all(torch.equal(mine["state"][i][k], real["state"][i][k])
               for i in real["state"] for k in real["state"][i])
    ours.load_state_dict(theirs.state_dict())  # and either loads the other's


def test_resume_accepts_a_state_saved_before_foreach_was_set(tmp_path: Path,
                                                               one_thread: None) -> None:
    """States saved when Adam ran torch's default loop (foreach None) still resume."""
    from aezoo.training.state import read_state, write_state

    spec = build_run_spec("cae-upsample", [{"train": {"device": "cpu", "epochs": 1,
                                                      "batch_size": 48}}])
    trainer = Trainer(aezoo.build(spec.model), tiny_data(), spec.train)
    trainer.fit()
    trainer.save_state(tmp_path / "state.safetensors")
    tensors, info = read_state(tmp_path / "state.safetensors")
    info["optimizer"]["param_groups"][0]["foreach"] = None
    write_state(tmp_path / "old.safetensors", tensors, info)
    fresh = Trainer(aezoo.build(spec.model), tiny_data(), spec.train)
    fresh.load_state(tmp_path / "old.safetensors")
    assert fresh.global_step == trainer.global_step


def test_optimizers_are_torch_classes_with_or_without_compile() -> None:
    """The optimisers are torch's own classes, whatever the spec (no subclass, no patching
    of torch.optim)."""
    for compile_ in (False, True):
        for name, base in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                           ("sgd", torch.optim.SGD)):
            spec = build_run_spec("cae-upsample", [{"train": {"compile": compile_,
                                                              "optimizer": name}}]).train
            build = {"adam": optim.build_adam, "adamw": optim.build_adamw,
                     "sgd": optim.build_sgd}[name]
            assert type(build(None, aezoo.build("cae-upsample").parameters(), spec,
                              False)) is base


def test_atomic_write_many_links_equal_data_and_commits_all(tmp_path: Path) -> None:
    same, other = b"weights" * 100, b"state"
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    fileio.atomic_write_many([(a, same), (b, same), (c, other)])
    assert a.read_bytes() == b.read_bytes() == same and c.read_bytes() == other
    assert os.stat(a).st_ino == os.stat(b).st_ino  # one file written, named twice
    fileio.atomic_write_many([(a, b"new")])  # replacing one name leaves the other as it was
    assert a.read_bytes() == b"new" and b.read_bytes() == same
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no temp files


def test_atomic_write_many_without_hard_links_writes_twice(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    def no_links(*args: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    data = b"x" * 10
    fileio.atomic_write_many([(tmp_path / "a", data), (tmp_path / "b", data)])
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes() == data
    assert os.stat(tmp_path / "a").st_ino != os.stat(tmp_path / "b").st_ino


def test_atomic_write_many_failure_keeps_every_old_file(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    fileio.atomic_write_many([(a, b"old a"), (b, b"old b")])
    real_fsync, calls = os.fsync, []

    def fail_second(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fail_second)
    with pytest.raises(OSError, match="No space left") as info:
        fileio.atomic_write_many([(a, b"new a"), (b, b"new b")])
    monkeypatch.undo()
    assert info.value.filename == str(b)  # names the caller's file, not a temp file
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b"  # nothing renamed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_checkpoints_best_and_last_are_one_write_and_load(tmp_path: Path,
                                                          one_thread: None) -> None:
    from aezoo.callbacks import Checkpointer

    spec = build_run_spec("cae-upsample", [{"train": {"device": "cpu", "epochs": 2,
                                                      "batch_size": 32}}])
    trainer = Trainer(aezoo.build(spec.model), tiny_data(), spec.train,
                      [Checkpointer(tmp_path)])
    trainer.fit()
    best, last = tmp_path / BEST_FILE, tmp_path / LAST_FILE
    if trainer.history[-1].val_loss < trainer.history[0].val_loss:  # best is the last epoch
        assert os.stat(best).st_ino == os.stat(last).st_ino
    for path in (best, last):
        assert aezoo.load(path).spec == trainer.model.spec
    loaded = aezoo.load(last)
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)
    assert (tmp_path / STATE_FILE).exists()


def test_save_still_refuses_a_changed_dtype_after_a_cached_check(tmp_path: Path) -> None:
    from aezoo.errors import CheckpointError

    model = aezoo.build("cae-upsample")
    aezoo.save(model, tmp_path / "ok.safetensors")  # fills the cache for this spec
    with pytest.raises(CheckpointError, match="float64"):
        aezoo.save(model.double(), tmp_path / "bad.safetensors")


def test_pictures_come_from_validation_and_match_a_fresh_forward(one_thread: None) -> None:
    from aezoo.viz import reconstruct

    spec = build_run_spec("cae-upsample", [{"train": {"device": "cpu", "epochs": 1,
                                                      "batch_size": 32}}])
    trainer = Trainer(aezoo.build(spec.model), tiny_data(), spec.train)
    trainer.fit()
    assert trainer.val_head is not None and trainer.val_head[0] == trainer.global_step
    shared = reconstructions(trainer, 10)
    fresh = reconstruct(trainer.model, trainer.val_images[:10], trainer.memory_format)
    assert shared.shape == fresh.shape == (10, 1, 28, 28) and shared.dtype == torch.uint8
    # The same weights in another batch size: equal up to a rounding step of a pixel.
    assert (shared.int() - fresh.int()).abs().max() <= 1
    trainer.global_step += 1  # the weights moved on: a fresh forward, not a stale picture
    assert reconstructions(trainer, 10).data_ptr() != shared.data_ptr()


def test_weights_finite_sees_any_nan_or_inf_and_no_false_alarm(tmp_path: Path) -> None:
    trainer = Trainer(aezoo.build("cae-upsample"), tiny_data(), build_run_spec(
        "cae-upsample", [{"train": {"device": "cpu"}}]).train)
    assert trainer.weights_finite()
    weight = trainer.model.encoder.net[0].weight  # type: ignore[index]
    with torch.no_grad():
        weight[0, 0, 0, 0] = -3.0e38  # huge but finite: a max-norm cannot overflow
        assert trainer.weights_finite()
        for bad in (math.nan, math.inf, -math.inf):
            weight[3, 0, 1, 2] = bad
            assert not trainer.weights_finite()
        weight[3, 0, 1, 2] = 0.0
    trainer.model.register_parameter("empty", torch.nn.Parameter(torch.zeros(0)))
    trainer.model.register_parameter("bf16", torch.nn.Parameter(torch.ones(3).bfloat16()))
    assert trainer.weights_finite()
    with torch.no_grad():
        trainer.model.bf16[1] = math.inf  # type: ignore[index]
    assert not trainer.weights_finite()
