"""`aezoo bench`: numbers equal `aezoo eval` of the same runs; a killed bench resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from aezoo.leaderboard import select_variants, summarise

Cli = Callable[..., Any]
ARGS = ["bench", "cae-upsample", "cae-strided", "--epochs", "1", "--limit", "32",
        "--batch-size", "32", "--device", "cpu", "--out", "B"]
SAME = ("images", "mse", "bce", "psnr", "ssim", "loss", "params", "data", "split")


def test_a_killed_bench_resumes_and_its_numbers_equal_eval(cli: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEZOO_")}
    proc = subprocess.Popen([sys.executable, "-m", "aezoo", *ARGS], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # kill it as soon as the first run is recorded
            seen.append(line)
            if "cae-strided/seed-0: val_loss" in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert any("val_loss" in s for s in seen), "".join(seen)
    first = tmp_path / "B/cae-strided/seed-0/model.safetensors"
    stamp = first.stat().st_mtime_ns
    result = cli(*ARGS)
    assert result.exit_code == 0, result.output
    assert "cae-strided/seed-0: reused" in result.stdout
    assert "cae-upsample/seed-0: training" in result.stdout
    assert first.stat().st_mtime_ns == stamp  # not trained again
    bench = json.loads((tmp_path / "B/bench.json").read_text())
    assert set(bench["runs"]) == {"cae-strided/seed-0", "cae-upsample/seed-0"}
    for key, numbers in bench["runs"].items():
        evaluated = cli("eval", str(tmp_path / "B" / key), "--json", "--device", "cpu")
        assert evaluated.exit_code == 0, evaluated.output
        report = json.loads(evaluated.stdout)
        if key.startswith("cae-upsample"):  # evaluated in this process: the very same numbers
            assert {k: numbers[k] for k in SAME} == {k: report[k] for k in SAME}, key
        else:  # by the killed process, with another thread count: float reductions differ
            for k in SAME:
                expected = report[k]
                assert numbers[k] == (pytest.approx(expected, rel=1e-6)
                                      if isinstance(expected, float) else expected), (key, k)
    assert [r["variant"] for r in bench["summary"]] == sorted(
        ["cae-strided", "cae-upsample"], key=lambda v: -bench["runs"][f"{v}/seed-0"]["psnr"])
    assert "cae-upsample" in result.stdout and "4,385" in result.stdout  # the table
    picture = Image.open(tmp_path / "B/bench.png")
    assert picture.format == "PNG" and picture.width > picture.height
    again = cli(*ARGS, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["summary"] == bench["summary"]
    changed = cli(*ARGS[:4], "2", *ARGS[5:])
    assert changed.exit_code == 2 and "other settings (epochs 1 -> 2)" in changed.output


def test_bench_selects_and_summarises() -> None:
    assert select_variants(["cae-up*", "cae-strided"]) == ["cae-strided", "cae-upsample"]
    runs = {f"v/seed-{s}": {"params": 10, "psnr": 20.0 + s, "val_loss": 0.1, "mse": 0.01,
                            "bce": 0.2, "ssim": 0.9, "train_images_per_s": 100.0,
                            "seconds": 1.0} for s in range(3)}
    (row,) = summarise(runs, ["v"], 3)
    assert row["psnr"] == 21.0 and row["psnr_spread"] == 1.0 and row["seeds"] == 3


def test_bench_refuses_unknown_variants(cli: Cli) -> None:
    result = cli("bench", "no-such-*", "--epochs", "1")
    assert result.exit_code == 2 and "no variant matches 'no-such-*'" in result.output
