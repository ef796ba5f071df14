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
