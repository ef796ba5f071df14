"""Training throughput: aezoo's Trainer vs a bare hand-written PyTorch loop.

usage: python benchmarks/throughput.py [--n 20000] [--epochs 2] [--rounds 6]
                                       [--variants cae-upsample cae-strided] [--json FILE]

Per variant and round, runs each configuration alternately (A B C D A B C D ...) on the
same data, batch size and thread count:
  bare        the bare loop in PyTorch's default (NCHW) layout, float32 data
  bare-cl     the same bare loop with channels_last
  expert      bare_loop.train_expert: uint8 data, channels_last, foreach Adam, the loss
              read once per epoch, bf16 autocast where aezoo's auto picks it: an expert's
              loop in aezoo's precision and layout (the target: aezoo >= 1.0x of it)
  aezoo-fp32  aezoo's Trainer, --precision 32 (uint8 data, channels_last on CPU): the
              like-for-like comparison with the bare loops
  aezoo       aezoo's Trainer with its defaults (precision auto: bf16 on CPUs with
              native bf16, else fp32)
  keras       with --keras-python PY (an environment with TensorFlow): the tutorial's
              Keras model via keras_tutorial.py, cae-upsample only, in a subprocess
The first epoch of every run is warm-up; images/s is measured over the rest (training
only, no validation). This machine's speed drifts by tens of percent from minute to
minute, so ratios are taken within each round (the runs of a round are seconds apart)
and the median over rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_images, median, write_json  # noqa: E402
from bare_loop import train_bare, train_expert  # noqa: E402

import aezoo  # noqa: E402
from aezoo.config import build_run_spec  # noqa: E402
from aezoo.data import ArrayDataset  # noqa: E402
from aezoo.training import Trainer, flush_denormals  # noqa: E402
from aezoo.training.precision import resolve_precision  # noqa: E402


def run_aezoo(variant: str, data: ArrayDataset, epochs: int, batch: int, seed: int,
              precision: str = "auto") -> float:
    spec = build_run_spec(variant, [{"train": {"epochs": epochs, "batch_size": batch,
                                               "seed": seed, "device": "cpu",
                                               "precision": precision}}])
    torch.manual_seed(seed)
    model = aezoo.build(spec.model)
    history = Trainer(model, data, spec.train).fit()
    return median([h.images_per_s for h in history[1:]])


def run_bare(variant: str, images: torch.Tensor, epochs: int, batch: int, seed: int,
             channels_last: bool) -> float:
    torch.manual_seed(seed)
    model = aezoo.build(variant)
    seq = nn.Sequential(model.encoder, model.decoder, nn.Sigmoid())
    loss = F.binary_cross_entropy if model.spec.loss.name.endswith("bce") else F.mse_loss
    return median(train_bare(seq, loss, images, epochs, batch, channels_last)[1:])


def run_expert(variant: str, raw: torch.Tensor, epochs: int, batch: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = aezoo.build(variant)
    seq = nn.Sequential(model.encoder, model.decoder)
    bce = model.spec.loss.name.endswith("bce")
    amp = torch.bfloat16 if resolve_precision("auto", torch.device("cpu")) == "bf16" else None

    def loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # as aezoo's losses
        return (F.binary_cross_entropy_with_logits(logits.float(), x) if bce
                else F.mse_loss(torch.sigmoid(logits.float()), x))

    return median(train_expert(seq, loss, raw, epochs, batch, amp)[1:])


def run_keras(python: str, n: int, epochs: int) -> float:
    script = Path(__file__).resolve().parent / "keras_tutorial.py"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "keras.json"
        subprocess.run([python, str(script), "--n", str(n), "--epochs", str(epochs),
                        "--json", str(out)], check=True, capture_output=True)
        speed: float = json.loads(out.read_text())["images_per_s"]
        return speed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=2, help="per run; the first is warm-up")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--variants", nargs="+", default=["cae-upsample", "cae-strided"])
    p.add_argument("--json", default="benchmarks/results/throughput.json")
    p.add_argument("--keras-python", help="a Python with TensorFlow: adds the Keras tutorial")
    a = p.parse_args()

    # What `aezoo train` does first: flush denormals to zero (as TensorFlow does). Done
    # for the whole process, so the bare loops get it too.
    flush_denormals()
    raw = make_images(a.n + 1000)
    data = ArrayDataset("synthetic", raw[: a.n], raw[a.n:])
    images = torch.from_numpy(raw[: a.n]).float().div_(255)
    raw_t = torch.from_numpy(raw[: a.n])
    info = machine()
    print(f"torch {info['torch']}, {info['threads']} threads, n={a.n}, batch={a.batch}")
    configs = {
        "bare": lambda v, r: run_bare(v, images, a.epochs, a.batch, r, False),
        "bare-cl": lambda v, r: run_bare(v, images, a.epochs, a.batch, r, True),
        "expert": lambda v, r: run_expert(v, raw_t, a.epochs, a.batch, r),
        "aezoo-fp32": lambda v, r: run_aezoo(v, data, a.epochs, a.batch, r, "32"),
        "aezoo": lambda v, r: run_aezoo(v, data, a.epochs, a.batch, r),
    }
    results = {}
    for variant in a.variants:
        speeds: dict[str, list[float]] = {k: [] for k in configs}
        keras = a.keras_python and variant == "cae-upsample"
        if keras:
            speeds["keras"] = []
        for r in range(a.rounds):
            for name, run in configs.items():
                speeds[name].append(run(variant, r))
            if keras:
                speeds["keras"].append(run_keras(a.keras_python, a.n, a.epochs))
            print(f"{variant} round {r + 1}: " + "  ".join(
                f"{k} {v[-1]:,.0f}" for k, v in speeds.items()), flush=True)
        best_bare = [max(b, c) for b, c in zip(speeds["bare"], speeds["bare-cl"], strict=True)]
        refs = {"bare": speeds["bare"], "best_bare": best_bare, "expert": speeds["expert"]}
        if keras:
            refs["keras"] = speeds["keras"]
        ratios = {
            f"{k}_vs_{base}": median([x / y for x, y in zip(speeds[k], ref, strict=True)])
            for k in ("aezoo-fp32", "aezoo") for base, ref in refs.items()
        }
        results[variant] = {"images_per_s": {k: median(v) for k, v in speeds.items()},
                            "rounds": speeds, "ratios": ratios}

    names = [*configs, "keras"]
    print("\nmedian images/s; ratios are medians of per-round ratios")
    print(f"{'variant':<14}" + "".join(f"{k:>12}" for k in names)
          + "".join(f"{k:>14}" for k in ("fp32/best", "aezoo/best", "aezoo/expert",
                                           "fp32/keras", "aezoo/keras")))
    for variant, res in results.items():
        m, r = res["images_per_s"], res["ratios"]
        cells = [f"{m[k]:>12,.0f}" if k in m else f"{'-':>12}" for k in names]
        cells += [f"{r[k]:>14.2f}" if k in r else f"{'-':>14}" for k in (
            "aezoo-fp32_vs_best_bare", "aezoo_vs_best_bare", "aezoo_vs_expert",
            "aezoo-fp32_vs_keras",
            "aezoo_vs_keras")]
        print(f"{variant:<14}" + "".join(cells))
    write_json(a.json, {"machine": info, "args": vars(a), "results": results})


if __name__ == "__main__":
    main()
