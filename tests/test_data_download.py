"""Downloads against a loopback HTTP server: verified, atomic, mirror fallback, offline.

The built-in ``mnist`` and ``cifar10`` descriptors are patched to point at a server on
127.0.0.1 that serves small generated IDX and CIFAR-10-binary files; the real loaders,
registry and cache code run unchanged. Nothing here touches the internet.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import io
import socket
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aezoo import registry
from aezoo.cli import app
from aezoo.data import load_dataset, sources, split_indices
from aezoo.data.source import RemoteFile
from aezoo.errors import DataError
from aezoo.specs import DataSpec

N_TRAIN, N_TEST = 100, 10


class Server:
    """Serves ``files`` (path -> bytes); ``modes`` makes a path misbehave."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}  # "cut": close the connection half-way
        self.hits: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.hits.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.modes.get(self.path) == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def dead_url() -> str:
    """A loopback URL nobody listens on: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing/"


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                     *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def make_mnist(rng: np.random.Generator) -> dict[str, np.ndarray]:
    labels = np.arange(N_TRAIN) % 10
    rng.shuffle(labels)
    return {"train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
            "train_labels": labels.astype(np.uint8),
            "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
            "test_labels": (np.arange(N_TEST) % 10).astype(np.uint8)}


def mnist_files(data: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {"train-images-idx3-ubyte.gz": idx_bytes(data["train_images"]),
            "train-labels-idx1-ubyte.gz": idx_bytes(data["train_labels"]),
            "t10k-images-idx3-ubyte.gz": idx_bytes(data["test_images"]),
            "t10k-labels-idx1-ubyte.gz": idx_bytes(data["test_labels"])}


def remote(name: str, body: bytes) -> RemoteFile:
    return RemoteFile(name, hashlib.sha256(body).hexdigest(), len(body))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("AEZOO_DATA", str(root))
    monkeypatch.delenv("AEZOO_OFFLINE", raising=False)
    return root


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


@pytest.fixture
def patch_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """patch(attr, **changes): the built-in descriptor ``attr`` with ``changes``."""
    def patch(attr: str, **changes: object) -> None:
        monkeypatch.setattr(sources, attr, dataclasses.replace(getattr(sources, attr),
                                                               **changes))
        registry.clear_cache()

    yield patch
    monkeypatch.undo()
    registry.clear_cache()


@pytest.fixture
def mnist_data() -> dict[str, np.ndarray]:
    return make_mnist(np.random.default_rng(0))


def serve_mnist(server: Server, patch_source: object, data: dict[str, np.ndarray],
                mirrors: tuple[str, ...] | None = None) -> dict[str, bytes]:
    files = mnist_files(data)
    for name, body in files.items():
        server.files[f"/mnist/{name}"] = body
    patch_source("mnist", files=tuple(remote(n, b) for n, b in files.items()),  # type: ignore[operator]
                 mirrors=mirrors or (f"{server.url}/mnist/",))
    return files


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_verifies_parses_and_splits(cache, server, patch_source, mnist_data):
    files = serve_mnist(server, patch_source, mnist_data)
    seen: dict[str, tuple[int, int | None, str]] = {}
    ds = load_dataset(DataSpec(name="mnist"),
                      progress=lambda label, done, total, unit: seen.__setitem__(
                          label, (done, total, unit)))
    # Every file arrived whole, under its real name, with no temporary left behind.
    assert leftovers(cache / "mnist") == sorted(files)
    assert {k: v[0] for k, v in seen.items()} == {n: len(b) for n, b in files.items()}
    assert all(total == done and unit == "bytes" for done, total, unit in seen.values())
    # The standard split is kept: train -> train + stratified val, t10k -> test.
    train_idx, val_idx = split_indices(N_TRAIN, mnist_data["train_labels"], 0.1, 0)
    images = mnist_data["train_images"][:, None]
    np.testing.assert_array_equal(ds.train, images[train_idx])
    np.testing.assert_array_equal(ds.val, images[val_idx])
    np.testing.assert_array_equal(ds.test, mnist_data["test_images"][:, None])
    np.testing.assert_array_equal(ds.test_labels, mnist_data["test_labels"])
    assert np.bincount(ds.val_labels, minlength=10).tolist() == [1] * 10  # stratified
    assert ds.train.dtype == np.uint8 and ds.shape == (1, 28, 28)
    # A second load uses the verified cache: no new requests.
    hits = len(server.hits)
    load_dataset(DataSpec(name="mnist"))
    assert len(server.hits) == hits


def test_checksum_mismatch_is_rejected_and_nothing_is_kept(cache, server, patch_source,
                                                           mnist_data):
    files = serve_mnist(server, patch_source, mnist_data)
    good = files["train-images-idx3-ubyte.gz"]
    bad = bytes([good[0] ^ 0xFF]) + good[1:]  # same size, different bytes
    server.files["/mnist/train-images-idx3-ubyte.gz"] = bad
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name="mnist"))
    message = str(err.value)
    assert "SHA-256 mismatch" in message and "train-images-idx3-ubyte.gz" in message
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz" not in leftovers(cache / "mnist")
    assert not [n for n in leftovers(cache / "mnist") if n.endswith(".part")]


def test_connection_cut_mid_file_leaves_no_file(cache, server, patch_source, mnist_data):
    serve_mnist(server, patch_source, mnist_data)
    server.modes["/mnist/train-images-idx3-ubyte.gz"] = "cut"
    with pytest.raises(DataError, match="connection closed after|connection lost after"):
        load_dataset(DataSpec(name="mnist"))
    assert leftovers(cache / "mnist") == []


def test_interrupt_during_download_leaves_no_file(cache, server, patch_source, mnist_data):
    serve_mnist(server, patch_source, mnist_data)

    def interrupt(label: str, done: int, total: int | None, unit: str) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_dataset(DataSpec(name="mnist"), progress=interrupt)
    assert leftovers(cache / "mnist") == []


def test_first_mirror_down_second_used(cache, server, patch_source, mnist_data):
    serve_mnist(server, patch_source, mnist_data,
                mirrors=(dead_url(), f"{server.url}/missing/", f"{server.url}/mnist/"))
    ds = load_dataset(DataSpec(name="mnist"))
    assert len(ds.train) + len(ds.val) == N_TRAIN
    assert any(hit.startswith("/missing/") for hit in server.hits)  # the 404 was tried


def test_offline_names_the_files_and_where_to_put_them(cache, patch_source, mnist_data):
    files = mnist_files(mnist_data)
    patch_source("mnist", files=tuple(remote(n, b) for n, b in files.items()),
                 mirrors=(dead_url(),))
    with pytest.raises(DataError) as err:
        load_dataset(DataSpec(name="mnist"))
    message = str(err.value)
    assert "\n" not in message and "no mirror reachable" in message
    assert all(name in message for name in files)
    assert str(cache / "mnist") in message and "docs/data.md" in message
    assert leftovers(cache / "mnist") == []


def test_offline_mode_never_connects(cache, server, patch_source, mnist_data, monkeypatch):
    serve_mnist(server, patch_source, mnist_data)
    monkeypatch.setenv("AEZOO_OFFLINE", "1")
    with pytest.raises(DataError, match="AEZOO_OFFLINE"):
        load_dataset(DataSpec(name="mnist"))
    assert server.hits == []


def test_files_placed_by_hand_are_verified(cache, server, patch_source, mnist_data):
    files = mnist_files(mnist_data)
    patch_source("mnist", files=tuple(remote(n, b) for n, b in files.items()),
                 mirrors=(dead_url(),))
    (cache / "mnist").mkdir(parents=True)
    for name, body in files.items():
        (cache / "mnist" / name).write_bytes(body)
    assert len(load_dataset(DataSpec(name="mnist")).test) == N_TEST  # offline, by hand

    # A wrong file by hand is caught, named, and not used.
    labels = cache / "mnist" / "t10k-labels-idx1-ubyte.gz"
    body = files["t10k-labels-idx1-ubyte.gz"]
    labels.write_bytes(body[:-1] + bytes([body[-1] ^ 1]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz \\(cached copy is bad"):
        load_dataset(DataSpec(name="mnist"))

    # With a mirror, the bad copy is replaced by a verified one.
    for name, b in files.items():
        server.files[f"/mnist/{name}"] = b
    patch_source("mnist", mirrors=(f"{server.url}/mnist/",))
    load_dataset(DataSpec(name="mnist"))
    assert labels.read_bytes() == body
    assert server.hits == ["/mnist/t10k-labels-idx1-ubyte.gz"]


def cifar_archive(images: list[np.ndarray], labels: list[np.ndarray]) -> bytes:
    """A cifar-10-binary.tar.gz: 5 train batches + 1 test batch of (label, R, G, B) records."""
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, imgs, labs in zip(names, images, labels, strict=True):
            records = np.concatenate([labs[:, None], imgs.reshape(len(imgs), -1)], axis=1)
            blob = records.astype(np.uint8).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        meta = b"airplane\nautomobile\n"
        info = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    return buf.getvalue()


def test_cifar10_binary_download_and_parse(cache, server, patch_source):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8) for n in (4,) * 5 + (3,)]
    labels = [(np.arange(len(i)) + k) % 10 for k, i in enumerate(images)]
    body = cifar_archive(images, [lab.astype(np.uint8) for lab in labels])
    server.files["/kriz/cifar-10-binary.tar.gz"] = body
    patch_source("cifar10", files=(remote("cifar-10-binary.tar.gz", body),),
                 mirrors=(f"{server.url}/kriz/",))
    ds = load_dataset(DataSpec(name="cifar10", val_fraction=0.25))
    train = np.concatenate(images[:5])
    train_labels = np.concatenate(labels[:5])
    train_idx, val_idx = split_indices(len(train), train_labels, 0.25, 0)
    assert ds.shape == (3, 32, 32)
    np.testing.assert_array_equal(ds.train, train[train_idx])
    np.testing.assert_array_equal(ds.val, train[val_idx])
    np.testing.assert_array_equal(ds.test, images[5])
    np.testing.assert_array_equal(ds.test_labels, labels[5])
    assert leftovers(cache / "cifar10") == ["cifar-10-binary.tar.gz"]


def test_cli_fetch_list_info(cache, server, patch_source, mnist_data):
    serve_mnist(server, patch_source, mnist_data)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "fetch", "mnist", "mnist5k"])
    assert result.exit_code == 0, result.output
    assert "mnist: 4 files verified in" in result.stdout
    assert "mnist5k ships inside its package: nothing to fetch" in result.stdout

    listed = runner.invoke(app, ["data", "list", "--json"])
    rows = {r["name"]: r for r in __import__("json").loads(listed.stdout)}
    assert rows["mnist"]["cached"] == "yes"
    assert rows["mnist"]["bytes"] == sum(len(b) for b in mnist_files(mnist_data).values())
    assert rows["mnist5k"]["cached"] == "embedded" and rows["folder:PATH"]["cached"] == "-"

    info = runner.invoke(app, ["data", "info", "mnist", "--json"])
    assert info.exit_code == 0, info.output
    splits = __import__("json").loads(info.stdout)["splits"]
    assert {k: v["images"] for k, v in splits.items()} == {"train": 90, "val": 10, "test": 10}
    assert splits["train"]["classes"] == 10


def test_cli_fetch_offline_is_one_line(cache, patch_source, mnist_data):
    files = mnist_files(mnist_data)
    patch_source("mnist", files=tuple(remote(n, b) for n, b in files.items()),
                 mirrors=(dead_url(),))
    result = CliRunner().invoke(app, ["data", "fetch", "mnist"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download mnist")
    assert "Traceback" not in result.output


def test_a_file_is_hashed_once_per_process(cache, server, patch_source, mnist_data,
                                           monkeypatch):
    """The download hashes while streaming; loading the file afterwards trusts that."""
    from aezoo.data import download

    serve_mnist(server, patch_source, mnist_data)
    calls: list[str] = []
    real = download.sha256_of
    monkeypatch.setattr(download, "sha256_of", lambda path: calls.append(str(path)) or real(path))
    load_dataset(DataSpec(name="mnist"))
    load_dataset(DataSpec(name="mnist"))
    assert calls == []
