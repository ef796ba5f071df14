"""Streamed sources against the in-memory path, on the same images in the same run.

usage: python benchmarks/streamed.py [--n28 4000] [--n64 2000] [--epochs 2] [--repeats 2]
                                     [--json FILE]
       python benchmarks/streamed.py --large [--n256 128]   # peak RSS at 256x256 RGB

Writes PNG folders (28x28 grey, 64x64 RGB) and tar shards of the same images, then:
decode images/s in one process (what one DataLoader worker can do); training images/s
of `folder:` in memory (`--reader memory`) and streamed (`--reader stream`, 0..2 workers)
and of `wds:` shards, as ratios to the in-memory figure of the same run. `--large`
measures peak RSS of streamed training on 256x256 RGB images by variant and batch size,
each in a fresh process (ru_maxrss).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_images, peak_rss_mb, write_json  # noqa: E402

VARIANT = {28: "cae-upsample", 64: "cae-strided"}


def write_folder(images: np.ndarray, root: Path) -> None:
    root.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)).save(
            root / f"{i:06d}.png")


def write_shards(root: Path, out: Path, per_shard: int) -> None:
    out.mkdir(parents=True)
    files = sorted(root.glob("*.png"))
    for s in range(0, len(files), per_shard):
        with tarfile.open(out / f"shard-{s // per_shard:04d}.tar", "w") as tar:
            for path in files[s:s + per_shard]:
                tar.add(str(path), arcname=path.name)


def decode_rate(root: Path, repeats: int) -> float:
    """Images/s of one process decoding the folder: what one DataLoader worker can do."""
    from aezoo.data.source import LoadContext
    from aezoo.data.sources import folder
    from aezoo.data.stream_folder import stream_folder

    ctx = LoadContext(folder, str(root), root)
    split = stream_folder(ctx).train
    n = min(len(split), 1000)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            split[i]
        best = max(best, n / (time.perf_counter() - start))
    return best


def train_rate(name: str, size: int, epochs: int, out: Path, **train: Any) -> float:
    from aezoo.config import build_run_spec
    from aezoo.run import train as run

    spec = build_run_spec(VARIANT[size], [{
        "data": {"name": name},
        "train": {"epochs": epochs, "batch_size": 128, "device": "cpu", "images": False,
                  **train}}])
    history = run(spec, out, force=True).history
    return max(h.images_per_s for h in history[1:] or history)  # epoch 1 warms up


def compare(size: int, n: int, epochs: int, repeats: int, tmp: Path) -> dict[str, Any]:
    images = make_images(n, size, 1 if size == 28 else 3)
    root, shards = tmp / f"folder{size}", tmp / f"shards{size}"
    write_folder(images, root)
    write_shards(root, shards, 250)
    cases = {"memory": (f"folder:{root}", {"reader": "memory"}),
             **{f"stream_w{w}": (f"folder:{root}", {"reader": "stream", "workers": w})
                for w in (0, 1, 2)},
             "wds_w2": (f"wds:{shards}", {"workers": 2})}
    best = dict.fromkeys(cases, 0.0)
    for _ in range(repeats):  # interleaved, best of: a busy machine slows every case alike
        for case, (name, settings) in cases.items():
            rate = train_rate(name, size, epochs, tmp / f"{case}{size}", **settings)
            best[case] = max(best[case], rate)
    row: dict[str, Any] = {"size": size, "images": n,
                           "decode_per_worker": decode_rate(root, repeats), **best}
    for case in cases:
        row[f"{case}_ratio"] = best[case] / best["memory"]
    return row


def large(n: int, tmp: Path) -> list[dict[str, Any]]:
    root = tmp / "large"
    write_folder(make_images(n, 256, 3), root)
    rows = []
    for variant in ("cae-strided", "cae-resnet"):
        for batch in (16, 32):
            args = ["train", variant, "--data", f"folder:{root}", "--reader", "stream",
                    "--workers", "2", "--epochs", "1", "--batch-size", str(batch),
                    "--device", "cpu", "--no-images", "--out", str(tmp / f"{variant}-{batch}")]
            rows.append({"variant": variant, "batch": batch, "peak_rss_mb": peak_rss_mb(args)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n28", type=int, default=4000)
    p.add_argument("--n64", type=int, default=2000)
    p.add_argument("--n256", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--large", action="store_true")
    p.add_argument("--json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.large:
            payload: dict[str, Any] = {"machine": machine(), "large": large(args.n256,
                                                                           Path(tmp))}
        else:
            rows = []
            for size, n in ((28, args.n28), (64, args.n64)):
                rows.append(compare(size, n, args.epochs, args.repeats, Path(tmp)))
                print(rows[-1], flush=True)
            payload = {"machine": machine(), "rows": rows}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
