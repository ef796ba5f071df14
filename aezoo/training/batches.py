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
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aezoo import distributed
from aezoo.data.base import ArrayDataset
from aezoo.data.mapped import MappedArray, is_mapped
from aezoo.data.streamed import StreamedDataset, is_iterable
from aezoo.errors import DataError
from aezoo.specs import TrainSpec
from aezoo.training.streaming import StreamedImages


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
    """Batches gathered from a :class:`MappedArray` and copied to ``device``; the epoch's
    batches are read one ahead by a thread (pread and numpy release the GIL)."""

    AHEAD = 2

    def __init__(self, array: MappedArray, device: torch.device) -> None:
        self.array = array
        self.device = device
        self.pin = device.type == "cuda"
        self._pool: Any = None
        self._plan: deque[np.ndarray] = deque()
        self._ahead: deque[tuple[np.ndarray, Any]] = deque()

    def __len__(self) -> int:
        return len(self.array)

    def plan(self, chunks: list[np.ndarray]) -> None:
        """The batches the loop will ask for next, in order: read them ahead."""
        from concurrent.futures import ThreadPoolExecutor

        self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="aezoo-read")
        self._plan, self._ahead = deque(chunks), deque()
        self._fill()

    def _fill(self) -> None:
        while self._plan and len(self._ahead) < self.AHEAD:
            rows = self._plan.popleft()
            self._ahead.append((rows, self._pool.submit(self.array.read, rows)))

    def __getitem__(self, index: slice | torch.Tensor) -> torch.Tensor:
        rows = index if isinstance(index, slice) else index.cpu().numpy()
        if self._ahead and not isinstance(rows, slice) and np.array_equal(self._ahead[0][0], rows):
            host = self._ahead.popleft()[1].result()
            self._fill()
        else:
            host = self.array.read(rows)
        batch = torch.from_numpy(host)
        if self.device.type == "cpu":
            return batch
        if self.pin:
            batch = batch.pin_memory()
        return batch.to(self.device, non_blocking=self.pin)


def _chunks(order: torch.Tensor, step: int, count: int, step_images: int,
            batch_size: int) -> list[np.ndarray]:
    """The loop's batches from optimiser step ``step`` on: what ``forward.accumulate`` indexes."""
    return [c.numpy() for i in range(step, -(-count // step_images))
            for c in order[i * step_images:(i + 1) * step_images].split(batch_size)]


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
        """The epoch's order as the loop will index it; mapped and streamed views plan
        their reads."""
        if self.kind == "memory":
            return perm
        if self.kind == "stream":
            self.train.epoch = epoch
            if self.train.iterable:  # the split shuffles itself (set_epoch): read it in order
                return torch.arange(len(self.train))
        order = perm.cpu()
        self.train.plan(_chunks(order, step, len(self.train), step_images, batch_size))
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
    if isinstance(data, StreamedDataset):
        return _streamed(data, spec, device, dist)
    forced = spec.reader != "auto"
    budget = int(spec.memory_budget * 1e9) if spec.memory_budget else available_memory(device) // 2
    train, val = _array_shard(data.train, dist, True), _array_shard(data.val, dist, False)
    size = train.nbytes + val.nbytes
    mapped = is_mapped(data.train)
    kind = spec.reader if forced else ("mapped" if mapped and size > budget else "memory")
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
              dist: distributed.Dist) -> Reader:
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
        views.append(StreamedImages(split, count, data.shape, device, workers, spec.seed, what))
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

