"""Training throughput: aezoo's Trainer vs a bare hand-written PyTorch loop.

usage: python benchmarks/throughput.py [--n 60000] [--epochs 2] [--rounds 3]
                                       [--variants cae-upsample cae-strided] [--json FILE]

Per variant and round, runs A B C alternately on the same data, batch and thread count:
  bare      the bare loop in PyTorch's default (NCHW) layout, float32 data
  bare-cl   the same bare loop with channels_last
  aezoo     aezoo's Trainer with its defaults (uint8 data, channels_last on CPU, ...)
The first epoch of every run is warm-up; images/s is measured over the rest (training
only, no validation). Reports medians over rounds and the ratio aezoo / best bare loop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_images, median, write_json  # noqa: E402
from bare_loop import train_bare  # noqa: E402

import aezoo  # noqa: E402
from aezoo.config import build_run_spec  # noqa: E402
from aezoo.data import ArrayDataset  # noqa: E402
from aezoo.trainer import Trainer  # noqa: E402


def run_aezoo(variant: str, data: ArrayDataset, epochs: int, batch: int, seed: int) -> float:
    spec = build_run_spec(variant, [{"train": {"epochs": epochs, "batch_size": batch,
                                               "seed": seed, "device": "cpu"}}])
    torch.manual_seed(seed)
    model = aezoo.build(spec.model)
    history = Trainer(model, data, spec.train).fit()
    return median([h.images_per_s for h in history[1:]])


def run_bare(variant: str, images: torch.Tensor, epochs: int, batch: int, seed: int,
             channels_last: bool) -> float:
    torch.manual_seed(seed)
    model = aezoo.build(variant)
    seq = nn.Sequential(model.encoder, model.decoder, nn.Sigmoid())
    loss = F.binary_cross_entropy if model.spec.loss.name == "bce" else F.mse_loss
    return median(train_bare(seq, loss, images, epochs, batch, channels_last)[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60000)
    p.add_argument("--epochs", type=int, default=2, help="per run; the first is warm-up")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--variants", nargs="+", default=["cae-upsample", "cae-strided"])
    p.add_argument("--json", default="benchmarks/results/throughput.json")
    a = p.parse_args()

    raw = make_images(a.n + 1000)
    data = ArrayDataset("synthetic", raw[: a.n], raw[a.n:])
    images = torch.from_numpy(raw[: a.n]).float().div_(255)
    info = machine()
    print(f"torch {info['torch']}, {info['threads']} threads, n={a.n}, batch={a.batch}")
    results = {}
    for variant in a.variants:
        speeds: dict[str, list[float]] = {"bare": [], "bare-cl": [], "aezoo": []}
        for r in range(a.rounds):
            speeds["bare"].append(run_bare(variant, images, a.epochs, a.batch, r, False))
            speeds["bare-cl"].append(run_bare(variant, images, a.epochs, a.batch, r, True))
            speeds["aezoo"].append(run_aezoo(variant, data, a.epochs, a.batch, r))
            print(f"{variant} round {r + 1}: " + "  ".join(
                f"{k} {v[-1]:,.0f}" for k, v in speeds.items()), flush=True)
        med = {k: median(v) for k, v in speeds.items()}
        best = max(med["bare"], med["bare-cl"])
        results[variant] = {"images_per_s": med, "rounds": speeds,
                            "ratio_vs_bare": med["aezoo"] / med["bare"],
                            "ratio_vs_best_bare": med["aezoo"] / best}

    print(f"\n{'variant':<14}{'bare':>10}{'bare-cl':>10}{'aezoo':>10}"
          f"{'vs bare':>10}{'vs best':>10}")
    for variant, res in results.items():
        m = res["images_per_s"]
        print(f"{variant:<14}{m['bare']:>10,.0f}{m['bare-cl']:>10,.0f}{m['aezoo']:>10,.0f}"
              f"{res['ratio_vs_bare']:>10.2f}{res['ratio_vs_best_bare']:>10.2f}")
    write_json(a.json, {"machine": info, "args": vars(a), "results": results})


if __name__ == "__main__":
    main()
