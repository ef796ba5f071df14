"""Costs of seeing runs: curves.png (matplotlib), `aezoo runs` over many run directories.

usage: python benchmarks/see.py [--epochs 10] [--runs 1000] [--json FILE]

curves: matplotlib's import in a fresh process (median of 3); the time CurvesWriter
spends on the training thread after each epoch of an --epochs run (the hot path: between
redraws it files the row and reads the clock); the drawing it hands to the writer thread
at the end of the run (render + PNG + atomic write of the --epochs history), the first
in the process and the median of 5 more, wall and CPU (on a loaded machine the CPU time
is the cost; the wall time is the queue). runs: `aezoo runs DIR` as a fresh process over
--runs synthetic run directories (run.json, a 50-epoch metrics.jsonl, status.json, one
held-free lock file each), median of 5, plus the in-process list_runs time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, write_json  # noqa: E402


def fake_history(epochs: int) -> list[SimpleNamespace]:
    from aezoo.training.hooks import EpochResult

    return [EpochResult(e, 0.3 * math.exp(-e / 8) + 0.1, 0.28 * math.exp(-e / 9) + 0.105,
                        0.25, 18000.0, 1e-3 * (1 + math.cos(math.pi * e / epochs)) / 2)
            for e in range(1, epochs + 1)]  # type: ignore[misc]


def import_cost() -> dict[str, float]:
    code = "import matplotlib.figure, matplotlib.backends.backend_agg"
    walls, cpus = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    base = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - base
    return {"matplotlib_import_ms": (median(walls) - python) * 1e3,
            "matplotlib_import_cpu_ms": median(cpus) * 1e3, "python_start_ms": python * 1e3}


def curves_cost(epochs: int, out: Path) -> dict[str, float]:
    from aezoo.callbacks.curves import CurvesWriter

    jobs: list[Callable[[], object]] = []  # what the writer thread would run
    trainer = SimpleNamespace(history=[], files=SimpleNamespace(submit=jobs.append))
    writer = CurvesWriter(out)
    writer.on_train_start(trainer)  # type: ignore[arg-type]
    hot = []
    for result in fake_history(epochs):
        trainer.history.append(result)
        start = time.perf_counter()
        writer.on_epoch_end(trainer, result)  # type: ignore[arg-type]
        hot.append(time.perf_counter() - start)
    writer.on_train_end(trainer)  # type: ignore[arg-type]
    assert len(jobs) == 1, "one drawing: at the end (the epochs took under 5 s)"
    times, cpu = [], []
    for _ in range(6):
        start, start_cpu = time.perf_counter(), time.process_time()
        jobs[0]()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"epoch_hot_path_us": median(hot) * 1e6, "epoch_hot_path_max_us": max(hot) * 1e6,
            "end_first_ms": times[0] * 1e3, "end_first_cpu_ms": cpu[0] * 1e3,
            "end_median_ms": median(times[1:]) * 1e3,
            "end_median_cpu_ms": median(cpu[1:]) * 1e3,
            "curves_bytes": (out / "images" / "curves.png").stat().st_size}


def make_runs(root: Path, count: int) -> None:
    spec = {"model": {"variant": "cae-upsample", "encoder": {"name": "pool", "params": {}}},
            "data": {"name": "mnist5k", "limit": None}, "train": {"epochs": 50, "lr": 1e-3}}
    rows = "".join(json.dumps({"epoch": e, "train_loss": 0.1, "val_loss": 0.1 + 1 / e,
                               "seconds": 0.26, "images_per_s": 17000.0, "lr": 1e-3}) + "\n"
                   for e in range(1, 51))
    for i in range(count):
        run = root / f"cae-upsample-{i:05d}"
        run.mkdir()
        (run / "run.json").write_text(json.dumps(spec, indent=2))
        (run / "metrics.jsonl").write_text(rows)
        (run / "status.json").write_text(json.dumps({  # as StatusWriter leaves an ended run
            "outcome": "completed", "params": 4385, "summary": {
                "epochs_done": 50, "seconds": 13.0, "val_loss": 0.12, "best_epoch": 50,
                "last_val_loss": 0.12}}))
        (run / ".aezoo.lock").write_text("1")
        (run / "model.safetensors").write_bytes(b"")


def runs_cost(count: int) -> dict[str, float]:
    from aezoo.records import list_runs

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_runs(root, count)
        start, start_cpu = time.perf_counter(), time.process_time()
        assert len(list_runs(root)) == count
        inproc, inproc_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        env = {k: v for k, v in os.environ.items() if not k.startswith("AEZOO_")}
        walls, cpus = [], []
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "aezoo", "runs", str(root)], env=env,
                           check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        return {"runs": count, "list_runs_ms": inproc * 1e3, "list_runs_cpu_ms": inproc_cpu * 1e3,
                "aezoo_runs_process_ms": median(walls) * 1e3,
                "aezoo_runs_process_cpu_ms": median(cpus) * 1e3}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = import_cost() | curves_cost(args.epochs, Path(tmp))
    result |= runs_cost(args.runs)
    for key, value in result.items():
        print(f"{key:24} {value:,.1f}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
