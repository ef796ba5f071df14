"""Data at scale: peak RSS of mapped training, mapped vs in-memory speed, `data pack`.

usage: python benchmarks/data_scale.py rss   [--sizes 60000 600000 6000000] [--steps 200]
       python benchmarks/data_scale.py speed [--rounds 3] [--steps 60]
       python benchmarks/data_scale.py pack  [--n 100000]
       (each takes --dir DIR for its files, default a temporary directory, and --json FILE)

rss: a uint8 (N, 1, 28, 28) .npy (written by tiling 60,000 synthetic images; 6M is
4.7 GB), trained with `--reader mapped` in a fresh process for --steps steps of 256;
reports the child's peak RSS (VmHWM, which counts any file pages it maps), and its
RssAnon/RssFile at the end. speed: images/s of the same images read in memory and mapped
(with and without the read-ahead thread), alternating in one process (ratios, not
absolutes, are the result on a shared machine).
pack: writes N 28x28 grey PNGs in 10 class folders, then times `aezoo data pack` on them
in a child process and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_images, median, write_json  # noqa: E402

CHILD = r'''
import os, signal, sys, time
import torch
import aezoo
from aezoo.data import load_dataset
from aezoo.specs import DataSpec, TrainSpec
from aezoo.training import Trainer, TrainingInterrupted

path, steps = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)


class StopAt:
    def on_step_end(self, trainer, step, images):
        if trainer.global_step == steps:
            os.kill(os.getpid(), signal.SIGINT)  # stops cleanly after this step


data = load_dataset(DataSpec(name=f"npy:{path}"))
trainer = Trainer(aezoo.build("cae-upsample"), data,
                  TrainSpec(device="cpu", epochs=1, batch_size=256, reader="mapped"),
                  [StopAt()])
start = time.perf_counter()
try:
    trainer.fit()
except TrainingInterrupted:
    pass
seconds = time.perf_counter() - start
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda key: int(status[key].split()[0])
# VmHWM, not ru_maxrss: that would include the parent's RSS at the fork (Linux keeps the
# pre-exec high-water mark), and the parent has just written the file through a map.
print(trainer.reader.kind, kb("VmHWM"), kb("RssAnon"), kb("RssFile"), steps * 256 / seconds)
'''


def write_npy(path: Path, n: int) -> float:
    """A uint8 (n, 1, 28, 28) .npy made of tiled synthetic images; seconds it took."""
    start = time.perf_counter()
    base = make_images(min(n, 60_000))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, 1, 28, 28))
    for s in range(0, n, len(base)):
        out[s:s + len(base)] = base[: n - s]
    out.flush()
    del out
    return time.perf_counter() - start


def rss(args: argparse.Namespace, root: Path) -> list[dict[str, object]]:
    rows = []
    for n in args.sizes:
        path = root / f"x{n}.npy"
        made = write_npy(path, n)
        out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.steps)],
                             check=True, capture_output=True, text=True).stdout.split()
        kind, peak, anon, file_kb, ips = out[0], *map(float, out[1:])
        row = {"images": n, "file_gb": round(path.stat().st_size / 1e9, 2), "reader": kind,
               "steps": args.steps, "peak_rss_mb": round(peak / 1024),
               "rss_anon_mb": round(anon / 1024), "rss_file_mb": round(file_kb / 1024),
               "images_per_s": round(ips), "write_s": round(made, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        path.unlink()
    return rows


def speed(args: argparse.Namespace, root: Path) -> list[dict[str, object]]:
    import torch

    import aezoo
    from aezoo.data import load_dataset
    from aezoo.specs import DataSpec, TrainSpec
    from aezoo.training import Trainer
    from aezoo.training.batches import MappedImages

    torch.set_num_threads(1)
    rows = []
    for size, variant, batch in ((28, "cae-upsample", 256), (64, "cae-strided", 64)):
        n = args.steps * batch
        path = root / f"s{size}.npy"
        np.save(path, make_images(n + n // 9, size=size))  # val is a tenth
        data = load_dataset(DataSpec(name=f"npy:{path}"))
        rates: dict[str, list[float]] = {"memory": [], "mapped": [], "mapped_no_prefetch": []}
        for _ in range(args.rounds):
            for name in rates:
                MappedImages.AHEAD = 0 if name == "mapped_no_prefetch" else 2
                torch.manual_seed(0)
                model = aezoo.build(variant, input_shape=(1, size, size))
                spec = TrainSpec(device="cpu", epochs=1, batch_size=batch,
                                 reader=name.partition("_")[0])
                trainer = Trainer(model, data, spec)
                trainer.fit()
                rates[name].append(trainer.history[0].images_per_s)
        memory = median(rates["memory"])
        row = {"size": size, "variant": variant, "batch": batch, "images": len(data.train),
               **{f"{name}_img_s": round(median(r)) for name, r in rates.items()},
               "ratio": round(median(rates["mapped"]) / memory, 3),
               "ratio_no_prefetch": round(median(rates["mapped_no_prefetch"]) / memory, 3),
               "rounds": args.rounds}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
    ".returncode\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)\n"
)


def pack(args: argparse.Namespace, root: Path) -> list[dict[str, object]]:
    from PIL import Image

    images = make_images(args.n)
    src = root / "pngs"
    start = time.perf_counter()
    for i, image in enumerate(images):
        folder = src / f"c{i % 10}"
        if i < 10:
            folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"{i:07d}.png")
    made = time.perf_counter() - start
    out = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "aezoo", "data",
                          "pack", f"folder:{src}", "--out", str(root / "store")],
                         check=True, capture_output=True, text=True).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"aezoo data pack failed with exit code {out[0]}")
    seconds = float(out[2])
    row = {"pngs": args.n, "png_write_s": round(made, 1), "pack_s": round(seconds, 1),
           "images_per_s": round(args.n / seconds), "peak_rss_mb": round(int(out[1]) / 1024),
           "store_mb": round((root / "store" / "train.npy").stat().st_size / 1e6, 1)}
    print(json.dumps(row), flush=True)
    return [row]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["rss", "speed", "pack"])
    p.add_argument("--sizes", type=int, nargs="+", default=[60_000, 600_000, 6_000_000])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dir", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        rows = {"rss": rss, "speed": speed, "pack": pack}[a.what](a, Path(tmp))
    write_json(a.json, {"benchmark": f"data_scale {a.what}", "machine": machine(),
                        "rows": rows})


if __name__ == "__main__":
    main()
