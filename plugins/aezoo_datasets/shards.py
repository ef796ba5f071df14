"""``wds:PATTERN``: WebDataset tar shards as an iterable dataset (read by ``shardio``).

Each sample's image is the first of its ``png``/``jpg``/... fields. Samples are counted
once when the source is opened (headers only for local tars; one pass for URLs), or
taken from a shard index (``wds:INDEX.json``), which spares reading the shards.

Order: each epoch permutes the shards (``seed``, ``epoch``); rank ``r`` of ``w`` takes
every ``w``-th shard of that order. Each DataLoader worker takes a contiguous, balanced
part of its rank's samples (reading only those shards, and the start of the one it
enters mid-way) and mixes them in its own seeded shuffle buffer of ``buffer`` samples:
the order is a function of (seed, epoch, rank, world, workers), and a skip of whole
turns of the workers resumes exactly. Every rank yields as many samples per epoch as the
smallest rank's share (DDP steps must match): use at least as many shards as ranks, of
similar size.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from aezoo.data import images as decoding
from aezoo.data.source import LoadContext
from aezoo.data.stream_folder import BadImages
from aezoo.data.streamed import StreamedSplits
from aezoo.errors import DataError
from aezoo.fileio import file_identity
from aezoo_datasets import shardio

BUFFER = 1000
COUNT_THREADS = 8
T = TypeVar("T")


class ShardStream(IterableDataset[torch.Tensor]):
    """Iterable: uint8 ``(C, H, W)`` images of this rank's share of the shards."""

    def __init__(self, shards: list[str], counts: list[int], size: tuple[int, int],
                 channels: int, *, shuffle: bool = True, buffer: int = BUFFER,
                 bad: BadImages | None = None, resize: bool = True,
                 every: tuple[int, bool] | None = None) -> None:
        self.shards, self.counts = shards, counts  # counts: samples this stream takes
        self.size, self.channels, self.resize = size, channels, resize
        self.every = every  # (k, val): samples i of a shard with (i % k == 0) == val
        self.shuffle, self.buffer, self.bad = shuffle, buffer, bad
        self.epoch, self.seed, self.rank, self.world = 0, 0, 0, 1
        self._skip = 0

    def fingerprint(self) -> list[object]:
        """The shards, their sizes and times where local (``aezoo data pack`` resumes only
        the same ones), and which samples this stream takes."""
        return [[s, *file_identity(s.removeprefix("file://"))] for s in self.shards] + [
            self.counts, list(self.every or ())]

    # -- the streamed-split contract -------------------------------------------------
    def set_epoch(self, epoch: int, seed: int) -> None:
        if (epoch, seed) != (self.epoch, self.seed):
            self._skip = 0  # a skip belongs to the epoch it was asked in
        self.epoch, self.seed = epoch, seed

    def set_shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world = rank, world_size

    def skip(self, n: int) -> None:
        """Iterations of the current epoch start after its first ``n`` samples (until
        set_epoch moves on): each worker leaves out ``n // workers`` of its own."""
        self._skip = n

    def __len__(self) -> int:
        """Images per epoch, all ranks together (each rank yields ``len // world``)."""
        return self._quota() * self.world

    # -- order ---------------------------------------------------------------------
    def _order(self) -> list[int]:
        order = np.arange(len(self.shards))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        return [int(i) for i in order]

    def _quota(self) -> int:
        """Samples per rank this epoch: the smallest rank's total (DDP steps must match)."""
        order = self._order()
        totals = [sum(self.counts[i] for i in order[r::self.world]) for r in range(self.world)]
        return min(totals)

    def _takes(self) -> list[tuple[int, int]]:
        """This rank's (shard, samples to take) in reading order."""
        left, takes = self._quota(), []
        for shard in self._order()[self.rank::self.world]:
            take = min(self.counts[shard], left)
            takes.append((shard, take))
            left -= take
        return takes

    def _share(self, worker: int, workers: int) -> list[tuple[int, int, int]]:
        """This worker's (shard, first, stop) sample ranges: its contiguous, balanced part
        of the rank's takes (the first ``quota % workers`` workers take one more), so
        every worker yields a full batch in each turn but the last."""
        quota = self._quota()
        lo = worker * (quota // workers) + min(worker, quota % workers)
        hi = lo + quota // workers + (worker < quota % workers)
        ranges, at = [], 0
        for shard, take in self._takes():
            first, stop = max(lo - at, 0), min(hi - at, take)
            if first < stop:
                ranges.append((shard, first, stop))
            at += take
        return ranges

    def __iter__(self) -> Iterator[torch.Tensor]:
        """This rank's stream from ``skip``: each DataLoader worker reads only its own
        part of the rank's shards (``_share``) through its own shuffle buffer and leaves
        out the first ``skip // workers`` images. The loader takes a batch from each
        worker in turn, so a skip of whole turns (what the core asks) resumes exactly."""
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        key = [self.seed, self.epoch, self.rank, 7] + ([workers, worker] if workers > 1 else [])
        stream = self._samples(self._share(worker, workers))
        if self.shuffle:
            stream = _shuffled(stream, self.buffer, np.random.default_rng(key))
        owed, last = 0, None  # skip_bad: slots of unreadable images, filled by the next
        for where, data in itertools.islice(stream, self._skip // workers, None):
            try:
                image = self._decode(where, data)
            except DataError:
                if self.bad is None:
                    raise
                self.bad.add(where)
                owed += 1
                continue
            last = torch.from_numpy(image)
            yield from itertools.repeat(last, owed + 1)
            owed = 0
        if owed and last is None:
            raise DataError(f"no image of {where} onwards is readable", "check the shards")
        yield from itertools.repeat(last, owed)

    def _decode(self, where: str, data: bytes) -> np.ndarray:
        array = decoding.decode(data, where, self.size if self.resize else None,
                                self.channels)
        if not self.resize:
            decoding.check_size(array, self.size, where)
        return array

    def _samples(self, ranges: list[tuple[int, int, int]]) -> Iterator[tuple[str, bytes]]:
        """(where, encoded image) of each sample in the ranges, in order; nothing decoded."""
        for shard, first, stop in ranges:
            name, got = self.shards[shard], 0
            # closing(): the shard's file or HTTP stream is shut when its range is read,
            # not when the generator is next collected
            with contextlib.closing(_images(name)) as images:
                taken: Iterator[tuple[str, bytes]] = images
                if self.every:
                    k, val = self.every
                    taken = (x for i, x in enumerate(images) if (i % k == 0) == val)
                for got, item in enumerate(itertools.islice(taken, stop), 1):
                    if got > first:
                        yield item
            if got < stop:  # changed since it was counted, or an index that overstates
                raise DataError(f"shard {shardio.display(name)} holds {got} images here, "
                                f"fewer than the {stop} counted", "check the shard index's "
                                "nsamples, or restart the run if the shards changed")


def _images(name: str) -> Generator[tuple[str, bytes], None, None]:
    """(where, encoded image) of each sample of the shard that has one (the first of its
    image fields), in tar order; samples without an image are not counted either."""
    with shardio.open_shard(name) as stream:
        for key, fields in shardio.samples(name, stream):
            field = next((f for f in decoding.IMAGE_KEYS if f in fields), None)
            if field is not None:
                yield f"{shardio.display(name)} member {key}.{field}", fields[field]


def _shuffled(items: Iterator[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """A seeded shuffle buffer: each item leaves from a random slot of ``size``."""
    pool: list[T] = []
    for item in items:
        if len(pool) < size:
            pool.append(item)
            continue
        j = int(rng.integers(size))
        pool[j], item = item, pool[j]
        yield item
    order = rng.permutation(len(pool))
    for j in order:
        yield pool[int(j)]


def load_shards(ctx: LoadContext) -> StreamedSplits:
    """``wds:PATTERN``: the shards, counted (or listed with their counts by an index), the
    shape from the first image's header. Validation is a seeded share of the shards (at
    least one); a single shard gives every k-th sample (k ~ 1/val_fraction) instead."""
    pattern = ctx.argument or ""
    if pattern.endswith(".json"):  # an index: the counts without reading the shards
        shards, counts = map(list, zip(*shardio.read_index(pattern), strict=True))
    else:
        shards = shardio.expand(pattern)
        with ThreadPoolExecutor(max_workers=min(COUNT_THREADS, len(shards))) as pool:
            counts = list(pool.map(lambda s: shardio.count(s, decoding.IMAGE_KEYS), shards))
    if sum(counts) == 0:
        raise DataError(f"the shards {pattern} hold no images "
                        f"({', '.join(decoding.IMAGE_KEYS)} fields)",
                        "write samples such as 0001.png + 0001.cls into the tar files")
    where, data = next(_images(next(s for s, n in zip(shards, counts, strict=True) if n)))
    header = decoding.header(data, where)
    c, (h, w) = ctx.channels or (1 if header.grey else 3), ctx.image_size or header.size
    bad = BadImages() if ctx.skip_bad else None

    def stream(picked: list[int], shuffle: bool, take: list[int] | None = None,
               every: tuple[int, bool] | None = None) -> ShardStream:
        return ShardStream([shards[i] for i in picked], take or [counts[i] for i in picked],
                           (h, w), c, shuffle=shuffle, bad=bad,
                           resize=ctx.image_size is not None, every=every)

    if len(shards) >= 2:
        order = np.random.default_rng(ctx.split_seed).permutation(len(shards))
        n_val = min(max(int(round(len(order) * ctx.val_fraction)), 1), len(order) - 1)
        train = stream(sorted(order[n_val:].tolist()), True)
        held = stream(sorted(order[:n_val].tolist()), False)
    else:
        n = counts[0]
        if n < 2:
            raise DataError(f"dataset wds:{pattern} has {n} image; training needs at least 2 "
                            "(one for validation)", "add images")
        k = max(2, int(round(1 / ctx.val_fraction)))
        n_val = (n + k - 1) // k
        train = stream([0], True, [n - n_val], (k, False))
        held = stream([0], False, [n_val], (k, True))
    return StreamedSplits(shape=(c, h, w), train=train, val=held)
