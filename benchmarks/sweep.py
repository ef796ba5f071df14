"""A sweep against the defaults at the same budget, and one sweep by 1 vs 2 processes.

usage: python benchmarks/sweep.py [--trials 16] [--epochs 3] [--limit 2048]
                                  [--scale-trials 6] [--json FILE]

quality: `aezoo sweep cae-upsample` over train.lr (log 1e-4..1e-2) and the encoder's
channels, --trials trials of --epochs epochs on --limit mnist5k images (median pruner),
against `aezoo train cae-upsample` with its defaults and the same epochs and data; the
best trial's val_loss vs the default's, and the sweep's wall time.

scaling: one sweep of --scale-trials trials (2 epochs, no pruning, random sampler) run by
one process, then the same sweep run by two processes sharing its journal storage (the
same command started twice at once): wall time of each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

AEZOO = [sys.executable, "-m", "aezoo"]


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(AEZOO + args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def together(args: list[str], n: int, threads: int | None = None) -> float:
    """Wall time of ``n`` processes running ``aezoo ARGS`` at once (one shared study)."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    start = time.perf_counter()
    procs = [subprocess.Popen(AEZOO + args, stdout=subprocess.DEVNULL, env=env)
             for _ in range(n)]
    assert all(proc.wait() == 0 for proc in procs)
    return time.perf_counter() - start


def last_val_loss(run_dir: Path) -> float:
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    return float(json.loads(rows[-1])["val_loss"])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=2048)
    p.add_argument("--scale-trials", type=int, default=6)
    p.add_argument("--json", type=Path)
    p.add_argument("--scaling-only", action="store_true")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="aezoo-sweep-bench-"))
    result: dict[str, object] = {"settings": vars(a) | {"json": None}}
    if not a.scaling_only:
        result.update(quality(a, tmp))
    scale = ["sweep", "cae-upsample", "--param", "train.lr=log(1e-4,1e-2)", "--trials",
             str(a.scale_trials), "--epochs", "2", "--limit", str(a.limit), "--pruner",
             "none", "--sampler", "random", "--set", "train.images=false"]
    one_s = run([*scale, "--out", str(tmp / "one")])
    two_s = together([*scale, "--out", str(tmp / "two")], 2)
    two_1t_s = together([*scale, "--out", str(tmp / "two-1t")], 2, threads=1)
    counts = [json.loads(subprocess.run(
        AEZOO + ["sweep", "show", str(tmp / d), "--json", "--no-pictures"], check=True,
        capture_output=True, text=True).stdout)["counts"] for d in ("one", "two", "two-1t")]
    result["scaling"] = {"trials": a.scale_trials, "one_process_s": one_s,
                         "two_processes_s": two_s, "two_processes_1_thread_s": two_1t_s,
                         "counts": counts}
    print(json.dumps(result, indent=2))
    if a.json:
        write_json(a.json, result)


def quality(a: argparse.Namespace, tmp: Path) -> dict[str, object]:
    budget = ["--epochs", str(a.epochs), "--limit", str(a.limit)]
    default_s = run(["train", "cae-upsample", *budget, "--no-images", "--out",
                     str(tmp / "default")])
    default = last_val_loss(tmp / "default")
    sweep_s = run(["sweep", "cae-upsample", "--param", "train.lr=log(1e-4,1e-2)",
                   "--param", "model.encoder.params.channels=choice([16,8,8],[32,16,8],"
                   "[8,8,8])", "--trials", str(a.trials), *budget, "--set",
                   "train.images=false", "--out", str(tmp / "quality")])
    report = json.loads(subprocess.run(AEZOO + ["sweep", "show", str(tmp / "quality"),
                                                "--json", "--no-pictures"], check=True,
                                       capture_output=True, text=True).stdout)
    best = report["best"]
    return {"default": {"val_loss": default, "seconds": default_s},
            "sweep": {"best_val_loss": best["value"], "best_params": best["params"],
                      "best_trial": best["number"], "counts": report["counts"],
                      "seconds": sweep_s}}


if __name__ == "__main__":
    main()
