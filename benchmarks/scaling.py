"""How cost grows with the work: image size, and processes (torchrun) on CPU.

usage: python benchmarks/scaling.py [--n 8192] [--epochs 3] [--sizes 28 64 128]
                                    [--variants cae-upsample cae-strided] [--json FILE]

Each case is a real `aezoo train` in a fresh process on synthetic uint8 data
(`--data npz:...`): images/s is the median over the epochs after the first (from
metrics.jsonl), memory is the process tree's peak RSS. Then the same 28x28 run with
`torchrun --nproc-per-node 2` (DDP over gloo, one thread per process) against 1 process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import make_images, median, write_json  # noqa: E402

WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def run(cmd: list[str], out: Path, env: dict[str, str] | None = None) -> dict[str, float]:
    res = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True,
                         text=True, check=True, env=env).stdout.split()
    if res[0] != "0":
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {res[0]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"images_per_s": median([r["images_per_s"] for r in rows[1:]]),
            "peak_rss_mb": int(res[1]) / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[28, 64, 128])
    p.add_argument("--variants", nargs="+", default=["cae-upsample", "cae-strided"])
    p.add_argument("--json", default="benchmarks/results/scaling.json")
    a = p.parse_args()
    aezoo = [sys.executable, "-m", "aezoo", "train"]
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            data = Path(tmp) / f"data{size}.npz"
            np.savez(data, images=make_images(a.n, size))
            for variant in a.variants:
                out = Path(tmp) / f"{variant}-{size}"
                r = run([*aezoo, variant, "--data", f"npz:{data}", "--epochs", str(a.epochs),
                         "--no-images", "--device", "cpu", "--out", str(out)], out)
                results.setdefault(variant, {})[f"{size}x{size}"] = r
                print(f"{variant:<14}{size:>4}x{size:<4}{r['images_per_s']:>10,.0f} img/s"
                      f"{r['peak_rss_mb']:>8,.0f} MB", flush=True)
        data = Path(tmp) / f"data{a.sizes[0]}.npz"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        for variant in a.variants:
            out = Path(tmp) / f"{variant}-ddp"
            r = run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                     "-m", "aezoo", "train", variant, "--data", f"npz:{data}",
                     "--epochs", str(a.epochs), "--no-images", "--device", "cpu",
                     "--out", str(out)], out, env)
            results[variant]["torchrun-2"] = r
            print(f"{variant:<14}torchrun x2{r['images_per_s']:>10,.0f} img/s"
                  f"{r['peak_rss_mb']:>8,.0f} MB (largest process)", flush=True)
    write_json(a.json, {"n": a.n, "epochs": a.epochs, "results": results})


if __name__ == "__main__":
    main()
