"""benchmarks/quality.py (the seed study, docs/benchmarks.md "Quality") on a tiny budget:
one epoch, two seeds, 256 training images."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
MATCHED = "bare+logits+cl+flush+same-init"  # the bare loop moved onto aezoo's recipe
# aezoo pinned to fp32, as the bare loop is: `auto` is bf16 on CPUs with AMX.
AEZOO = "aezoo-fp32"


def _quality():
    spec = importlib.util.spec_from_file_location("quality", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_reports_each_config_and_matches_aezoo_with_a_matched_bare_loop(tmp_path):
    out, md = tmp_path / "quality.json", tmp_path / "quality.md"
    _quality().main(["--epochs", "1", "--seeds", "2", "--limit", "256", "--jobs", "3",
                     "--configs", AEZOO, "bare", MATCHED,
                     "--json", str(out), "--markdown", str(md)])
    results = json.loads(out.read_text())["results"]
    assert list(results) == [AEZOO, "bare", MATCHED]
    for res in results.values():
        final = res["final"]
        assert final["n"] == 2 and res["seeds"] == [0, 1]
        assert all(0.3 < v < 0.8 for v in res["finals"])  # BCE after one short epoch
        assert final["ci95"][0] < final["mean"] < final["ci95"][1]
        assert len(res["mean_curve"]) == 1 and math.isclose(
            res["mean_curve"][0], final["mean"])
        assert res["finals"][0] != res["finals"][1]  # the seed changes the run
    # Same init, same batches, BCE from logits, same layout and flushing: the hand-written
    # loop is aezoo's training to float rounding, seed by seed.
    for ours, bare in zip(results[AEZOO]["runs"], results[MATCHED]["runs"], strict=True):
        assert ours["val"] == pytest.approx(bare["val"], abs=1e-6)
        assert ours["aezoo_val"] == pytest.approx(bare["val"], abs=1e-6)  # aezoo's own measure
    assert "vs_bare" in results[AEZOO] and "vs_bare" not in results["bare"]
    table = md.read_text()
    assert all(f"| `{name}` | 2 |" in table for name in results)


def test_configs_are_checked_before_anything_runs():
    quality = _quality()
    assert quality.parse_config("aezoo-fp32") == ("aezoo", {"fp32"})
    with pytest.raises(SystemExit, match="bare has no fp32"):
        quality.parse_config("bare+fp32")
    with pytest.raises(SystemExit, match="unknown config"):
        quality.parse_config("lightning")


def test_intervals_use_students_t():
    quality = _quality()
    s = quality.summarize([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2) = 4.303
    assert s["sd"] == pytest.approx(1.0)
    assert s["ci95"] == pytest.approx([2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)])
    d = quality.welch([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert d["diff"] == 0 and d["low"] < 0 < d["high"]
