"""Peak resident memory of `aezoo train` runs, each in a fresh process.

usage: python benchmarks/memory.py [--epochs 1] [--json FILE] [--cases embedded mnist60k cifar]

Cases: the embedded mnist5k; 60,000 MNIST-size images and 50,000 CIFAR-size (3x32x32)
images, both synthetic uint8 arrays passed as `--data npz:PATH`. Peak RSS is the
child's ru_maxrss, so each case runs in its own wrapper process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_images, peak_rss_mb, write_json  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--cases", nargs="+", default=["embedded", "mnist60k", "cifar"])
    p.add_argument("--json", default="benchmarks/results/memory.json")
    a = p.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in a.cases:
            common = ["--epochs", str(a.epochs), "--out", f"{tmp}/{case}", "--device", "cpu"]
            if case == "embedded":
                args = ["train", "cae-upsample", *common]
            else:
                n, size, c = (60000, 28, 1) if case == "mnist60k" else (50000, 32, 3)
                path = f"{tmp}/{case}.npz"
                np.savez(path, images=make_images(n, size, c))
                args = ["train", "cae-upsample" if c == 1 else "cae-strided",
                        "--data", f"npz:{path}", *common]
            results[case] = {"peak_rss_mb": peak_rss_mb(args), "command": "aezoo " + " ".join(args)}
            print(f"{case:<10} peak RSS {results[case]['peak_rss_mb']:,.0f} MB", flush=True)
    write_json(a.json, {"results": results})
    print(json.dumps({k: round(v["peak_rss_mb"]) for k, v in results.items()}))


if __name__ == "__main__":
    main()
