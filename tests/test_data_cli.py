"""The data layer through the CLI: shapes follow the data, bad input is one red line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from aezoo import registry
from aezoo.cli import app
from aezoo.data import sources

RNG = np.random.default_rng(0)


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, exit_code: int, *fragments: str) -> str:
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_train_picks_up_the_data_shape(tmp_path: Path) -> None:
    images = RNG.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)  # N, H, W, C
    np.savez(tmp_path / "rgb.npz", images=images, labels=np.arange(24) % 4)
    out = tmp_path / "run"
    result = run("train", "cae-strided", "--data", f"npz:{tmp_path / 'rgb.npz'}",
                 "--epochs", "1", "--batch-size", "8", "--val-fraction", "0.25",
                 "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "run.json").read_text())
    assert spec["model"]["input_shape"] == [3, 32, 32]
    assert spec["data"]["val_fraction"] == 0.25
    assert (out / "model.safetensors").exists()


def test_train_converts_with_image_size_and_channels(tmp_path: Path) -> None:
    for i in range(10):
        Image.fromarray(RNG.integers(0, 256, (20 + i, 24), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
    out = tmp_path / "run"
    result = run("train", "cae-strided", "--data", f"folder:{tmp_path}", "--image-size", "16",
                 "--channels", "3", "--epochs", "1", "--device", "cpu", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "run.json").read_text())["model"]["input_shape"] == [3, 16, 16]


def test_data_info_on_local_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", RNG.integers(0, 256, (50, 1, 12, 12), dtype=np.uint8))
    result = run("data", "info", f"npy:{tmp_path / 'x.npy'}", "--val-fraction", "0.2",
                 "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["shape"] == [1, 12, 12]
    assert {k: v["images"] for k, v in info["splits"].items()} == {"train": 40, "val": 10}
    text = run("data", "info", f"npy:{tmp_path / 'x.npy'}")
    assert "shape 1x12x12" in text.stdout and "45" in text.stdout  # default 0.1


def test_unknown_dataset(tmp_path: Path) -> None:
    one_line_error(run("train", "cae-strided", "--data", "cifar-10"), 2,
                   "unknown dataset 'cifar-10'", "did you mean 'cifar10'?")
    one_line_error(run("data", "info", "mnits"), 2, "did you mean 'mnist'?")
    one_line_error(run("data", "fetch", str(tmp_path)), 2, f"did you mean 'folder:{tmp_path}'")


def bad_inputs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """case -> (--data value, a fragment of the one-line error)"""
    (tmp_path / "empty").mkdir()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(mixed / "b.png")
    junk = tmp_path / "junk"
    junk.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(junk / "a.png")
    (junk / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    np.save(tmp_path / "flat.npy", np.zeros((10, 784), np.uint8))
    np.savez(tmp_path / "keys.npz", pixels=np.zeros((10, 8, 8)), y=np.zeros(10))
    np.save(tmp_path / "range.npy", np.full((4, 8, 8), 3.5, np.float32))
    return {
        "empty folder": (f"folder:{tmp_path / 'empty'}", "holds no images"),
        "mixed sizes": (f"folder:{mixed}", "pass --image-size"),
        "unreadable image": (f"folder:{junk}", "cannot read image"),
        "wrong rank": (f"npy:{tmp_path / 'flat.npy'}", "rank 2"),
        "missing npz key": (f"npz:{tmp_path / 'keys.npz'}", "no image array under a known key"),
        "float range": (f"npy:{tmp_path / 'range.npy'}", "floats must lie in [0, 1]"),
    }


@pytest.mark.parametrize("case", ["empty folder", "mixed sizes", "unreadable image",
                                  "wrong rank", "missing npz key", "float range"])
def test_bad_data_is_one_red_line(tmp_path: Path, case: str) -> None:
    data, fragment = bad_inputs(tmp_path)[case]
    out = tmp_path / "run"
    one_line_error(run("train", "cae-strided", "--data", data, "--epochs", "1",
                       "--device", "cpu", "--out", str(out)), 1, fragment)
    assert not (out / "model.safetensors").exists()
    one_line_error(run("data", "info", data), 1, fragment)


def test_bad_flags_are_usage_errors(tmp_path: Path) -> None:
    one_line_error(run("train", "cae-strided", "--image-size", "big"), 2, "data.image_size")
    one_line_error(run("train", "cae-strided", "--channels", "2"), 2, "data.channels")
    one_line_error(run("train", "cae-strided", "--val-fraction", "1.5"), 2, "data.val_fraction")
    one_line_error(run("train", "cae-strided", "--data", "folder"), 2, "write folder:PATH")


def test_shape_the_model_cannot_serve_fails_before_any_download(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AEZOO_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "mnist", dataclasses.replace(
        sources.mnist, mirrors=("http://127.0.0.1:9/never-contacted/",)))
    registry.clear_cache()
    try:
        one_line_error(run("train", "cae-upsample", "--data", "mnist", "--image-size", "30",
                           "--device", "cpu", "--out", str(tmp_path / "run")), 2,
                       "cannot turn", "30x30")
    finally:
        monkeypatch.undo()
        registry.clear_cache()
    assert not (tmp_path / "cache").exists()
