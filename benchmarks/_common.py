"""Shared pieces of the benchmarks: synthetic data, the machine, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def make_images(n: int, size: int = 28, channels: int = 1, seed: int = 0) -> np.ndarray:
    """``n`` MNIST-like uint8 images (N, C, H, W): three Gaussian blobs plus noise.

    The same recipe as shared/reference/torch_cae.py, quantised to uint8 as real image
    datasets are.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, channels, size, size), dtype=np.uint8)
    chunk = 5000
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        for c in range(channels):
            img = np.zeros((m, size, size), dtype=np.float32)
            for _ in range(3):
                cy, cx = (rng.uniform(size / 7, size * 6 / 7, (m, 1, 1)).astype(np.float32)
                          for _ in range(2))
                sig = rng.uniform(size / 18, size / 7, (m, 1, 1)).astype(np.float32)
                amp = rng.uniform(0.5, 1.0, (m, 1, 1)).astype(np.float32)
                img += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sig**2))
            img += 0.05 * rng.random((m, size, size), dtype=np.float32)
            out[s:s + m, c] = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return out


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")


WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss_mb(args: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "aezoo", *args],
                         check=True, capture_output=True, text=True).stdout.split()
    if out[0] != "0":
        raise SystemExit(f"aezoo {' '.join(args)} failed with exit code {out[0]}")
    return int(out[1]) / 1024  # KiB on Linux; the largest of the children (workers too)
