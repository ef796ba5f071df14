"""GPU throughput: both variants on CUDA, fp32 and bf16, data resident on the device.

usage: python benchmarks/gpu.py [--n 60000] [--epochs 3] [--batches 256 1024 4096 16384]
                                [--variants cae-upsample cae-strided] [--json FILE]

For each variant, precision and batch size: aezoo's Trainer on synthetic uint8 images
held on the GPU; images/s is the median over the epochs after the first. For batch 256
and the fastest batch, one more epoch runs under torch.profiler: the share of wall time
the GPU spends in kernels (close to 1 means no host-side stalls, e.g. no per-step sync).
Needs a CUDA device; on a machine without one it says so and exits.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_images, median, write_json  # noqa: E402

import aezoo  # noqa: E402
from aezoo.config import build_run_spec  # noqa: E402
from aezoo.data import ArrayDataset  # noqa: E402
from aezoo.training import Trainer  # noqa: E402


def trainer_for(variant: str, data: ArrayDataset, batch: int, precision: str,
                epochs: int) -> Trainer:
    spec = build_run_spec(variant, [{"train": {"epochs": epochs, "batch_size": batch,
                                               "device": "cuda", "precision": precision}}])
    torch.manual_seed(0)
    return Trainer(aezoo.build(spec.model), data, spec.train)


def kernel_share(variant: str, data: ArrayDataset, batch: int, precision: str) -> float:
    """Kernel time / wall time over one profiled epoch (after a warm-up epoch)."""
    from torch.profiler import ProfilerActivity, profile

    trainer = trainer_for(variant, data, batch, precision, epochs=2)
    trainer.spec = trainer.spec.model_copy(update={"epochs": 1})
    trainer.fit()  # warm-up
    trainer.spec = trainer.spec.model_copy(update={"epochs": 2})
    torch.cuda.synchronize()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        trainer.fit()
        torch.cuda.synchronize()
    wall_us = (time.perf_counter() - start) * 1e6
    kernels_us = sum(e.self_device_time_total for e in prof.key_averages())
    return kernels_us / wall_us


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    p.add_argument("--variants", nargs="+", default=["cae-upsample", "cae-strided"])
    p.add_argument("--json", default="benchmarks/results/gpu.json")
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: benchmarks/gpu.py needs a GPU")
    raw = make_images(a.n + 2000)
    data = ArrayDataset("synthetic", raw[: a.n], raw[a.n:])
    info = machine()
    print(f"{info['cuda']}, torch {info['torch']}, n={a.n}")
    results: dict[str, dict[str, dict[str, float]]] = {}
    for variant in a.variants:
        for precision in ("32", "bf16"):
            speeds = {}
            for batch in a.batches:
                history = trainer_for(variant, data, batch, precision, a.epochs).fit()
                speeds[batch] = median([h.images_per_s for h in history[1:]])
                print(f"{variant:<14}{precision:>5}  batch {batch:>6}: "
                      f"{speeds[batch]:>12,.0f} img/s", flush=True)
            best = max(speeds, key=lambda b: speeds[b])
            shares = {b: kernel_share(variant, data, b, precision) for b in {256, best}}
            results.setdefault(variant, {})[precision] = {
                "images_per_s": {str(b): s for b, s in speeds.items()},
                "best_batch": best,
                "kernel_share": {str(b): s for b, s in shares.items()},
            }
            print(f"{variant:<14}{precision:>5}  best batch {best}; kernel share "
                  + ", ".join(f"batch {b}: {s:.0%}" for b, s in shares.items()), flush=True)
    write_json(a.json, {"machine": info, "args": vars(a), "results": results})


if __name__ == "__main__":
    main()
