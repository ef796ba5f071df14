"""hf:PATH (aezoo_datasets.hf) on datasets made here with save_to_disk and as parquet; offline
(HF_DATASETS_OFFLINE=1), never the network."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aezoo_datasets.hf import parse
from PIL import Image

from aezoo.config import build_run_spec
from aezoo.data import load_dataset
from aezoo.data.streamed import StreamedDataset
from aezoo.errors import DataError, UsageError
from aezoo.run import train
from aezoo.specs import DataSpec

try:  # not only missing: with numpy < 2, pyarrow (under datasets) refuses to import
    import datasets
except ImportError as exc:
    pytest.skip(f"the hf extra is not usable here ({exc})", allow_module_level=True)
RNG = np.random.default_rng(4)
PIXELS = RNG.integers(0, 256, (30, 28, 28), dtype=np.uint8)
NAMES = ["circle", "square", "star"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The libraries read these at import (maybe before this module): set both ways.
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no user cache


def table(rows: range) -> Any:
    features = datasets.Features({"picture": datasets.Image(),
                                  "shape": datasets.ClassLabel(names=NAMES),
                                  "note": datasets.Value("string")})
    return datasets.Dataset.from_dict(
        {"picture": [Image.fromarray(PIXELS[i]) for i in rows],
         "shape": [i % 3 for i in rows], "note": [f"n{i}" for i in rows]}, features=features)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hf") / "shapes"
    datasets.DatasetDict({"train": table(range(24)), "test": table(range(24, 30))}) \
        .save_to_disk(str(root))
    return root


def load(name: str, **spec: Any) -> StreamedDataset:
    data = load_dataset(DataSpec(name=name, **spec))
    assert isinstance(data, StreamedDataset)
    return data


def pixels(view: Any) -> np.ndarray:
    return np.stack([view.dataset[view.position(i)].numpy()[0] for i in range(len(view))])


def test_parse() -> None:
    assert parse("mnist") == ("mnist", None, {})
    assert parse("user/set:test?image=img") == ("user/set", "test", {"image": "img"})
    with pytest.raises(UsageError, match="unknown option size"):
        parse("x?size=3")


def test_save_to_disk_dataset_with_class_labels(saved: Path) -> None:
    data = load(f"hf:{saved}", val_fraction=0.25)
    assert data.shape == (1, 28, 28) and data.class_names == NAMES
    assert data.splits() == {"train": 18, "val": 6, "test": 6}
    rows = np.concatenate([data.train.indices, data.val.indices])
    got = np.concatenate([pixels(data.train), pixels(data.val)])
    assert np.array_equal(got, PIXELS[rows])  # image column found by its feature type
    assert np.array_equal(data.train_labels, rows[:18] % 3)  # the ClassLabel column
    only = load(f"hf:{saved}:test", image_size=14, channels=3)
    assert only.splits() == {"train": 5, "val": 1} and only.shape == (3, 14, 14)


def test_parquet_file_and_chosen_columns(tmp_path: Path) -> None:
    path = tmp_path / "shapes.parquet"
    table(range(10)).to_parquet(str(path))
    data = load(f"hf:{path}?image=picture&label=shape")
    assert data.shape == (1, 28, 28) and data.splits()["train"] + data.splits()["val"] == 10
    assert data.class_names == NAMES  # the parquet schema keeps the ClassLabel names
    with pytest.raises(UsageError, match=r"has no column 'pixels' \(columns: picture, shape"):
        load(f"hf:{path}?image=pixels")


def test_training_on_a_saved_dataset(saved: Path, tmp_path: Path) -> None:
    spec = build_run_spec("cae-upsample", [{
        "data": {"name": f"hf:{saved}"},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "images": False,
                  "workers": 0}}])
    assert len(train(spec, tmp_path / "run").history) == 1


def test_offline_hub_name_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"^cannot load someone/no-such-set with datasets "):
        load("hf:someone/no-such-set")
    with pytest.raises(UsageError, match="does not exist"):
        load(f"hf:{tmp_path}/nothing.parquet")


def test_without_the_extra_the_error_says_what_to_install(
        saved: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = builtins.__import__

    def no_datasets(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "datasets" or name.startswith("datasets."):
            raise ModuleNotFoundError("No module named 'datasets'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(UsageError, match=r"pip install 'aezoo\[hf\]'"):
        load(f"hf:{saved}")
