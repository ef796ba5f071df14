"""How the trainer reads its images: device-resident, memory-mapped, or streamed.

The loop asks a *view* for batches: ``len(view)`` images, ``view[index]`` a uint8
``(n, C, H, W)`` tensor on the device for a slice or a 1-D index tensor. Three kinds:

- ``memory``: the split as one uint8 tensor on the device (the fast path, where it fits);
- ``mapped``: a memory-mapped array (``npy:``, packed stores); each batch is read from
  the map in file order, then put back in the batch's order, and copied to the device
  (pinned on CUDA). Resident memory stays that of a few batches, whatever the file size;
- ``stream``: a ``torch.utils.data.DataLoader`` with worker processes over a streamed
  split (``aezoo.data.streamed``), fed the exact batches the loop will ask for.

The order of the images is the trainer's seeded permutation in every kind, so the three
train the same model bit for bit, and a resumed run continues the same sequence.
:func:`choose` picks the kind (``train.reader``) and says why in one line.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aezoo import distributed
from aezoo.data.base import ArrayDataset
from aezoo.data.mapped import MappedArray, is_mapped
from aezoo.data.streamed import StreamedDataset, is_iterable
from aezoo.errors import AezooError, DataError, summary
from aezoo.protocols import format_shape
from aezoo.specs import TrainSpec

SMALL = 64  # a request this small that the plan did not foresee is read in this process
ITER_BATCH = 64  # images a worker of an iterable split hands over at a time


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def available_memory(device: torch.device) -> int:
    """Bytes the host (and the device, where it is not the host) can spare now."""
    host = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if not host:
        try:
            host = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            host = 8 * 10**9
    if device.type == "cuda":
        return min(host, int(torch.cuda.mem_get_info(device)[0]))
    return host


def default_workers() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


# -- memory-mapped ---------------------------------------------------------------------

class MappedImages:
    """Batches gathered from a :class:`MappedArray` and copied to ``device``."""

    def __init__(self, array: MappedArray, device: torch.device) -> None:
        self.array = array
        self.device = device
        self.pin = device.type == "cuda"

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = index if isinstance(index, slice) else index.cpu().numpy()
        batch = torch.from_numpy(self.array.read(rows))
        if self.device.type == "cpu":
            return batch
        if self.pin:
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=self.pin)


# -- streamed ----------------------------------------------------------------------------

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


class _Plan(torch.utils.data.Sampler):  # type: ignore[type-arg]
    """The batches (lists of dataset indices) the next iteration reads, in order."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


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
        self._plan = _Plan()
        self._loader: Any = None

    def __len__(self) -> int:
        return self.count

    def _make_loader(self) -> Any:
        from torch.utils.data import DataLoader

        extra: dict[str, Any] = {}
        if self.workers:
            extra = {"prefetch_factor": 4, "worker_init_fn": _seed_worker(self.seed),
                     "persistent_workers": not self.iterable}
        gen = torch.Generator().manual_seed(self.seed)  # leaves the global RNG alone
        if self.iterable:
            return DataLoader(_GuardedIter(self.split), batch_size=ITER_BATCH, collate_fn=_collate,
                              num_workers=self.workers, pin_memory=self.device.type == "cuda",
                              generator=gen, **extra)
        return DataLoader(_Guarded(self.split.dataset), batch_sampler=self._plan,
                          collate_fn=_collate, num_workers=self.workers,
                          pin_memory=self.device.type == "cuda", generator=gen, **extra)

    def plan(self, chunks: list[np.ndarray]) -> None:
        """Read these batches (positions in this view) next, in this order."""
        self._pending = deque(chunks)
        if self.iterable:
            return
        self._plan.batches = [[self.split.position(int(i)) for i in c] for c in chunks]
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
        have = sum(len(b) for b in self._buffer)
        while have < n:
            batch = self._next()
            self._buffer.append(batch)
            have += len(batch)
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


# -- the choice ----------------------------------------------------------------------------

@dataclass
class Reader:
    """The views the trainer reads, and why this kind was chosen."""

    kind: str  # memory | mapped | stream
    reason: str
    train: Any
    val: Any

    def start_epoch(self, perm: torch.Tensor, epoch: int, step: int, step_images: int,
                    batch_size: int) -> torch.Tensor:
        """The epoch's order as the loop will index it; streamed views plan their reads."""
        if self.kind == "mapped":
            return perm.cpu()
        if self.kind != "stream":
            return perm
        view: StreamedImages = self.train
        view.epoch = epoch
        if view.iterable:  # the split shuffles itself (set_epoch): read it in order
            return torch.arange(len(view))
        order = perm.cpu()
        chunks = [c.numpy() for i in range(step, -(-len(view) // step_images))
                  for c in order[i * step_images:(i + 1) * step_images].split(batch_size)]
        view.plan(chunks)
        return order

    def state(self, trainer: Any) -> dict[str, Any]:
        """What resuming this reader's order needs besides the trainer's generator
        (``rng.generator``: the epoch's permutation) and position (``epoch``, ``step``):
        the image count it permutes, and the seed of the workers (fixed per worker)."""
        return {"reader": self.kind, "images": len(self.train),
                "position": trainer.step * trainer.step_images,
                "worker_seed": trainer.spec.seed if self.kind == "stream" else None}

    def describe(self) -> str:
        return f"reading data: {self.kind} ({self.reason})"


def _shard_rows(n: int, dist: distributed.Dist, equal: bool) -> np.ndarray | None:
    """This rank's rows; training shards are cut to equal length so ranks stay in step."""
    if not dist.enabled:
        return None
    rows = np.arange(dist.rank, n, dist.world_size)
    return rows[: n // dist.world_size] if equal else rows


def choose(data: ArrayDataset | StreamedDataset, spec: TrainSpec, device: torch.device,
           dist: distributed.Dist) -> Reader:
    """The reader for ``data`` on ``device``: ``spec.reader``, or the automatic choice."""
    forced = spec.reader != "auto"
    budget = int(spec.memory_budget * 1e9) if spec.memory_budget else \
        available_memory(device) // 2
    if isinstance(data, StreamedDataset):
        return _streamed(data, spec, device, dist, budget)
    train, val = _array_shard(data.train, dist, True), _array_shard(data.val, dist, False)
    size = train.nbytes + val.nbytes
    mapped = is_mapped(data.train)
    kind = spec.reader if forced else (
        "mapped" if mapped and size > budget else "memory")
    why = "asked for by train.reader" if forced else (
        f"{_gb(size)}, over the memory budget of {_gb(budget)}" if kind == "mapped" else
        f"{_gb(size)} fit the memory budget of {_gb(budget)}" if mapped else
        f"{_gb(size)}, decoded into memory")
    if kind == "memory":
        return Reader(kind, why, _to_device(train, device), _to_device(val, device))
    if kind == "stream":
        raise DataError(f"dataset {data.name} is an array, not a streamed source",
                        "use --reader memory or mapped (stream is for streamed sources)")
    return Reader(kind, why, MappedImages(_as_mapped(train), device),
                  MappedImages(_as_mapped(val), device))


def _array_shard(array: Any, dist: distributed.Dist, equal: bool) -> Any:
    rows = _shard_rows(len(array), dist, equal)
    return array if rows is None else array[rows]


def _as_mapped(array: Any) -> MappedArray:
    return array if isinstance(array, MappedArray) else MappedArray(array)


def _to_device(array: Any, device: torch.device) -> torch.Tensor:
    host = array.read() if isinstance(array, MappedArray) else np.ascontiguousarray(array)
    return torch.from_numpy(host).to(device)


def _streamed(data: StreamedDataset, spec: TrainSpec, device: torch.device,
              dist: distributed.Dist, budget: int) -> Reader:
    workers = default_workers() if spec.workers is None else spec.workers
    views = []
    for part, split in (("train", data.train), ("val", data.val)):
        equal = part == "train"
        what = f"{data.name} {part} split"
        if is_iterable(split):
            if dist.enabled:
                split.set_shard(dist.rank, dist.world_size)
            total = data.train_count() if part == "train" else len(split)
            count = total // dist.world_size if equal else -(-total // dist.world_size)
        else:
            rows = _shard_rows(len(split), dist, equal)
            split = split if rows is None else split.take(rows)
            count = len(split)
        views.append(StreamedImages(split, count, data.shape, device, workers, spec.seed,
                                    what))
    train, val = views
    size = (len(train) + len(val)) * int(np.prod(data.shape))
    if spec.reader in ("memory", "mapped"):
        if spec.reader == "mapped":
            raise DataError(f"dataset {data.name} streams; it has no array to map",
                            f"pack it first (aezoo data pack {data.name} --out DIR), or use "
                            "--reader stream")
        return Reader("memory", f"asked for by train.reader; {_gb(size)} decoded once",
                      _to_device(train.read_all(), device), _to_device(val.read_all(), device))
    how = f"{workers} DataLoader worker{'s' * (workers != 1)}" if workers else "this process"
    return Reader("stream", f"{data.name} is decoded on the fly by {how}", train, val)

