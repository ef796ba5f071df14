"""Bounded sources: whatever a shard, a dataset row or a model file holds, reading it costs
bounded time and memory and ends in one line naming the limit (docs/errors.md, section 16).

Limits are lowered with monkeypatch where the real ones would take real memory to reach.
"""

from __future__ import annotations

import builtins
import bz2
import http.server
import io
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aezoo_datasets import shardio
from PIL import Image

from aezoo.data import load_dataset
from aezoo.errors import DataError, UsageError
from aezoo.specs import DataSpec


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8)).save(out, format="png")
    return out.getvalue()


def tar_bytes(n: int = 20) -> tuple[bytes, list[int]]:
    """A tar of ``n`` PNG members, and each member header's offset."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for i in range(n):
            data = png(i * 10)
            info = tarfile.TarInfo(f"{i:03d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = out.getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        offsets = [m.offset for m in tar.getmembers()]
    return raw, offsets


def every_sample(name: str) -> int:
    with shardio.open_shard(name) as stream:
        return sum(1 for _ in shardio.samples(name, stream))


# --- wds: truncation is an error, never a shorter shard --------------------------------


@pytest.mark.parametrize("how", ["inside a header", "at a member boundary", "damaged header"])
@pytest.mark.parametrize("compressed", [False, True])
def test_a_shard_cut_inside_a_member_header_is_truncated_not_shorter(
        tmp_path: Path, how: str, compressed: bool) -> None:
    import gzip

    raw, offsets = tar_bytes()
    if how == "inside a header":
        cut = raw[:offsets[15] + 100]
    elif how == "at a member boundary":
        cut = raw[:offsets[15]]
    else:
        cut = raw[:offsets[15]] + b"\xff" * 512 + raw[offsets[15] + 512:]
    path = tmp_path / ("cut.tar.gz" if compressed else "cut.tar")
    path.write_bytes(gzip.compress(cut) if compressed else cut)
    with pytest.raises(DataError, match=r"^shard cut\.tar(\.gz)? is truncated or not a tar"):
        load_dataset(DataSpec(name=f"wds:{path}"))
    with pytest.raises(DataError, match=r"is truncated or not a tar"):
        every_sample(str(path))
    whole = tmp_path / "whole.tar"
    whole.write_bytes(raw)
    assert every_sample(str(whole)) == 20  # a whole tar still reads every member


def test_a_shard_member_over_the_size_limit_is_refused_unread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The declared size decides, before a byte of the member is read: a 1 GiB member in a
    4.6 MB .tar.gz once peaked at 2.4 GB."""
    monkeypatch.setattr(shardio, "MAX_MEMBER_BYTES", 4096)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("000.png")
        info.size = 5000
        tar.addfile(info, io.BytesIO(bytes(5000)))
    (tmp_path / "big.tar.gz").write_bytes(out.getvalue())
    (tmp_path / "big.tar").write_bytes(__import__("gzip").decompress(out.getvalue()))
    for name in ("big.tar.gz", "big.tar"):
        with pytest.raises(DataError, match=r"is refused: member 000\.png declares 5,000 "
                                            r"bytes, over the limit of 4,096 per member"):
            load_dataset(DataSpec(name=f"wds:{tmp_path / name}"))


def test_a_compressed_shard_beyond_the_ratio_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shardio, "MAX_RATIO", 10)
    monkeypatch.setattr(shardio, "RATIO_SLACK", 0)
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w") as tar:
        for i in range(4):
            info = tarfile.TarInfo(f"{i:03d}.bin")
            info.size = 1 << 20
            tar.addfile(info, io.BytesIO(bytes(1 << 20)))
    path = tmp_path / "bomb.tar.bz2"
    path.write_bytes(bz2.compress(plain.getvalue()))
    with pytest.raises(DataError, match=r"is refused: it decompresses to over 10x"):
        every_sample(str(path))


def test_a_brace_pattern_is_bounded_before_it_is_expanded() -> None:
    started = time.perf_counter()
    for pattern in ("x{0..999}{0..999}{0..999}.tar", "{a,b}{0..999}{0..999}.tar",
                    "{{0..9},{0..9}}{{0..99},{0..999}}{{0..999},{0..9}}.tar"):
        with pytest.raises(UsageError, match=r"names over 1,000,000 shards"):
            shardio.expand(pattern)
    assert time.perf_counter() - started < 2  # once 61 s and 3.5 GB
    assert len(shardio.expand("s{0..9}{0..99}.tar")) == 1000


# --- wds: over HTTP: bounded members, and a pace ---------------------------------------


def serve(body: Callable[[Any], None]) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            try:
                body(self)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_http_shard_declaring_a_huge_member_is_refused_at_its_header() -> None:
    header = tarfile.TarInfo("000.png")
    header.size = 8 * 2**30

    def body(handler: Any) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(header.tobuf())
        for _ in range(64):  # zeros, as long as the client reads
            handler.wfile.write(bytes(1 << 16))

    for url in serve(body):
        with pytest.raises(DataError, match=r"declares 8,589,934,592 bytes, over the limit"):
            every_sample(f"{url}/s.tar")


def test_an_http_shard_that_drips_fails_within_its_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shardio, "WINDOW_S", 0.5)
    monkeypatch.setattr(shardio, "MIN_BYTES_PER_WINDOW", 1000)
    raw, _ = tar_bytes(4)
    stop = threading.Event()

    def body(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        for byte in raw:
            if stop.is_set():
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.05)

    for url in serve(body):
        started = time.perf_counter()
        try:
            with pytest.raises(DataError, match=r"below the minimum of 1,000 bytes per 0.5 s"):
                every_sample(f"{url}/s.tar")
        finally:
            stop.set()
        assert time.perf_counter() - started < 5


# --- hf: what a row may name and hold --------------------------------------------------


def _datasets() -> Any:
    # Not importorskip: with numpy < 2, pyarrow (under datasets) raises ImportError, which
    # newer pytest's importorskip does not treat as missing.
    try:
        import datasets
    except ImportError as exc:
        pytest.skip(f"the hf extra is not usable here ({exc})")
    return datasets


def _hf_dataset(tmp_path: Path, name: str, columns: dict[str, Any]) -> str:
    datasets = _datasets()
    path = tmp_path / name
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))
    return f"hf:{path}"


@pytest.fixture
def hf_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    datasets = _datasets()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


def test_an_hf_row_may_name_only_a_bounded_regular_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aezoo_datasets.hf as hf
    from aezoo_datasets.hf import HFImages

    monkeypatch.setattr(hf, "MAX_IMAGE_BYTES", 1000)
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(1001)  # sparse: a 3 GiB one once took 14 s and 3.4 GB
    small = tmp_path / "small.png"
    small.write_bytes(png(7))
    for path, says in (("/dev/zero", "a character device, not a regular file"),
                       (str(big), "larger than 1,000 bytes"), (str(tmp_path), "directory")):
        rows = HFImages([{"image": {"bytes": None, "path": path}}], "image", "hf:x train",
                        (8, 8), 1)
        with pytest.raises(DataError, match=rf"cannot read image hf:x train row 0 .*{says}"):
            rows[0]
    rows = HFImages([{"image": {"bytes": None, "path": str(small)}}], "image", "hf:x train",
                    (8, 8), 1)
    assert rows[0].shape == (1, 8, 8)


def test_an_hf_extra_that_is_installed_but_does_not_import_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not "not installed": with numpy < 2, pyarrow (under datasets) refuses to import."""
    real = builtins.__import__

    def refused(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "datasets" or name.startswith("datasets."):
            raise ImportError("pyarrow requires NumPy 2.0 or newer, found 1.24.4")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refused)
    with pytest.raises(UsageError, match=r"^hf: the Hugging Face datasets library does not "
                       r"import here \(pyarrow requires NumPy 2\.0 or newer, found 1\.24\.4\)"
                       r".*recent pyarrow needs numpy >= 2"):
        load_dataset(DataSpec(name=f"hf:{tmp_path}"))


@pytest.mark.parametrize(("labels", "says"), [
    ([0.5, 1.5, 2.9, 0.0], r"has dtype float64, not integer class labels \(row 0: 0\.5\)"),
    (["a", "b", "a", "b"], r"has dtype <U1, not integer class labels \(row 0: 'a'\)"),
    ([1, None, 0, 1], r"has dtype object, not integer class labels \(row 1: None\)"),
    ([[1], [1, 2], [0], [1]], r"holds ragged lists, not integer class labels"),
])
def test_hf_labels_that_are_not_whole_numbers_are_refused_like_npz(
        tmp_path: Path, hf_offline: None, labels: list[Any], says: str) -> None:
    images = [Image.fromarray(np.full((8, 8), i, np.uint8)) for i in range(4)]
    name = _hf_dataset(tmp_path, "d", {"image": images, "label": labels})
    with pytest.raises(DataError, match=rf"column 'label' {says}"):
        load_dataset(DataSpec(name=name))
    arrays = tmp_path / "d.npz"
    np.savez(arrays, images=np.zeros((4, 8, 8), np.uint8),
             labels=np.array([0.5, 1.5, 2.9, 0.0]))
    with pytest.raises(DataError, match=r"not integer class labels \(row 0: 0\.5\)"):
        load_dataset(DataSpec(name=f"npz:{arrays}"))
    whole = _hf_dataset(tmp_path, "w", {"image": images, "label": [0.0, 1.0, 2.0, 1.0]})
    assert load_dataset(DataSpec(name=whole)).train_labels is not None


@pytest.mark.parametrize(("column", "says"), [
    ([[[1, 2], [3]]] * 4, r"holds ragged lists \(rows of different lengths\), not an image"),
    ([1, 2, 3, 4], r"holds an integer \(1\), not an image"),
    (["a"] * 4, r"holds a string \('a'\), not an image"),
    ([[1, 2, 3]] * 4, r"holds an array of shape \[3\], not an image"),
    ([None] * 4, r"holds nothing \(null\), not an image"),
])
def test_an_hf_image_column_holding_no_image_is_named_in_one_line(
        tmp_path: Path, hf_offline: None, column: list[Any], says: str) -> None:
    name = _hf_dataset(tmp_path, "d", {"image": column})
    with pytest.raises(DataError, match=rf"^hf:.* row 0: column 'image' {says}"):
        load_dataset(DataSpec(name=name))


def test_an_hf_binary_column_is_decoded_as_encoded_images(
        tmp_path: Path, hf_offline: None) -> None:
    name = _hf_dataset(tmp_path, "d", {"image": [png(i * 20) for i in range(6)]})
    data = load_dataset(DataSpec(name=name))
    assert data.shape == (1, 8, 8)
    garbage = _hf_dataset(tmp_path, "g", {"image": [b"\x89PNG garbage"] * 4})
    with pytest.raises(DataError, match=r"cannot read image hf:.* row 0 \(not an image"):
        load_dataset(DataSpec(name=garbage))


# --- model files and specs: bounded size and structure, bounded error rendering ---------


def _model_file(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    import json
    import struct

    import aezoo

    aezoo.save(aezoo.build("cae-upsample"), path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    spec = json.loads(header["__metadata__"]["aezoo.spec"])
    edit(spec)
    header["__metadata__"]["aezoo.spec"] = json.dumps(spec)
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return path


@pytest.mark.parametrize(("edit", "says"), [
    (lambda s: s.__setitem__("regularizers", [{"name": "l1", "weight": 0.0}] * 50_000),
     r"holds a spec of [\d,]+ characters, over the limit of 1,048,576"),
    (lambda s: s.__setitem__("variant", "v" * 10_000_000),
     r"holds a spec of [\d,]+ characters, over the limit of 1,048,576"),
    (lambda s: s.__setitem__("p" * 20_000_000, 1),
     r"malformed safetensors header \(a value of over 16,777,216 bytes\)"),
    (lambda s: s.__setitem__("regularizers", [{"name": "l1", "weight": 0.0}] * 5_000),
     r"model\.regularizers: List should have at most 64 items"),
    (lambda s: s.__setitem__("variant", "v" * 300_000),
     r"model\.variant: String should have at most 256 characters"),
    (lambda s: s.__setitem__("p" * 900_000, 1),
     r"invalid model\.p{40}\.\.\.\(900,000 characters\): unknown key\)"),
    (lambda s: s["encoder"].__setitem__("params", {"x": [[0] * 100] * 200}),
     r"params: Value error, holds over 10,000 values|params: holds over 10,000 values"),
])
def test_a_hostile_spec_in_a_model_file_is_refused_in_milliseconds(
        tmp_path: Path, edit: Callable[[dict[str, Any]], None], says: str) -> None:
    import tracemalloc

    import aezoo
    from aezoo.errors import CheckpointError

    aezoo.load(_model_file(tmp_path / "good.safetensors", lambda s: None))  # imports done
    path = _model_file(tmp_path / "m.safetensors", edit)
    size = path.stat().st_size
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(CheckpointError, match=says) as caught:
            aezoo.load(path)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(str(caught.value)) < 600
    assert seconds < 2, seconds  # once 10-17 s (and 0.5-6 GB) on a 2-vCPU EPYC
    assert peak < 3 * size + 50 * 2**20, peak


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_spec_is_bounded_in_names_lists_and_params() -> None:
    from aezoo.errors import SpecError
    from aezoo.specs import RunSpec, validate

    model = {"encoder": {"name": "pool"}, "decoder": {"name": "upsample"},
             "loss": {"name": "bce"}}
    cases = [
        ({"data": {"name": "x" * 5000}}, r"data\.name: String should have at most 4096"),
        ({"train": {"optimizer_params": {f"k{i}": 1 for i in range(300)}}},
         r"train\.optimizer_params: Dictionary should have at most 256 items"),
        ({"train": {"metrics": ["m"] * 65}}, r"train\.metrics: List should have at most 64"),
        ({"train": {"callbacks": ["c" * 300]}}, r"train\.callbacks\.0: String should have at"),
        ({"train": {"scheduler_params": {"a": "s" * 5000}}},
         r"holds a string of 5,000 characters \(the limit is 4,096\)"),
        ({"train": {"optimizer_params": {"a": nested(20)}}},
         r"is nested over 16 levels deep"),
    ]
    for extra, says in cases:
        with pytest.raises(SpecError, match=says) as caught:
            validate(RunSpec, {"model": model, **extra})
        assert len(caught.value.problem) < 300
    started = time.perf_counter()
    with pytest.raises(SpecError, match=r"Dictionary should have at most 256 items"):
        validate(RunSpec, {"model": model,
                           "train": {"optimizer_params": {f"k{i}": i for i in range(10**6)}}})
    assert time.perf_counter() - started < 5  # once 29 s and 1.36 GB from an 18 MB config


def test_a_config_file_over_the_spec_size_limit_is_refused_unread(tmp_path: Path) -> None:
    from aezoo.specfile import read_config

    big = tmp_path / "big.json"
    big.write_text('{"train": {"optimizer_params": {' + ", ".join(
        f'"k{i}": {i}' for i in range(100_000)) + "}}}")
    started = time.perf_counter()
    with pytest.raises(UsageError, match=r"cannot read config file .*big\.json \(larger than "
                                         r"1,048,576 bytes\)"):
        read_config(big)
    assert time.perf_counter() - started < 1


def test_a_picture_over_pillows_bomb_limit_is_refused_before_it_is_drawn(
        tmp_path: Path, cli: Callable[..., Any]) -> None:
    import aezoo
    from aezoo.viz import MAX_PICTURE_PIXELS, grid

    with pytest.raises(UsageError, match=rf"over the limit of {MAX_PICTURE_PIXELS:,}"):
        grid(np.zeros((1000, 1, 28, 28), np.uint8), scale=16)
    aezoo.save(aezoo.build("cae-vae"), tmp_path / "vae.safetensors")
    started = time.perf_counter()
    result = cli("sample", str(tmp_path / "vae.safetensors"), "--n", "10000", "--scale", "8",
                 "--out", str(tmp_path / "s.png"))
    assert result.exit_code == 2, result.output
    assert "the picture would be 22,602x22,602 pixels (510,850,404), over the limit of " \
           "89,478,485" in " ".join(result.output.split())
    assert not (tmp_path / "s.png").exists()
    assert time.perf_counter() - started < 10  # no draw decoded: once 21 s and 2 GB


# --- data pack: a full disk is one line, and the pack resumes --------------------------


def test_a_full_disk_while_packing_is_one_line_and_the_pack_resumes(
        tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The .part file is written through a memory map: its blocks are reserved first
    (``aezoo.fileio.preallocate``), so a full disk is ENOSPC there, not SIGBUS (exit 135)."""
    import errno
    import os

    from aezoo import fileio
    from aezoo.data import pack as pack_module

    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate here")
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(1 << 20)
    fileio.preallocate(sparse)
    assert os.stat(sparse).st_blocks * 512 >= 1 << 20  # reserved, not a hole

    images = np.random.default_rng(0).integers(0, 256, (300, 1, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=images)
    monkeypatch.setattr(pack_module, "CHUNK", 64)
    monkeypatch.setattr(pack_module, "FLUSH_SECONDS", 0.0)
    real = os.posix_fallocate
    calls = []

    def full(fd: int, offset: int, length: int) -> None:
        calls.append(length)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    store = tmp_path / "store"
    result = cli("data", "pack", f"npz:{tmp_path / 'a.npz'}", "--out", str(store))
    assert result.exit_code == 1, result.output
    line = " ".join(result.output.split())
    assert "Traceback" not in line and "unexpected" not in line
    assert f"cannot write the packed store {store} (No space left on device)" in line
    assert "the pack resumes where it stopped" in line and calls
    monkeypatch.setattr(os, "posix_fallocate", real)  # space freed
    again = cli("data", "pack", f"npz:{tmp_path / 'a.npz'}", "--out", str(store))
    assert again.exit_code == 0, again.output
    assert np.array_equal(np.load(store / "train.npy"), images)


# --- IDX files: hostile dimensions are one DataError each ------------------------------


@pytest.mark.parametrize(("dims", "body", "says"), [
    ((2**32 - 1,) * 4, b"", r"declares [\d,]+ values .* over the limit of 2,147,483,648"),
    ((2**16, 2**16, 2**16, 2**16), b"\0" * 16, r"declares 18,446,744,073,709,551,616"),
    ((0, 5), b"\0" * 3, r"should hold 0 values \(0, 5\) but holds"),
    ((3, 4), b"\0" * 5, r"should hold 12 values \(3, 4\) but holds 5"),
    ((3, 4), b"\0" * 13, r"should hold 12 values \(3, 4\) but holds"),
])
@pytest.mark.parametrize("compressed", [False, True])
def test_an_idx_file_with_hostile_dimensions_is_one_data_error(
        tmp_path: Path, dims: tuple[int, ...], body: bytes, says: str,
        compressed: bool) -> None:
    import gzip
    import struct

    from aezoo.data.formats import read_idx

    raw = b"\0\0\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body
    path = tmp_path / ("x.idx.gz" if compressed else "x.idx")
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    with pytest.raises(DataError, match=says):
        read_idx(path)
    good = b"\0\0\x08\x02" + struct.pack(">2I", 3, 4) + bytes(range(12))
    path.write_bytes(gzip.compress(good) if compressed else good)
    assert read_idx(path).tolist() == np.arange(12).reshape(3, 4).tolist()


# --- in-range requests whose cost a flag or a file multiplies --------------------------


def test_a_store_labels_file_declaring_10_to_the_12_labels_is_refused_unread(
        tmp_path: Path) -> None:
    """Refused from its header, whatever the file holds (a sparse one "holds" 8 TB: it once
    reached np.load and read as an out-of-memory error blaming --image-size)."""
    from aezoo.data.pack import pack

    np.savez(tmp_path / "a.npz", images=np.zeros((20, 1, 8, 8), np.uint8),
             labels=np.arange(20) % 2)
    store = tmp_path / "store"
    pack(DataSpec(name=f"npz:{tmp_path / 'a.npz'}"), store)
    labels = next(store.glob("*.labels.npy"))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<i8", "fortran_order": False, "shape": (10**12,)})
    labels.write_bytes(header.getvalue() + bytes(8 * 20))
    started = time.perf_counter()
    with pytest.raises(DataError, match=r"declares shape \(1000000000000,\), the store "
                                        r"expects \(\d+,\)"):
        load_dataset(DataSpec(name=f"packed:{store}"))
    assert time.perf_counter() - started < 5


def test_check_every_allocates_no_window_beyond_its_bound() -> None:
    from types import SimpleNamespace

    import torch

    from aezoo.training.control import MAX_WINDOW, Control

    eager = Control(torch.device("cpu"), SimpleNamespace(enabled=False), 10**8)
    assert eager.window.numel() == 0  # CPU, one process: each step is checked at once
    synced = Control(torch.device("cpu"), SimpleNamespace(enabled=True), 10**12)
    assert synced.check_every == MAX_WINDOW
    synced.check(torch.tensor(1.0), 1)
    assert synced.window.numel() == MAX_WINDOW


def test_eval_corrupt_names_run_json_for_a_value_that_came_from_it(
        tmp_path: Path, cli: Callable[..., Any]) -> None:
    import json

    import aezoo
    from aezoo.config import build_run_spec

    run = tmp_path / "run"
    run.mkdir()
    aezoo.save(aezoo.build("cae-upsample"), run / "model.safetensors")
    spec = build_run_spec("cae-upsample").model_dump(mode="json")
    spec["train"]["corrupt"] = {"name": "gaussian", "params": {"sigma": -1.0}}
    (run / "run.json").write_text(json.dumps(spec))
    result = cli("eval", str(run), "--corrupt", "gaussian", "--device", "cpu", "--limit", "8")
    text = " ".join(result.output.split())
    assert result.exit_code != 0 and "Traceback" not in text, text
    assert f"{run / 'run.json'} holds invalid train.corrupt.params.sigma" in text, text
    assert "--corrupt.sigma" not in text
