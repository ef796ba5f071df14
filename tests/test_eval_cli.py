"""`aezoo eval`, `aezoo reconstruct` and `aezoo encode` on a trained run and on an RGB model."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import aezoo
from aezoo import metrics
from aezoo.config import build_run_spec
from aezoo.data import load_dataset
from aezoo.run import train
from aezoo.specs import DataSpec


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real (tiny) training run on the embedded data."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    spec = build_run_spec("cae-upsample", [{"train": {"epochs": 1, "batch_size": 64,
                                                      "device": "cpu", "images": False},
                                            "data": {"limit": 128}}])
    out = tmp_path_factory.mktemp("eval") / "run"
    train(spec, out)
    torch.set_num_threads(threads)
    yield out


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    from aezoo.cli import app

    monkeypatch.chdir(tmp_path)
    return lambda *args: CliRunner().invoke(app, list(args))


def png_size(path: Path) -> tuple[int, int, int]:
    """(width, height, PNG colour type) from the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height, _, color = struct.unpack(">IIBB", data[16:26])
    return width, height, color


def test_eval_json_matches_the_metrics_computed_directly(run: Any, run_dir: Path) -> None:
    result = run("eval", str(run_dir), "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"] == "mnist5k" and report["split"] == "val"  # no test split there
    assert report["images"] == 500 and report["params"] == 4385
    assert report["model"] == str(run_dir / "model.safetensors")
    assert report["images_per_s"] > 0

    model = aezoo.load(run_dir / "model.safetensors").eval()
    x = torch.from_numpy(load_dataset(DataSpec()).val).float() / 255
    with torch.no_grad():
        logits = model.decode_logits(model.encode(x))
        recon = torch.sigmoid(logits)
        loss = float(model.loss(x))
    for key, fn in (("mse", metrics.mse), ("psnr", metrics.psnr), ("ssim", metrics.ssim)):
        assert report[key] == pytest.approx(float(fn(recon, x).mean()), rel=1e-5), key
    assert report["bce"] == pytest.approx(loss, rel=1e-5) == report["loss"]


def test_eval_table_and_errors(run: Any, run_dir: Path, tmp_path: Path) -> None:
    table = run("eval", str(run_dir / "model.safetensors"), "--device", "cpu",
                "--split", "train", "--limit", "50")
    assert table.exit_code == 0, table.output
    for label in ("MSE", "BCE", "PSNR (dB)", "SSIM", "images/s", "parameters", "4,385",
                  "mnist5k/train (50 images"):
        assert label in table.output
    no_test = run("eval", str(run_dir), "--device", "cpu", "--split", "test")
    assert no_test.exit_code == 2 and "has no test split" in no_test.output
    bad_split = run("eval", str(run_dir), "--split", "holdout")
    assert bad_split.exit_code == 2 and "unknown split" in bad_split.output
    (tmp_path / "empty").mkdir()
    empty = run("eval", "empty")
    assert empty.exit_code == 2 and "holds no model.safetensors" in empty.output
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    assert run("eval", "junk.safetensors").exit_code == 1
    missing = run("eval", str(run_dir), "--data", "npz:nowhere.npz")
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_reconstruct_writes_a_gray_grid_of_the_expected_size(run: Any, run_dir: Path,
                                                             tmp_path: Path) -> None:
    result = run("reconstruct", str(run_dir), "--n", "6", "--device", "cpu", "--out", "r.png",
                 "--no-labels")
    assert result.exit_code == 0, result.output
    # 6 images of 28 px enlarged 4x (the default up to 32 px), 2 px gaps: 6*112 + 7*2
    # wide, 2*112 + 3*2 high, gray
    assert png_size(tmp_path / "r.png") == (686, 230, 0)
    named = run("reconstruct", str(run_dir), "--n", "6", "--device", "cpu", "--out", "n.png")
    assert named.exit_code == 0, named.output
    width, height, kind = png_size(tmp_path / "n.png")  # a margin naming the rows on the left
    assert 686 + 60 < width < 686 + 140 and (height, kind) == (230, 0)
    again = run("reconstruct", str(run_dir), "--out", "r.png")
    assert again.exit_code == 2 and "--force" in again.output


@pytest.fixture
def rgb(tmp_path: Path) -> tuple[Path, Path]:
    """An RGB model file (no run dir) and an npz dataset with its own test split."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "rgb.npz",
             train=rng.integers(0, 256, (20, 3, 32, 32), dtype=np.uint8),
             val=rng.integers(0, 256, (8, 3, 32, 32), dtype=np.uint8),
             test=rng.integers(0, 256, (12, 3, 32, 32), dtype=np.uint8),
             test_labels=np.arange(12) % 3)
    torch.manual_seed(0)
    model = aezoo.build("cae-strided", input_shape=(3, 32, 32))
    return aezoo.save(model, tmp_path / "rgb.safetensors"), tmp_path / "rgb.npz"


def test_rgb_model_reconstruct_encode_and_eval_on_the_test_split(
        run: Any, rgb: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = rgb
    pic = run("reconstruct", str(model), "--data", f"npz:{data}", "--n", "4", "--scale", "1",
              "--out", "rgb.png", "--no-labels")
    assert pic.exit_code == 0, pic.output
    assert png_size(tmp_path / "rgb.png") == (4 * 32 + 5 * 2, 2 * 32 + 3 * 2, 2)  # RGB
    assert "/test images" in pic.output

    enc = run("encode", str(model), "--data", f"npz:{data}", "--out", "z.npy", "--device", "cpu")
    assert enc.exit_code == 0, enc.output
    z = np.load(tmp_path / "z.npy", allow_pickle=False)
    built = aezoo.load(model)
    assert z.shape == (12, *built.latent_shape) and z.dtype == np.float32
    labels = np.load(tmp_path / "z.labels.npy", allow_pickle=False)
    assert labels.tolist() == (np.arange(12) % 3).tolist()
    x = torch.from_numpy(np.load(data)["test"]).float() / 255
    with torch.no_grad():
        assert np.allclose(z, built.encode(x).numpy(), atol=1e-5)

    flat = run("encode", str(model), "--data", f"npz:{data}", "--split", "val", "--flatten",
               "--out", "flat.npy")
    assert flat.exit_code == 0, flat.output
    assert np.load(tmp_path / "flat.npy").shape == (8, int(np.prod(built.latent_shape)))
    assert not (tmp_path / "flat.labels.npy").exists()  # the val split has no labels

    report = json.loads(run("eval", str(model), "--data", f"npz:{data}", "--json").stdout)
    assert report["split"] == "test" and report["images"] == 12
    assert 0 < report["psnr"] < 100 and -1 <= report["ssim"] <= 1


def test_shape_mismatch_is_a_clear_error(run: Any, run_dir: Path, rgb: tuple[Path, Path]) -> None:
    _, data = rgb
    result = run("eval", str(run_dir), "--data", f"npz:{data}")
    assert result.exit_code == 2
    assert "expects 1x28x28 images" in result.output and "3x32x32" in result.output


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def test_eval_json_of_a_nan_model_is_valid_json(run: Any, tmp_path: Path) -> None:
    """NaN weights make NaN metrics: null in --json (strict JSON parses it), nan in the table."""
    model = aezoo.build("cae-upsample")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    path = tmp_path / "nan.safetensors"
    aezoo.save(model, path)
    result = run("eval", str(path), "--limit", "16", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout, parse_constant=_refuse_constant)
    assert report["mse"] is None and report["loss"] is None and report["params"] == 4385
    table = run("eval", str(path), "--limit", "16", "--device", "cpu")
    assert table.exit_code == 0, table.output
    assert "nan" in table.stdout


def test_eval_of_8x8_images_reports_ssim_as_not_applicable(run: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, images=rng.integers(0, 256, (40, 1, 8, 8), dtype=np.uint8))
    model = tmp_path / "tiny.safetensors"
    aezoo.save(aezoo.build("cae-upsample", input_shape=(1, 8, 8)), model)
    result = run("eval", str(model), "--data", f"npz:{data}", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout, parse_constant=_refuse_constant)
    assert report["ssim"] is None and "at least 11x11" in report["notes"][0]
    assert 0 < report["psnr"] < 100 and report["mse"] > 0
    table = run("eval", str(model), "--data", f"npz:{data}", "--device", "cpu")
    assert table.exit_code == 0, table.output
    assert "n/a" in table.stdout and "note: ssim needs images of at least 11x11" in table.stdout


@pytest.mark.parametrize(("labels", "names", "expected"), [
    (None, None, ["latents"]),
    ([0, 1, 1], None, ["labels", "latents"]),
    ([0, 1, 1], ["zero", "one"], ["class_names", "labels", "latents"]),
])
def test_latents_npz_holds_exactly_its_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              labels: Any, names: Any,
                                              expected: list[str]) -> None:
    """Every keyword np.savez gets is an array of the file (numpy before 2.2 stores any
    other keyword, e.g. allow_pickle, as one more array)."""
    from aezoo import outputs

    passed: list[str] = []
    real = np.savez

    def savez(file: Any, *args: Any, **kwds: Any) -> None:
        assert not args
        passed.extend(kwds)
        real(file, **kwds)

    monkeypatch.setattr(outputs.np, "savez", savez)
    out = tmp_path / "z.npz"
    latents = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert outputs.write_latents(out, latents, labels, names) is None
    assert sorted(passed) == expected
    with np.load(out, allow_pickle=False) as npz:
        assert sorted(npz.files) == expected
        assert np.array_equal(npz["latents"], latents)
        if labels is not None:
            assert npz["labels"].dtype == np.int64 and npz["labels"].tolist() == labels
        if names:
            assert npz["class_names"].tolist() == names


def test_encode_outputs_any_extra_the_encoder_returns_by_name():
    """A VQ encoder's codebook indices (any named extra) come out as they are returned."""
    import torch

    import aezoo
    from aezoo.encoding import encode_split
    from aezoo.errors import UsageError

    model = aezoo.build("cae-upsample")
    plain = model.encode_parts

    def with_indices(x):
        code, extras = plain(x)
        return code, {**extras, "indices": code.flatten(1).argmax(1)}

    model.encode_parts = with_indices
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    indices = encode_split(model, images, batch_size=2, output="indices")
    assert indices.shape == (5,) and indices.dtype.kind == "i"
    codes = encode_split(model, images, output="mean")
    assert (indices == codes.reshape(5, -1).argmax(1)).all()
    with pytest.raises(UsageError, match="returns no tensor of that name.*mean, indices"):
        encode_split(model, images, output="codes")
