"""Bytes a `wds:` run reads: opening (counting) and one training epoch with DataLoader workers.

usage: python benchmarks/shard_bytes.py [--shards 8] [--per-shard 256] [--workers 2]

Writes tar shards of 64x64 RGB PNGs, serves them from 127.0.0.1, and reports the bytes
the HTTP server sent and the bytes read from local shard files (every worker process
counted), for opening the dataset and for one epoch of its train split, against the
bytes the train shards hold; opening over HTTP with and without a shard index (index.json
with each shard's count, which spares the counting downloads).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import json
import multiprocessing
import sys
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

SENT = multiprocessing.Value("q", 0)  # HTTP bytes sent
READ = multiprocessing.Value("q", 0)  # shard bytes the reader read, all processes


def write_shards(root: Path, shards: int, per_shard: int) -> None:
    rng = np.random.default_rng(0)
    for s in range(shards):
        with tarfile.open(root / f"part-{s:03d}.tar", "w") as tar:
            for i in range(per_shard):
                out = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                    out, format="png")
                info = tarfile.TarInfo(f"{s:03d}{i:05d}.png")
                info.size = out.tell()
                tar.addfile(info, io.BytesIO(out.getvalue()))


class Counting(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        while chunk := source.read(1 << 16):
            try:
                outputfile.write(chunk)
            except OSError:  # the reader hung up (it had what it wanted)
                return
            with SENT.get_lock():
                SENT.value += len(chunk)


def count_local_reads() -> None:
    """Wrap shard files so every read (in any forked worker) is tallied in READ."""
    from aezoo_datasets import shardio

    opened = shardio.open_shard

    class Tally:
        def __init__(self, stream: Any) -> None:
            self.stream = stream

        def read(self, size: int = -1) -> bytes:
            data = self.stream.read(size)
            with READ.get_lock():
                READ.value += len(data)
            return data

        def __getattr__(self, name: str) -> Any:
            return getattr(self.stream, name)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            self.stream.close()

    def open_shard(name: str) -> Any:
        return Tally(opened(name))

    shardio.open_shard = open_shard  # type: ignore[assignment]


def measure(name: str, workers: int) -> dict[str, Any]:
    from aezoo.data import load_dataset
    from aezoo.specs import DataSpec
    from aezoo.training.streaming import ITER_BATCH, _GuardedIter

    SENT.value = READ.value = 0
    data: Any = load_dataset(DataSpec(name=name))
    opening = (READ.value, SENT.value)
    SENT.value = READ.value = 0
    split = data.train
    split.set_epoch(1, 0)
    loader = torch.utils.data.DataLoader(_GuardedIter(split), batch_size=ITER_BATCH,
                                         num_workers=workers)
    images = sum(len(b) for b in loader)
    return {"open": opening, "epoch": (READ.value, SENT.value), "images": images,
            "train_bytes": sum(Path(s.removeprefix("file://")).stat().st_size
                               for s in split.shards if "://" not in s)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--per-shard", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    count_local_reads()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_shards(root, args.shards, args.per_shard)
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Counting, directory=str(root)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        pattern = f"part-{{000..{args.shards - 1:03d}}}.tar"
        local = measure(f"wds:{root}/{pattern}", args.workers)
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        remote = measure(f"wds:{url}/{pattern}", args.workers)
        (root / "index.json").write_text(json.dumps({"shardlist": [
            {"url": f"part-{s:03d}.tar", "nsamples": args.per_shard}
            for s in range(args.shards)]}))
        indexed = measure(f"wds:{url}/index.json", args.workers)
        httpd.shutdown()
        httpd.server_close()
    mb = 2**20
    print(machine())
    print(f"{args.shards} shards x {args.per_shard} images, {args.workers} workers; "
          f"the train shards hold {local['train_bytes'] / mb:.1f} MiB "
          f"({local['images']} images an epoch)")
    print("MiB read by aezoo (sent by the server: socket buffers take more before a reader "
          "that stops early hangs up)")
    for what, got in (("local", local), ("http", remote), ("index", indexed)):
        (o_read, o_sent), (e_read, e_sent) = got["open"], got["epoch"]
        print(f"{what:5}: opening {o_read / mb:6.1f} ({o_sent / mb:5.1f}), one epoch "
              f"{e_read / mb:6.1f} ({e_sent / mb:5.1f}) = "
              f"{e_read / local['train_bytes']:.2f}x the train shards")


if __name__ == "__main__":
    main()
