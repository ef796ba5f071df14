"""Streamed splits read by a ``torch.utils.data.DataLoader`` in the order the loop asks.

A map-style split gets a batch sampler that is the epoch's plan (the trainer's seeded
permutation from its position on), so the workers read exactly the batches the loop will
index, in order. An iterable split is read in turn order and cut to the loop's batches.
Failures in a worker come back as one line (:class:`_Failure`), never as a traceback.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aezoo.data.streamed import is_iterable
from aezoo.errors import AezooError, DataError, summary
from aezoo.protocols import format_shape

SMALL = 64  # a request this small that the plan did not foresee is read in this process
ITER_BATCH = 64  # images a worker of an iterable split hands over at a time


@dataclass(frozen=True)
class _Failure:
    """What a worker returns instead of a batch when reading an image failed."""

    problem: str
    fix: str


class _Guarded(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A map-style split whose errors travel to the main process as one line."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except AezooError as exc:
            return _Failure(exc.problem, exc.fix or "")
        except Exception as exc:  # a plugin's bug: name it without a traceback
            return _Failure(f"reading image {index} failed: {summary(exc)}",
                            "rerun with --workers 0 and AEZOO_DEBUG=1 for the traceback")


class _GuardedIter(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, split: Any) -> None:
        self.split = split

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.split
        except AezooError as exc:
            yield _Failure(exc.problem, exc.fix or "")
        except Exception as exc:
            yield _Failure(f"streaming failed: {summary(exc)}",
                           "rerun with --workers 0 and AEZOO_DEBUG=1 for the traceback")


def _collate(items: list[Any]) -> Any:
    for item in items:
        if isinstance(item, _Failure):
            return item
    return torch.stack(items)


def _seed_worker(seed: int) -> Any:
    def init(worker_id: int) -> None:  # fixed by the run's seed, not by when workers start
        import random

        s = (seed * 1009 + worker_id) % 2**32
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
    return init


class StreamedImages:
    """Batches of a streamed split, read by DataLoader workers in the order planned."""

    def __init__(self, split: Any, count: int, shape: tuple[int, ...], device: torch.device,
                 workers: int, seed: int, what: str) -> None:
        self.split, self.count, self.shape = split, count, tuple(shape)
        self.device, self.workers, self.seed, self.what = device, workers, seed, what
        self.iterable = is_iterable(split)
        self.epoch = 1
        self._pending: deque[np.ndarray] = deque()
        self._it: Iterator[Any] | None = None
        self._cursor = 0  # iterable: images of this rank's epoch read so far
        self._buffer: list[torch.Tensor] = []
        self._plan: list[list[int]] = []  # the loader's batches (dataset indices), in order
        self._loader: Any = None

    def __len__(self) -> int:
        return self.count

    def _make_loader(self) -> Any:
        from torch.utils.data import DataLoader

        extra: dict[str, Any] = {}
        if self.workers:
            extra = {"prefetch_factor": 4, "worker_init_fn": _seed_worker(self.seed),
                     "persistent_workers": not self.iterable}
        dataset: Any = _GuardedIter(self.split) if self.iterable else _Guarded(self.split.dataset)
        extra.update({"batch_size": ITER_BATCH} if self.iterable else {"batch_sampler": self._plan})
        gen = torch.Generator().manual_seed(self.seed)  # leaves the global RNG alone
        return DataLoader(dataset, collate_fn=_collate, num_workers=self.workers,
                          pin_memory=self.device.type == "cuda", generator=gen, **extra)

    def plan(self, chunks: list[np.ndarray]) -> None:
        """Read these batches (positions in this view) next, in this order."""
        self._pending = deque(chunks)
        if self.iterable:
            return
        self._plan[:] = [[self.split.position(int(i)) for i in c] for c in chunks]
        self._loader = self._loader or self._make_loader()
        self._it = iter(self._loader)

    def _next(self) -> torch.Tensor:
        assert self._it is not None
        try:
            batch = next(self._it)
        except StopIteration:
            raise DataError(f"{self.what} ended after {self._cursor:,} images, but it "
                            f"declares {self.count:,} for this process",
                            "make __len__ say how many images the split yields") from None
        except (AezooError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a worker killed (out of memory?), or a broken pipe
            raise DataError(f"a DataLoader worker reading {self.what} failed "
                            f"({summary(exc, limit=200)})", "lower --workers or --batch-size if "
                            "memory ran out; --workers 0 reads in this process") from None
        if isinstance(batch, _Failure):
            raise DataError(batch.problem, batch.fix)
        if tuple(batch.shape[1:]) != self.shape or batch.dtype != torch.uint8:
            raise DataError(f"{self.what} gave a {batch.dtype} batch of "
                            f"{format_shape(tuple(batch.shape[1:]))} images, not uint8 "
                            f"{format_shape(self.shape)}", "return uint8 (C, H, W) tensors "
                            "of the declared shape (honour ctx.image_size / ctx.channels)")
        return batch

    def _iterable_take(self, start: int, n: int) -> torch.Tensor:
        if self._it is None or start != self._cursor:  # (re)start this rank's epoch there
            # Workers take turns, a batch each: the split skips whole turns, we drop the rest.
            turn = max(self.workers, 1) * ITER_BATCH
            aligned = start - start % turn
            self.split.set_epoch(self.epoch, self.seed)
            self.split.skip(aligned)
            self._loader = self._make_loader()
            self._it, self._cursor, self._buffer = iter(self._loader), aligned, []
            if start > aligned:
                self._iterable_take(aligned, start - aligned)
        while sum(map(len, self._buffer)) < n:
            self._buffer.append(self._next())
        joined = torch.cat(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        out, rest = joined[:n], joined[n:]
        self._buffer = [rest] if len(rest) else []
        self._cursor = start + n
        return out

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        if isinstance(index, slice):
            start, stop, _ = index.indices(self.count)
            rows = np.arange(start, stop)
        else:
            rows = index.cpu().numpy()
        if self.iterable:
            batch = self._iterable_take(int(rows[0]) if len(rows) else 0, len(rows))
        elif self._pending and np.array_equal(self._pending[0], rows):
            self._pending.popleft()
            batch = self._next()
        elif len(rows) <= SMALL:  # e.g. the reconstruction grid: not worth the workers
            items = [_Guarded(self.split.dataset)[self.split.position(int(i))] for i in rows]
            batch = _collate(items)
            if isinstance(batch, _Failure):
                raise DataError(batch.problem, batch.fix)
        else:  # a sequential pass (validation): plan it all from here
            size = len(rows)
            starts = range(int(rows[0]), self.count, size)
            self.plan([np.arange(s, min(s + size, self.count)) for s in starts])
            return self[index]
        if self.device.type != "cpu":
            batch = batch.to(self.device, non_blocking=True)
        return batch

    def read_all(self) -> np.ndarray:
        """Every image of the view (reader memory): read once through the workers."""
        out = np.empty((self.count, *self.shape), dtype=np.uint8)
        step = 1024
        for s in range(0, self.count, step):
            out[s:s + step] = self[slice(s, s + step)].cpu().numpy()
        return out
