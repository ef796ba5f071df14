"""folder:PATH streamed (aezoo.data.stream_folder): the same images, labels and training
as the in-memory folder; corrupt images named or skipped and counted; dead workers."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from aezoo.config import build_run_spec
from aezoo.data import load_dataset
from aezoo.data.stream_folder import FolderStream, PathTable, skipped_images
from aezoo.data.streamed import Indexed, StreamedDataset
from aezoo.errors import DataError
from aezoo.run import train
from aezoo.specs import DataSpec
from aezoo.training.batches import StreamedImages

CLASSES = ("ant", "bee", "cow")


def blobs(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth images (a loss that moves in one epoch, unlike noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(0.2, 0.8, 3)
        out[i] = (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.05 + 0.1 * r))).astype(
            np.uint8)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    for k, cls in enumerate(CLASSES):
        (root / cls).mkdir()
        for i, image in enumerate(blobs(24, 28, k)):
            Image.fromarray(image).save(root / cls / f"{i:02d}.png")
    return root


def streamed(root: Path, **spec: Any) -> StreamedDataset:
    data = load_dataset(DataSpec(name=f"folder:{root}", **spec), stream=True)
    assert isinstance(data, StreamedDataset)
    return data


def images(view: Indexed) -> np.ndarray:
    return np.stack([view.dataset[view.position(i)].numpy() for i in range(len(view))])


def test_streamed_folder_has_the_in_memory_images_labels_and_classes(folder: Path) -> None:
    memory = load_dataset(DataSpec(name=f"folder:{folder}", limit=50, image_size=(20, 20)))
    data = streamed(folder, limit=50, image_size=(20, 20))
    assert data.shape == memory.shape == (1, 20, 20)
    assert data.class_names == list(CLASSES)  # (the in-memory folder: data-core adds them)
    assert data.splits() == memory.splits() == {"train": 50, "val": 6}
    assert np.array_equal(images(data.train), memory.train)  # same order, same pixels
    assert np.array_equal(images(data.val), memory.val)
    assert np.array_equal(data.train_labels, memory.train_labels)
    rgb = streamed(folder, channels=3)
    assert rgb.train.dataset[0].shape == (3, 28, 28) and rgb.train.dataset[0].dtype == torch.uint8


def run(root: Path, out: Path, **train_settings: Any) -> list[tuple[float, float]]:
    settings = {"epochs": 1, "batch_size": 16, "lr": 0.01, "device": "cpu", "images": False,
                "precision": "32", **train_settings}
    spec = build_run_spec("cae-upsample", [{"data": {"name": f"folder:{root}"},
                                            "train": settings}])
    return [loss for h in train(spec, out).history for loss in (h.train_loss, h.val_loss)]


def test_streamed_folder_trains_like_the_in_memory_folder(folder: Path, tmp_path: Path) -> None:
    memory = run(folder, tmp_path / "memory", reader="memory")
    assert memory[0] < 0.69  # it learnt something: the comparison means something
    assert run(folder, tmp_path / "stream", reader="stream", workers=2) == \
        pytest.approx(memory, rel=1e-6, abs=1e-7)


def test_a_folder_too_big_for_memory_streams_by_itself(folder: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.data import stream_folder

    assert not isinstance(load_dataset(DataSpec(name=f"folder:{folder}")), StreamedDataset)
    monkeypatch.setattr(stream_folder, "available_bytes", lambda: 100_000)  # 72 x 784 B > 50 kB
    assert isinstance(load_dataset(DataSpec(name=f"folder:{folder}")), StreamedDataset)


def test_paths_are_one_buffer() -> None:
    names = ["a.png", "dir/ü.jpg", "x" * 300]
    table = PathTable(names)
    assert [table[i] for i in range(3)] == names and table.buffer.dtype == np.uint8


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    root = tmp_path / "damaged"
    root.mkdir()
    for i, image in enumerate(blobs(12, 16, 5)):
        Image.fromarray(image).save(root / f"{i:02d}.png")
    good = (root / "03.png").read_bytes()
    (root / "03.png").write_bytes(good[: len(good) // 2])  # header fine, data truncated
    return root


def test_a_corrupt_image_names_its_file(damaged: Path) -> None:
    data = streamed(damaged)
    with pytest.raises(DataError, match=r"cannot read image .*03\.png .*--skip-bad-images"):
        images(data.train)
        images(data.val)


def test_skip_bad_images_skips_counts_and_names_the_first(damaged: Path) -> None:
    data = streamed(damaged, skip_bad=True)
    every = np.concatenate([images(data.train), images(data.val)])
    assert len(every) == 12  # the broken one's place is taken by the next readable image
    count, first = skipped_images(data) or (0, "")
    assert count == 1 and first.endswith("03.png")


def test_an_unreadable_header_is_left_out_when_skipping(damaged: Path) -> None:
    (damaged / "07.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"07\.png \(not an image Pillow can read\)"):
        streamed(damaged)
    assert streamed(damaged, skip_bad=True).splits() == {"train": 10, "val": 1}


def test_a_worker_error_reaches_training_as_one_line(damaged: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        run(damaged, tmp_path / "run", reader="stream", workers=2, batch_size=4)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("cannot read image ") and "03.png" in message


class Killer(FolderStream):
    """A worker that dies (as the OOM killer would do it) at image 5."""

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__getitem__(index)


def test_a_killed_worker_is_a_one_line_error_not_a_hang(folder: Path) -> None:
    base = streamed(folder).train.dataset
    split = Indexed(Killer(base.paths, base.size, base.channels))
    view = StreamedImages(split, len(split), (1, 28, 28), torch.device("cpu"), 2, 0, "photos")
    view.plan([np.arange(i, i + 4) for i in range(0, 16, 4)])
    with pytest.raises(DataError, match=r"^a DataLoader worker reading photos failed \("):
        for i in range(0, 16, 4):
            view[slice(i, i + 4)]


def test_the_cli_skips_counts_and_says_so(damaged: Path, cli: Any) -> None:
    args = ["train", "cae-strided", "--data", f"folder:{damaged}", "--reader", "stream",
            "--workers", "0", "--epochs", "2", "--batch-size", "4", "--no-images",
            "--device", "cpu"]
    stopped = cli(*args, "--out", "stop")
    assert stopped.exit_code == 1
    assert stopped.stderr.strip().splitlines()[-1].startswith("error: cannot read image ")
    skipped = cli(*args, "--skip-bad-images", "--out", "skip")
    assert skipped.exit_code == 0, skipped.output
    warnings = [w for w in skipped.stderr.splitlines() if "unreadable image" in w]
    assert len(warnings) == 2 and "skipped 1 unreadable image so far" in warnings[0]
    assert warnings[0].rstrip().endswith("03.png)")
