"""Under DDP (2 gloo processes) rank 0 alone downloads a dataset, and each rank reads only
its shard of the memory-mapped source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PLUGIN = '''
import json

import numpy as np
import torch.distributed as dist

from aezoo.data.source import DatasetSource, RemoteFile, Splits


def load(ctx):
    paths = ctx.fetch()
    return Splits(train=np.load(paths["toy.npy"], mmap_mode="r", allow_pickle=False))


toy = DatasetSource(name="ddptoy", description="test", license="test", load=load,
                    files=(RemoteFile("toy.npy", SHA, SIZE),), mirrors=(MIRROR,))


class DumpRows:
    """Every rank writes the rows of the mapped file its training and validation read."""

    all_ranks = True

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def on_train_start(self, trainer):
        rows = {"kind": trainer.reader.kind,
                "train": trainer.train_images.array.positions().tolist(),
                "val": trainer.val_images.array.positions().tolist()}
        (self.out_dir / f"rows{dist.get_rank()}.json").write_text(json.dumps(rows))
'''


@pytest.mark.slow
def test_rank0_downloads_once_and_ranks_read_disjoint_shards(tmp_path: Path) -> None:
    import hashlib
    import io

    from test_data_download import Server

    images = np.random.default_rng(0).integers(0, 256, (100, 1, 28, 28), dtype=np.uint8)
    buf = io.BytesIO()
    np.save(buf, images)
    body = buf.getvalue()
    with Server() as server:
        server.files["/toy.npy"] = body
        plugin = (f"SHA, SIZE, MIRROR = {hashlib.sha256(body).hexdigest()!r}, {len(body)}, "
                  f"{server.url + '/'!r}\n" + PLUGIN)
        done, out = _train(tmp_path, plugin)
        assert server.hits == ["/toy.npy"]  # one download, by rank 0
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reading data: mapped" in done.stdout
    r0, r1 = (json.loads((out / f"rows{r}.json").read_text()) for r in (0, 1))
    assert r0["kind"] == r1["kind"] == "mapped"
    for part in ("train", "val"):
        assert not set(r0[part]) & set(r1[part])  # disjoint shards
    assert len(r0["train"]) == len(r1["train"]) == 45  # 90 train images, cut equal
    assert len(r0["val"]) + len(r1["val"]) == 10
    assert not (set(r0["train"]) | set(r1["train"])) & (set(r0["val"]) | set(r1["val"]))


def _train(tmp_path: Path, plugin: str) -> tuple[subprocess.CompletedProcess, Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "aezoo_test_rows.py").write_text(plugin)
    info = site / "aezoo_test_rows-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aezoo-test-rows\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[aezoo.callbacks]\ndump-rows = aezoo_test_rows:DumpRows\n"
        "[aezoo.datasets]\nddptoy = aezoo_test_rows:toy\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEZOO_")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", AEZOO_DATA=str(tmp_path / "cache"), NO_PROXY="*")
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "aezoo", "train", "cae-upsample", "--device", "cpu", "--epochs", "1",
         "--data", "ddptoy", "--reader", "mapped", "--batch-size", "15",
         "--callback", "dump-rows", "--no-images", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    return done, out
