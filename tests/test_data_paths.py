"""How training reads data (aezoo.training.batches): device-resident, memory-mapped and
streamed readers train the same model bit for bit, in the same order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import aezoo
from aezoo.data import ArrayDataset
from aezoo.data.streamed import Indexed, StreamedDataset
from aezoo.errors import DataError
from aezoo.specs import TrainSpec
from aezoo.training import Trainer


class Images(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A map-style streamed split over an array (what a streamed source returns)."""

    def __init__(self, x: np.ndarray, bad: int | None = None) -> None:
        self.x, self.bad = x, bad

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        if i == self.bad:
            raise DataError(f"cannot read image img{i}.png (truncated)", "remove the file")
        return torch.from_numpy(self.x[i].copy())


RNG = np.random.default_rng(1)
TRAIN = RNG.integers(0, 256, (160, 1, 28, 28), dtype=np.uint8)
VAL = RNG.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8)


def fit(data: Any, **settings: Any) -> Trainer:
    torch.manual_seed(0)
    spec = TrainSpec(device="cpu", epochs=2, batch_size=32, **settings)
    trainer = Trainer(aezoo.build("cae-upsample"), data, spec)
    trainer.fit()
    return trainer


def same(a: Trainer, b: Trainer) -> bool:
    wa, wb = a.model.state_dict(), b.model.state_dict()
    return all(torch.equal(wa[k], wb[k]) for k in wa) and \
        [h.val_loss for h in a.history] == [h.val_loss for h in b.history]


@pytest.fixture(scope="module")
def in_memory() -> Trainer:
    trainer = fit(ArrayDataset("tiny", TRAIN, VAL))
    assert trainer.reader.kind == "memory"
    return trainer


@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_map_style_split_trains_exactly_like_memory(in_memory: Trainer,
                                                               workers: int) -> None:
    data = StreamedDataset("tiny", (1, 28, 28), Indexed(Images(TRAIN)), Indexed(Images(VAL)))
    streamed = fit(data, workers=workers)
    assert streamed.reader.kind == "stream"
    assert same(in_memory, streamed)


def test_a_forced_mapped_reader_trains_exactly_like_memory(in_memory: Trainer) -> None:
    mapped = fit(ArrayDataset("tiny", TRAIN, VAL), reader="mapped")
    assert mapped.reader.kind == "mapped"
    assert "asked for by train.reader" in mapped.reader.describe()
    assert same(in_memory, mapped)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_image_in_a_worker_is_one_line_naming_it(workers: int) -> None:
    data = StreamedDataset("tiny", (1, 28, 28), Indexed(Images(TRAIN, bad=7)),
                           Indexed(Images(VAL)))
    with pytest.raises(DataError,
                       match=r"^cannot read image img7\.png \(truncated\): remove the file$"):
        fit(data, workers=workers)


def test_a_batch_of_the_wrong_shape_names_the_split() -> None:
    data = StreamedDataset("tiny", (1, 32, 32), Indexed(Images(TRAIN)), Indexed(Images(VAL)))
    with pytest.raises(DataError, match="tiny train split gave a torch.uint8 batch of 1x28x28"):
        Trainer(aezoo.build("cae-upsample", input_shape=(1, 32, 32)), data,
                TrainSpec(device="cpu", epochs=1, batch_size=32, workers=0)).fit()


class Stream(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    """An iterable split as docs/data.md describes: shuffled per epoch, sharded by rank and
    by worker, skipping per worker."""

    def __init__(self, x: np.ndarray) -> None:
        self.x, self.epoch, self.seed, self.rank, self.world, self.skipped = x, 1, 0, 0, 1, 0

    def __len__(self) -> int:
        return len(self.x)

    def set_epoch(self, epoch: int, seed: int) -> None:
        self.epoch, self.seed = epoch, seed

    def set_shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world = rank, world_size

    def skip(self, n: int) -> None:
        self.skipped = n

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        w, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))
        mine = order[self.rank::self.world][w::workers][self.skipped // workers:]
        for i in mine:
            yield torch.from_numpy(self.x[i].copy())


def test_an_iterable_split_resumes_mid_epoch_bit_exact(tmp_path: Any) -> None:
    from aezoo.callbacks import Checkpointer

    class Crash:
        def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
            if trainer.global_step == 8:
                raise RuntimeError("power cut")

    def data() -> StreamedDataset:
        return StreamedDataset("tiny", (1, 28, 28), Stream(TRAIN), Indexed(Images(VAL)))

    spec = TrainSpec(device="cpu", epochs=2, batch_size=32, workers=2, checkpoint_every=3)
    torch.manual_seed(0)
    full = Trainer(aezoo.build("cae-upsample"), data(), spec)
    full.fit()
    torch.manual_seed(0)
    crashed = Trainer(aezoo.build("cae-upsample"), data(), spec,
                      [Checkpointer(tmp_path), Crash()])
    with pytest.raises(RuntimeError, match="power cut"):
        crashed.fit()
    resumed = Trainer(aezoo.build("cae-upsample"), data(), spec)
    resumed.load_state(tmp_path / "state.safetensors")  # epoch 2, step 1: 32 images in
    assert (resumed.epoch, resumed.step) == (2, 1)
    resumed.fit()
    assert same(full, resumed)
