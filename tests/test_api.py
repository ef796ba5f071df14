"""The Python front door: aezoo.fit on arrays, tensors and Datasets; the Run it returns;
evaluate / reconstruct / encode as functions. Tiny data, one epoch each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import aezoo
from aezoo.api import Picture, Run
from aezoo.errors import UsageError
from aezoo.training.hooks import Callback

FAST = {"epochs": 1, "batch_size": 32, "device": "cpu", "verbose": 0, "images": False}


def digits(n: int, start: int = 0) -> np.ndarray:
    from aezoo.data.embedded import read_mnist5k

    images, _ = read_mnist5k()
    return np.array(images[start:start + n])  # uint8 (n, 1, 28, 28), sorted by class


def test_import_aezoo_stays_cheap() -> None:
    code = ("import sys, aezoo; aezoo.fit; aezoo.evaluate; "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_fit_on_an_array_writes_a_run_that_resumes(tmp_path: Path) -> None:
    x = digits(96)
    x_nhwc = x.transpose(0, 2, 3, 1).astype(np.float32) / 255  # floats in [0, 1], NHWC
    run = aezoo.fit("cae-upsample", (x_nhwc[:64], x_nhwc[64:]), out=tmp_path / "r", **FAST)
    assert isinstance(run, Run) and not run.interrupted
    assert [row["epoch"] for row in run.history] == [1]
    assert {"train_loss", "val_loss", "seconds", "images_per_s", "lr"} <= set(run.history[0])
    assert run.model is not None and run.model_path.exists()
    spec = json.loads((run.out_dir / "run.json").read_text())
    name = spec["data"]["name"]
    assert name.startswith("npz:/") and Path(name[4:]).parent == (tmp_path / "r").resolve()
    with np.load(name[4:]) as npz:  # saved as uint8 NCHW: the same pixels
        assert npz["train"].dtype == np.uint8 and np.array_equal(npz["train"], x[:64])
        assert np.array_equal(npz["val"], x[64:])
    more = run.resume(epochs=2, verbose=0)
    assert [row["epoch"] for row in more.history] == [1, 2]
    report = aezoo.evaluate(more, device="cpu")  # the run's own data, found from run.json
    assert report["split"] == "val" and report["images"] == 32


def test_fit_reads_tensors_datasets_and_names(tmp_path: Path) -> None:
    x = torch.from_numpy(digits(64))[:, 0]  # a uint8 (N, H, W) tensor
    labels = torch.arange(64) % 10
    data = torch.utils.data.TensorDataset(x.float() / 255, labels)
    run = aezoo.fit("cae-upsample", data, out=tmp_path / "ds", **FAST)
    with np.load(run.spec.data.name[4:]) as npz:
        assert npz["train"].shape == (64, 1, 28, 28)
        assert np.array_equal(npz["train_labels"], labels.numpy())
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    run = aezoo.fit("cae-upsample", loader, out=tmp_path / "dl", **FAST)
    assert len(run.history) == 1
    run = aezoo.fit("cae-upsample", "mnist5k", out=tmp_path / "name", limit=64, **FAST)
    assert run.spec.data.name == "mnist5k" and run.spec.data.limit == 64
    assert not list(run.out_dir.glob("data-*.npz"))


def test_fit_keywords_are_checked() -> None:
    with pytest.raises(UsageError, match="unknown keyword 'epoch'.*did you mean epochs="):
        aezoo.fit("cae-upsample", digits(8), epoch=1)
    with pytest.raises(UsageError, match="fit needs a model"):
        aezoo.fit()
    with pytest.raises(UsageError, match="cannot train on a"):
        aezoo.fit("cae-upsample", 3.5)


def test_a_failed_fit_leaves_no_directory(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(aezoo.AezooError):
        aezoo.fit("cae-upsample", digits(8), lr=-1.0, verbose=0)
    with pytest.raises(aezoo.AezooError):  # refused once the directory is claimed
        aezoo.fit("cae-upsample", digits(8), precision="16", device="cpu", verbose=0)
    assert not list(tmp_path.rglob("*")), "a run that never started left files"
    with pytest.raises(aezoo.AezooError):  # the data is refused when the run starts
        aezoo.fit("cae-upsample", digits(8), out=tmp_path / "bad", precision="16",
                  device="cpu", verbose=0)
    assert not (tmp_path / "bad").exists()


def test_fit_starts_from_a_built_model(tmp_path: Path) -> None:
    model = aezoo.build("cae-upsample")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.01)
    run = aezoo.fit(model, digits(64), out=tmp_path / "ft", **{**FAST, "lr": 1e-12})
    assert run.spec.train.init == str((tmp_path / "ft" / "init.safetensors").resolve())
    assert run.model is not None
    for p in run.model.parameters():  # lr 1e-12: still the weights it started from
        assert torch.allclose(p, torch.full_like(p, 0.01), atol=1e-6)


def test_ctrl_c_returns_the_partial_run(tmp_path: Path) -> None:
    class CtrlC(Callback):
        def on_step_end(self, trainer: Any, step: int, images: int) -> None:
            if trainer.epoch == 2 and step == 1:
                os.kill(os.getpid(), signal.SIGINT)

    run = aezoo.fit("cae-upsample", digits(64), out=tmp_path / "int", callbacks=[CtrlC()],
                    **{**FAST, "epochs": 3})
    assert run.interrupted and [row["epoch"] for row in run.history] == [1]
    assert run.model is not None  # the last checkpoint's
    done = run.resume(verbose=0)
    assert [row["epoch"] for row in done.history] == [1, 2, 3] and not done.interrupted


def test_progress_is_printed_unless_verbose_0(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    aezoo.fit("cae-upsample", digits(48), out=tmp_path / "v", **{**FAST, "verbose": 1})
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "saved " in out


def test_evaluate_reconstruct_encode_take_models_and_arrays(tmp_path: Path) -> None:
    model = aezoo.build("cae-upsample")
    x = digits(12)
    report = aezoo.evaluate(model, x, device="cpu")
    assert report["images"] == 12 and report["split"] == "given"
    picture = aezoo.reconstruct(model, n=4, data=x, device="cpu", out=tmp_path / "r.png")
    assert isinstance(picture, Picture) and (tmp_path / "r.png").exists()
    assert np.asarray(picture).ndim == 2  # grey: (H, W), as matplotlib's imshow takes it
    assert picture._repr_png_().startswith(b"\x89PNG")
    with pytest.raises(aezoo.AezooError, match="already exists"):
        aezoo.reconstruct(model, data=x, out=tmp_path / "r.png")
    latents, labels, *_ = aezoo.encode(model, x.transpose(0, 2, 3, 1), device="cpu")
    assert latents.shape == (12, 8, 4, 4) and labels is None
    enc = aezoo.encode(model, "mnist5k", split="val", limit=5, flatten=True, device="cpu",
                       out=tmp_path / "z.npz")
    assert enc.latents.shape == (5, 128) and enc.labels is not None
    assert enc.files == (tmp_path / "z.npz",)


def test_the_callers_model_keeps_its_training_mode() -> None:
    model = aezoo.build("cae-upsample")
    x = digits(8)
    uses = {"evaluate": lambda: aezoo.evaluate(model, x, device="cpu"),
            "encode": lambda: aezoo.encode(model, x, device="cpu"),
            "interpolate": lambda: aezoo.interpolate(model, data=x, steps=3, device="cpu"),
            "reconstruct": lambda: aezoo.reconstruct(model, n=2, data=x, device="cpu")}
    for name, use in uses.items():
        for training in (True, False):
            model.train(training)
            use()
            assert model.training is training, name
