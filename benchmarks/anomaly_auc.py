"""Anomaly detection on mnist5k: train on digits 0-8, score held-out 0-8 against digit 9.

    python benchmarks/anomaly_auc.py --epochs 10 --out runs/auc   # every first-party variant

Writes ``OUT/mnist5k-no9.npz`` (train: mnist5k train digits 0-8 minus 450 held out; val:
mnist5k val digits 0-8; test: the 450 held-out 0-8 images and every 9 of mnist5k), trains
each variant on it with ``aezoo train --data npz:...``, scores the test split with
``aezoo.scoring.score_split`` (the model's loss as the metric, and mse) and prints a
Markdown table of ROC AUCs (digit 9 = outlier); ``OUT/auc.json`` holds the numbers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

VARIANTS = ("cae-upsample", "cae-strided", "cae-denoising", "cae-sparse", "cae-vae",
            "cae-resnet")
HELD_OUT = 450
OUTLIER = 9


def make_dataset(path: Path) -> dict[str, int]:
    from aezoo.data import load_dataset
    from aezoo.specs import DataSpec

    data = load_dataset(DataSpec())
    train, train_labels = data.train, np.asarray(data.train_labels)
    val, val_labels = data.val, np.asarray(data.val_labels)
    inlier = np.flatnonzero(train_labels != OUTLIER)
    keep, held = inlier[:-HELD_OUT], inlier[-HELD_OUT:]
    nines = np.concatenate([train[train_labels == OUTLIER], val[val_labels == OUTLIER]])
    arrays = {
        "train": train[keep], "train_labels": train_labels[keep],
        "val": val[val_labels != OUTLIER], "val_labels": val_labels[val_labels != OUTLIER],
        "test": np.concatenate([train[held], nines]),
        "test_labels": np.concatenate([train_labels[held],
                                       np.full(len(nines), OUTLIER, train_labels.dtype)]),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return {k: len(v) for k, v in arrays.items() if not k.endswith("labels")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/auc"))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from aezoo.scoring import score_split

    npz = args.out / "mnist5k-no9.npz"
    sizes = make_dataset(npz)
    print(f"{npz}: {sizes}", flush=True)
    results = []
    for variant in args.variants:
        run = args.out / variant
        start = time.perf_counter()
        if not (run / "model.safetensors").exists():
            subprocess.run([sys.executable, "-m", "aezoo", "train", variant, "--data",
                            f"npz:{npz}", "--epochs", str(args.epochs), "--device",
                            args.device, "--out", str(run), "--force"], check=True)
        seconds = time.perf_counter() - start
        row = {"variant": variant, "epochs": args.epochs, "train_seconds": round(seconds, 1)}
        for metric in (None, "mse"):
            scored = score_split(run, f"npz:{npz}", "test", metric, device=args.device,
                                 outlier_labels=(OUTLIER,))
            row[f"auc_{metric or 'loss'}"] = scored.auc
            row["loss_metric"] = row.get("loss_metric") or scored.metric
        results.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "auc.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n| variant | epochs | ROC AUC (model's loss) | ROC AUC (mse) |")
    print("|---|---:|---:|---:|")
    for r in results:
        print(f"| `{r['variant']}` | {r['epochs']} | {r['auc_loss']:.3f} ({r['loss_metric']}) "
              f"| {r['auc_mse']:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
