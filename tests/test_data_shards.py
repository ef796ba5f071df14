"""wds:PATTERN (aezoo_datasets.shards): WebDataset tar shards made here, read from disk and
from a 127.0.0.1 HTTP server; order, resume and DDP shares; bad shards named."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from aezoo_datasets.shardio import expand
from aezoo_datasets.shards import ShardStream
from PIL import Image

import aezoo
from aezoo.callbacks import Callback, Checkpointer
from aezoo.config import build_run_spec
from aezoo.data import load_dataset
from aezoo.data.stream_folder import skipped_images
from aezoo.data.streamed import StreamedDataset
from aezoo.errors import DataError, UsageError
from aezoo.run import train
from aezoo.specs import DataSpec, TrainSpec
from aezoo.training import Trainer
from aezoo.training.state import read_info

RNG = np.random.default_rng(3)
IMAGES = RNG.integers(0, 256, (48, 12, 12, 3), dtype=np.uint8)


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="png")
    return out.getvalue()


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four shards of 12 samples: png + cls; shard 0 written by webdataset itself."""
    import webdataset

    root = tmp_path_factory.mktemp("shards")
    for s in range(4):
        rows = range(s * 12, s * 12 + 12)
        if s == 0:
            with webdataset.TarWriter(str(root / "part-000.tar")) as writer:
                for i in rows:
                    writer.write({"__key__": f"img{i:03d}", "png": png(IMAGES[i]),
                                  "cls": str(i % 3)})
        else:
            write_shard(root / f"part-{s:03d}.tar",
                        [m for i in rows for m in ((f"img{i:03d}.png", png(IMAGES[i])),
                                                   (f"img{i:03d}.cls", str(i % 3).encode()))])
    return root


@pytest.fixture(scope="module")
def server(shards: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(shards)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def every(stream: Any, workers: int = 0, batch: int = 5) -> torch.Tensor:
    loader = torch.utils.data.DataLoader(stream, batch_size=batch, num_workers=workers)
    return torch.cat(list(loader))


def as_set(images: torch.Tensor | np.ndarray) -> list[bytes]:
    return sorted(bytes(np.asarray(x).tobytes()) for x in images)


def load(name: str, **spec: Any) -> StreamedDataset:
    data = load_dataset(DataSpec(name=name, **spec))
    assert isinstance(data, StreamedDataset)
    return data


def test_braces_and_joins() -> None:
    assert expand("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand("{a,b}-{1..2}.tar::c.tar") == ["a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar",
                                                 "c.tar"]
    with pytest.raises(UsageError, match="over 1,000,000 shards"):
        expand("s-{0..99999999}.tar")


def test_local_shards_hold_every_image_once(shards: Path) -> None:
    data = load(f"wds:{shards}/part-{{000..003}}.tar", val_fraction=0.25)
    assert data.shape == (3, 12, 12) and data.splits() == {"train": 36, "val": 12}
    seen = torch.cat([every(data.train), every(data.val)])
    truth = IMAGES.transpose(0, 3, 1, 2)
    assert as_set(seen) == as_set(truth)  # webdataset's own shard and ours read alike
    assert load(f"wds:file://{shards}", channels=1, image_size=8).shape == (1, 8, 8)


def test_shards_over_http_read_like_local_ones(shards: Path, server: str) -> None:
    local = load(f"wds:{shards}/part-{{000..003}}.tar")
    remote = load(f"wds:{server}/part-{{000..003}}.tar")
    assert remote.splits() == local.splits()
    assert torch.equal(every(remote.train), every(local.train))


def test_training_on_shards(shards: Path, tmp_path: Path) -> None:
    spec = build_run_spec("cae-strided", [{
        "data": {"name": f"wds:{shards}", "channels": 1, "image_size": [16, 16]},
        "train": {"epochs": 2, "batch_size": 8, "device": "cpu", "images": False,
                  "workers": 2}}])
    result = train(spec, tmp_path / "run")
    assert len(result.history) == 2 and result.spec.model.input_shape == (1, 16, 16)


def stream(shards: Path, **kw: Any) -> ShardStream:
    names = [str(shards / f"part-{s:03d}.tar") for s in range(4)]
    return ShardStream(names, [12] * 4, (12, 12), 3, **kw)


def test_an_epoch_is_seeded_and_skip_is_exact(shards: Path) -> None:
    a = stream(shards, buffer=8)
    a.set_epoch(2, seed=7)
    full, two = every(a, 0), every(a, 2, batch=5)
    assert as_set(two) == as_set(full)  # each worker shuffles its own share
    b = stream(shards, buffer=8)
    b.set_epoch(3, seed=7)
    assert not torch.equal(full, every(b))  # another epoch, another order
    for n in (13, 47):
        a.skip(n)  # without workers: the stream continues at any image n
        assert torch.equal(every(a, 0), full[n:])
    for n in (10, 20, 40):
        a.skip(n)  # whole turns of the workers (what the core asks): exact too
        assert torch.equal(every(a, 2, batch=5), two[n:])
    a.set_epoch(3, seed=7)  # a skip belongs to its epoch
    assert torch.equal(every(a), every(b))


def test_each_worker_downloads_only_its_own_shards(shards: Path) -> None:
    asked: list[str] = []

    class Logged(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            asked.append(self.path)

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Logged, directory=str(shards)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    index = shards / "index.json"
    index.write_text(json.dumps({"shardlist": [{"url": f"{url}/part-{s:03d}.tar",
                                                "nsamples": 12} for s in range(4)]}))
    try:
        data = load(f"wds:{index}", val_fraction=0.25)
        assert data.splits() == {"train": 36, "val": 12} and asked == ["/part-000.tar"]
        asked.clear()  # opening read the first image's header only: the index counts
        names = [f"{url}/part-{s:03d}.tar" for s in range(4)]
        remote = ShardStream(names, [12] * 4, (12, 12), 3)
        assert len(every(remote, 2, batch=5)) == 48
        assert sorted(asked) == [f"/part-{s:03d}.tar" for s in range(4)]  # each once
    finally:
        index.unlink()
        httpd.shutdown()
        httpd.server_close()


def test_a_shard_index_that_overstates_is_named(shards: Path, tmp_path: Path) -> None:
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"shardlist": [{"url": str(shards / "part-000.tar"),
                                                "nsamples": 20}]}))
    data = load(f"wds:{index}")
    with pytest.raises(DataError, match="part-000.tar holds 10 images here, fewer than "
                                        "the 18 counted"):
        every(data.train)


def test_a_shard_index_must_list_shards(tmp_path: Path) -> None:
    index = tmp_path / "index.json"
    for bad in ("[]", '{"shardlist": []}', '{"shardlist": [{"url": "a.tar"}]}', "{"):
        index.write_text(bad)
        with pytest.raises(DataError, match="is not a shard list"):
            load(f"wds:{index}")


def test_ranks_read_disjoint_equal_shares(shards: Path) -> None:
    parts = []
    for rank in range(2):
        s = stream(shards)
        s.set_shard(rank, 2)
        s.set_epoch(1, 0)
        parts.append(every(s))
        assert len(s) == 48  # all ranks together, as the contract says
    assert len(parts[0]) == len(parts[1]) == 24
    assert not set(as_set(parts[0])) & set(as_set(parts[1]))


def test_a_truncated_shard_names_shard_and_member(shards: Path, tmp_path: Path) -> None:
    data = (shards / "part-001.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[:5000])
    with pytest.raises(DataError, match=r"^shard cut\.tar is truncated or not a tar \(at member"):
        load(f"wds:{tmp_path}/cut.tar")


def test_an_undecodable_member_names_shard_and_member(tmp_path: Path) -> None:
    write_shard(tmp_path / "bad.tar", [(f"{i}.png", png(IMAGES[i])) for i in range(5)]
                + [("5.png", b"garbage")] + [(f"{i}.png", png(IMAGES[i])) for i in range(6, 9)])
    data = load(f"wds:{tmp_path}/bad.tar")
    with pytest.raises(DataError, match=r"cannot read image bad\.tar member 5\.png "):
        every(data.train)
        every(data.val)
    skipping = load(f"wds:{tmp_path}/bad.tar", skip_bad=True)
    got = torch.cat([every(skipping.train), every(skipping.val)])
    assert len(got) == 9 and len(set(as_set(got))) == 8  # its slot: the next readable one
    assert skipped_images(skipping) == (1, "bad.tar member 5.png")


def test_unreachable_shards_are_an_offline_error(server: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match=r"cannot read shard http://127\.0\.0\.1:1/a\.tar "
                                        r"\(no connection: .*download the shards"):
        load("wds:http://127.0.0.1:1/a.tar")
    with pytest.raises(DataError, match=r"HTTP 404"):
        load(f"wds:{server}/missing-{{0..1}}.tar")
    monkeypatch.setenv("AEZOO_OFFLINE", "1")
    with pytest.raises(DataError, match=r"offline mode \(AEZOO_OFFLINE=1\)"):
        load(f"wds:{server}/part-000.tar")


def test_no_shards_or_no_images(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot open shard"):
        load(f"wds:{tmp_path}/nope-{{0..1}}.tar")
    write_shard(tmp_path / "text.tar", [("a.txt", b"hello")])
    with pytest.raises(DataError, match="hold no images"):
        load(f"wds:{tmp_path}/text.tar")


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("power cut")


@pytest.mark.parametrize("loader_batch", [64, 4])
def test_a_crashed_shard_run_resumes_bit_exact(shards: Path, tmp_path: Path,
                                               loader_batch: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.training import streaming

    monkeypatch.setattr(streaming, "ITER_BATCH", loader_batch)  # 4: turns of 8 images
    data = load(f"wds:{shards}", channels=1, image_size=16)
    # 6 steps an epoch; the checkpoint at step 4 is mid-epoch and mid-loader-batch (with
    # loader batches of 4, past three whole turns: each worker skips 12 of its own)
    spec = TrainSpec(device="cpu", epochs=2, batch_size=7, checkpoint_every=4, workers=2,
                     images=False)

    def fresh(seed: int = 0) -> Any:
        torch.manual_seed(seed)
        return aezoo.build("cae-strided", input_shape=(1, 16, 16))

    full = Trainer(fresh(), data, spec)
    full.fit()
    crashed = Trainer(fresh(), data, spec, [Checkpointer(tmp_path), Crash(5)])
    with pytest.raises(RuntimeError, match="power cut"):
        crashed.fit()
    assert full.steps_per_epoch == 6 and read_info(tmp_path / "state.safetensors")[
        "global_step"] == 4  # resumes 28 images into the epoch
    resumed = Trainer(fresh(seed=1), data, spec)
    resumed.load_state(tmp_path / "state.safetensors")
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h.val_loss for h in resumed.history] == [h.val_loss for h in full.history]


def test_a_shard_url_is_not_anchored_like_a_path(tmp_path: Path) -> None:
    from aezoo.config import absolute_data_name

    url = "wds:http://127.0.0.1:9/shards-{000..001}.tar"
    assert absolute_data_name(url, tmp_path) == url  # was http:/127.0.0.1:9/... under base
    assert absolute_data_name("wds:local.tar", tmp_path) == f"wds:{tmp_path.absolute()}/local.tar"
