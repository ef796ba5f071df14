"""Exact resume when data is memory-mapped or streamed: the sampler's state (the epoch's
permutation, the position in it, the workers' seeds) survives a SIGKILL mid-epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import aezoo
from aezoo.callbacks import Callback, Checkpointer
from aezoo.data import load_dataset
from aezoo.specs import DataSpec, TrainSpec
from aezoo.training import Trainer
from aezoo.training.state import read_info

PLUGIN = '''
import os
import signal

import numpy as np
import torch
from torch.utils.data import Dataset

from aezoo.data.source import DatasetSource
from aezoo.data.streamed import StreamedSplits


class NpyImages(Dataset):
    """A map-style streamed split: one image read from the .npy per item."""

    def __init__(self, path):
        self.path = path

    def __len__(self):
        return len(np.load(self.path, mmap_mode="r"))

    def __getitem__(self, i):
        return torch.from_numpy(np.array(np.load(self.path, mmap_mode="r")[i]))


def load(ctx):
    split = NpyImages(ctx.argument)
    return StreamedSplits(shape=(1, 28, 28), train=split)


source = DatasetSource(name="npystream", description="test", license="test", load=load,
                       takes_path=True)


class SignalAt:
    def __init__(self, out_dir):
        at, _, name = os.environ.get("AEZOO_TEST_SIGNAL", "").partition(":")
        self.at, self.sig = (int(at), getattr(signal, name)) if at else (0, None)

    def on_step_end(self, trainer, step, images):
        if trainer.global_step == self.at:
            os.kill(os.getpid(), self.sig)
'''


def site(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "aezoo_test_stream.py").write_text(PLUGIN)
    info = root / "aezoo_test_stream-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aezoo-test-stream\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[aezoo.datasets]\nnpystream = aezoo_test_stream:source\n"
        "[aezoo.callbacks]\nsignal-at = aezoo_test_stream:SignalAt\n")
    return root


def aezoo_cli(args: list[str], where: Path, signal_at: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEZOO_")}
    env.update(PYTHONPATH=os.pathsep.join([str(where), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", AEZOO_TEST_SIGNAL=signal_at)
    return subprocess.run([sys.executable, "-m", "aezoo", *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_a_streamed_run_killed_mid_epoch_resumes_bit_exact(tmp_path: Path) -> None:
    where = site(tmp_path / "site")
    images = np.random.default_rng(0).integers(0, 256, (150, 1, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    train = ["train", "cae-upsample", "--device", "cpu", "--epochs", "2", "--batch-size", "27",
             "--data", f"npystream:{tmp_path / 'x.npy'}", "--workers", "2", "--no-images",
             "--checkpoint-every", "2", "--callback", "signal-at"]  # 5 steps per epoch
    ref, out = tmp_path / "ref", tmp_path / "run"
    done = aezoo_cli([*train, "--out", str(ref)], where)
    assert done.returncode == 0, done.stderr
    assert "reading data: stream" in done.stdout and "2 DataLoader workers" in done.stdout
    killed = aezoo_cli([*train, "--out", str(out)], where, signal_at="7:SIGKILL")
    assert killed.returncode == -9
    info = read_info(out / "state.safetensors")
    assert (info["epoch"], info["step"]) == (2, 1)  # the checkpoint of step 6, mid-epoch
    assert info["exactness"]["loader_workers"] == 2  # the order follows it: resume checks
    resumed = aezoo_cli(["train", "--resume", str(out)], where)
    assert resumed.returncode == 0, resumed.stderr
    assert "bit-exact" not in resumed.stderr  # the same workers: nothing to warn of
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    def losses(run: Path) -> list[Any]:
        return [json.loads(line)["val_loss"] for line in
                (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(ref) == losses(out)


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("power cut")


def test_a_mapped_run_resumes_from_a_mid_epoch_checkpoint_bit_exact(tmp_path: Path) -> None:
    images = np.random.default_rng(3).integers(0, 256, (110, 1, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    data = load_dataset(DataSpec(name=f"npy:{tmp_path / 'x.npy'}"))
    spec = TrainSpec(device="cpu", epochs=2, batch_size=16, checkpoint_every=3, reader="mapped")

    def fresh(seed: int = 0) -> Any:
        torch.manual_seed(seed)
        return aezoo.build("cae-upsample")

    full = Trainer(fresh(), data, spec)
    full.fit()
    crashed = Trainer(fresh(), data, spec, [Checkpointer(tmp_path), Crash(10)])
    with pytest.raises(RuntimeError, match="power cut"):
        crashed.fit()
    assert read_info(tmp_path / "state.safetensors")["global_step"] == 9  # epoch 2, step 2
    resumed = Trainer(fresh(seed=5), data, spec.model_copy(update={"reader": "memory"}))
    resumed.load_state(tmp_path / "state.safetensors")  # another reader: the same order
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
