"""DistributedDataParallel on CPU: 2 gloo processes launched by torchrun's module runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from aezoo.training.state import read_info

PLUGIN = '''
import torch.distributed as dist
from safetensors.torch import save_file


class DumpWeights:
    """Every rank writes its final weights: the test compares them."""

    all_ranks = True

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def on_train_end(self, trainer):
        rank = dist.get_rank()
        state = {k: v.detach().cpu().contiguous() for k, v in trainer.model.state_dict().items()}
        save_file(state, str(self.out_dir / f"rank{rank}.safetensors"))
'''


@pytest.mark.slow
def test_two_gloo_processes_train_in_step_and_rank0_writes_one_set_of_files(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "aezoo_test_ddp.py").write_text(PLUGIN)
    info = site / "aezoo_test_ddp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aezoo-test-ddp\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[aezoo.callbacks]\ndump-weights = aezoo_test_ddp:DumpWeights\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEZOO_")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "aezoo", "train", "cae-upsample", "--device", "cpu", "--epochs", "2",
         "--limit", "128", "--batch-size", "32", "--callback", "dump-weights",
         "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    r0, r1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert r0.keys() == r1.keys() and all(torch.equal(r0[k], r1[k]) for k in r0)
    final = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(final[k], r0[k]) for k in final)

    # one set of files, written by rank 0; one progress line per epoch, one summary
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == ["best.safetensors", "images/curves.png", "images/epoch-0001.png",
                     "images/epoch-0002.png", "last.safetensors", "metrics.csv",
                     "metrics.jsonl", "model.safetensors", "rank0.safetensors",
                     "rank1.safetensors", "run.json", "state.safetensors", "status.json"]
    assert done.stdout.count("saved ") == 1 and done.stdout.count("epoch 1/2") == 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    state = read_info(out / "state.safetensors")
    # each rank ran 2 steps of 32 on its 64-image shard per epoch: 4 steps in all
    assert state["world_size"] == 2 and state["global_step"] == 4
