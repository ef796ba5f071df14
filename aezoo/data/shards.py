"""``wds:PATTERN``: WebDataset tar shards as an iterable dataset (``aezoo.data.shardio``).

Each sample's image is the first of its ``png``/``jpg``/... fields; its label, where
present, the integer text of ``cls`` (or ``cls.txt``, ``label``, ``class``). Samples are
counted once when the source is opened (headers only for local tars; one pass for URLs).

Order: each epoch permutes the shards (``seed``, ``epoch``); rank ``r`` of ``w`` takes
every ``w``-th shard of that order and DataLoader worker ``k`` of ``n`` every ``n``-th of
those; a shuffle buffer of ``buffer`` samples mixes within a worker's stream. All of it
is seeded, so an epoch's order is a function of (seed, epoch, rank, world, workers): what
exact resume needs. Every rank yields the same number of samples per epoch (the smallest
rank's; DDP steps must match), so use at least ranks x workers shards of similar size.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from aezoo.data import images as decoding
from aezoo.data import shardio
from aezoo.data.source import LoadContext
from aezoo.data.stream_folder import BadImages
from aezoo.data.streamed import StreamedSplits
from aezoo.errors import DataError

LABEL_KEYS = ("cls", "cls.txt", "label", "class", "target")
BUFFER = 1000
LOADER_BATCH = 256  # aezoo.training.batches reads iterable splits 256 at a time
COUNT_THREADS = 8


class ShardStream(IterableDataset[torch.Tensor]):
    """Iterable: uint8 ``(C, H, W)`` images of this rank's share of the shards."""

    def __init__(self, shards: list[str], counts: list[int], size: tuple[int, int],
                 channels: int, *, shuffle: bool = True, buffer: int = BUFFER,
                 bad: BadImages | None = None, with_labels: bool = False,
                 resize: bool = True, every: tuple[int, bool] | None = None) -> None:
        self.shards, self.counts = shards, counts  # counts: samples this stream takes
        self.size, self.channels, self.resize = size, channels, resize
        self.every = every  # (k, val): samples i of a shard with (i % k == 0) == val
        self.shuffle, self.buffer, self.bad = shuffle, buffer, bad
        self.with_labels = with_labels  # yield (image, label) pairs (encode, eval)
        self.epoch, self.seed, self.rank, self.world = 0, 0, 0, 1
        self._skip = 0
        # The DataLoader's batch size: with workers, skip() maps images to whole batches.
        self.batch_size = LOADER_BATCH

    # -- the streamed-split contract -------------------------------------------------
    def set_epoch(self, epoch: int, seed: int) -> None:
        if (epoch, seed) != (self.epoch, self.seed):
            self._skip = 0  # a skip belongs to the epoch it was asked in
        self.epoch, self.seed = epoch, seed

    def set_shard(self, rank: int, world_size: int) -> None:
        self.rank, self.world = rank, world_size

    def skip(self, n: int) -> None:
        """Iterations of the current epoch start after its first ``n`` samples (until
        set_epoch moves on)."""
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

    def _plan(self, workers: int) -> list[list[tuple[int, int]]]:
        """Per worker, its (shard, samples to take) in reading order."""
        mine = self._order()[self.rank::self.world]
        left = self._quota()
        takes = []
        for shard in mine:
            take = min(self.counts[shard], left)
            takes.append((shard, take))
            left -= take
        return [takes[k::workers] for k in range(workers)]

    def _skips(self, plan: list[list[tuple[int, int]]]) -> tuple[list[int], int]:
        """How many of each worker's samples the first ``skip`` of the epoch were, and
        whose turn is next.

        The DataLoader takes whole batches from the workers in turn, passing over those
        that ran dry; with no workers the stream is one worker's."""
        totals = [sum(t for _, t in p) for p in plan]
        if len(plan) == 1:
            return [min(self._skip, totals[0])], 0
        done = [0] * len(plan)
        left, k = self._skip, 0
        while left > 0 and any(d < t for d, t in zip(done, totals, strict=True)):
            if done[k] < totals[k]:
                batch = min(self.batch_size, totals[k] - done[k], left)
                done[k] += batch
                left -= batch
            k = (k + 1) % len(plan)
        return done, k

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        plan = self._plan(workers)
        skips, turn = self._skips(plan)
        # A resumed loader asks worker 0 first: it plays the part whose turn it was.
        worker = (worker + turn) % workers
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 7])
        stream = self._decoded(plan[worker])
        stream = _shuffled(stream, self.buffer, rng) if self.shuffle else stream
        for i, item in enumerate(stream):
            if i >= skips[worker]:
                yield self._convert(item)

    def _convert(self, item: tuple[np.ndarray, int]) -> torch.Tensor:
        image = torch.from_numpy(item[0])
        if self.with_labels:
            return image, item[1]  # type: ignore[return-value]
        return image

    def _decoded(self, takes: list[tuple[int, int]]) -> Iterator[tuple[np.ndarray, int]]:
        for shard, take in takes:
            name = self.shards[shard]
            if take == 0:
                continue
            got, index = 0, -1
            with shardio.open_shard(name) as stream:
                for key, fields in shardio.samples(name, stream):
                    field = next((f for f in decoding.IMAGE_KEYS if f in fields), None)
                    if field is None:
                        continue  # a sample without an image is not counted either
                    index += 1
                    if self.every and (index % self.every[0] == 0) != self.every[1]:
                        continue
                    where = f"{shardio.display(name)} member {key}.{field}"
                    try:
                        array = decoding.decode(fields[field], where,
                                                self.size if self.resize else None,
                                                self.channels)
                        if not self.resize:
                            decoding.check_size(array, self.size, where)
                    except DataError:
                        if self.bad is None:
                            raise
                        self.bad.add(where)
                        continue
                    yield np.ascontiguousarray(array), label_of(fields, where)
                    got += 1
                    if got == take:
                        break


def _shuffled(items: Iterator[tuple[np.ndarray, int]], size: int,
              rng: np.random.Generator) -> Iterator[tuple[np.ndarray, int]]:
    """A seeded shuffle buffer: each item leaves from a random slot of ``size``."""
    pool: list[tuple[np.ndarray, int]] = []
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


def label_of(fields: dict[str, bytes], where: str) -> int:
    """The sample's integer label, -1 when it has none."""
    for key in LABEL_KEYS:
        if key in fields:
            text = fields[key].decode("utf-8", "replace").strip()
            try:
                return int(text)
            except ValueError:
                raise DataError(f"shard {where}: label '{key}' is {text[:40]!r}, not an "
                                "integer", "write class indices into .cls fields") from None
    return -1


@dataclass(frozen=True)
class ShardSource:
    """A shard set, counted, with the shape its first image fixes."""

    name: str
    shards: list[str]
    counts: list[int]
    shape: tuple[int, int, int]
    labelled: bool


def survey(name: str, pattern: str, image_size: tuple[int, int] | None,
           channels: int | None) -> ShardSource:
    """Expand ``pattern``, count each shard's samples, read the first sample's header."""
    shards = shardio.expand(pattern)
    with ThreadPoolExecutor(max_workers=min(COUNT_THREADS, len(shards))) as pool:
        counts = list(pool.map(lambda s: shardio.count(s, decoding.IMAGE_KEYS), shards))
    if sum(counts) == 0:
        raise DataError(f"the shards {pattern} hold no images "
                        f"({', '.join(decoding.IMAGE_KEYS)} fields)",
                        "write samples such as 0001.png + 0001.cls into the tar files")
    first = next(i for i, c in enumerate(counts) if c)
    with shardio.open_shard(shards[first]) as stream:
        for key, fields in shardio.samples(shards[first], stream):
            field = next((f for f in decoding.IMAGE_KEYS if f in fields), None)
            if field is not None:
                where = f"{shardio.display(shards[first])} member {key}.{field}"
                header = decoding.header(fields[field], where)
                labelled = label_of(fields, where) >= 0
                break
    c = channels or (1 if header.grey else 3)
    return ShardSource(name, shards, counts, (c, *(image_size or header.size)), labelled)


@dataclass(frozen=True)
class ShardSplits:
    train: ShardStream
    val: ShardStream
    source: ShardSource


def split(source: ShardSource, *, val_fraction: float, split_seed: int,
          image_size: tuple[int, int] | None, skip_bad: bool,
          val: ShardSource | None = None) -> ShardSplits:
    """Train and validation streams: ``val``'s shards if given; else a seeded share of the
    shards (at least one); a single shard gives every k-th sample (k ~ 1/val_fraction)."""
    bad = BadImages() if skip_bad else None
    c, h, w = source.shape

    def stream(shards: list[str], counts: list[int], shuffle: bool,
               every: tuple[int, bool] | None = None) -> ShardStream:
        return ShardStream(shards, counts, (h, w), c, shuffle=shuffle, bad=bad,
                           resize=image_size is not None, every=every)

    if val is not None:
        train = stream(source.shards, source.counts, True)
        held = stream(val.shards, val.counts, False)
    elif len(source.shards) >= 2:
        order = np.random.default_rng(split_seed).permutation(len(source.shards))
        n_val = min(max(int(round(len(order) * val_fraction)), 1), len(order) - 1)
        vi, ti = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
        train = stream([source.shards[i] for i in ti], [source.counts[i] for i in ti], True)
        held = stream([source.shards[i] for i in vi], [source.counts[i] for i in vi], False)
    else:
        n = source.counts[0]
        if n < 2:
            raise DataError(f"dataset {source.name} has {n} image; training needs at least 2 "
                            "(one for validation)", "add images")
        k = max(2, int(round(1 / val_fraction)))
        n_val = (n + k - 1) // k
        train = stream(source.shards, [n - n_val], True, (k, False))
        held = stream(source.shards, [n_val], False, (k, True))
    return ShardSplits(train, held, source)


def load_shards(ctx: LoadContext) -> StreamedSplits:
    """``wds:PATTERN``: the shards, counted; validation is a seeded share of them."""
    pattern = ctx.argument or ""
    source = survey(f"wds:{pattern}", pattern, ctx.image_size, ctx.channels)
    splits = split(source, val_fraction=getattr(ctx, "val_fraction", 0.1),
                   split_seed=getattr(ctx, "split_seed", 0), image_size=ctx.image_size,
                   skip_bad=bool(getattr(ctx, "skip_bad", False)))
    return StreamedSplits(shape=source.shape, train=splits.train, val=splits.val)
