"""The run directory's files written off the training thread, in order, all in place when
``fit`` returns; and the safetensors bytes (the library's own) aezoo writes."""

from __future__ import annotations

import errno
import json
import struct
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

from aezoo import fileio
from aezoo._safetensors import encode_tensors
from aezoo.config import build_run_spec
from aezoo.errors import AezooError
from aezoo.run import train
from aezoo.rundir import BEST_FILE, LAST_FILE, METRICS_JSONL, STATE_FILE
from aezoo.training.background import BackgroundWriter
from aezoo.training.hooks import Callback


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(16, 1, 3, 3, generator=g), "b": torch.randn(16, generator=g),
            "half": torch.randn(3, 4, generator=g).half(),
            "bf": torch.randn(5, generator=g).bfloat16(), "i64": torch.arange(7),
            "u8": torch.arange(9, dtype=torch.uint8), "flag": torch.tensor([True, False]),
            "scalar": torch.tensor(3.5), "empty": torch.zeros(0, 4),
            "strided": torch.randn(4, 6, generator=g).t(),
            "f64": torch.randn(3, dtype=torch.float64, generator=g),
            "i16": torch.arange(5, dtype=torch.int16), "i8": torch.arange(-3, 3, dtype=torch.int8),
            "i32": torch.arange(4, dtype=torch.int32)}


@pytest.mark.parametrize("metadata", [{}, {"format": "pt"}])
def test_encoded_tensors_are_the_safetensors_librarys_own_bytes(metadata: dict[str, str]) -> None:
    tensors = _tensors()
    ours = encode_tensors(tensors, metadata)
    assert ours == save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata or None)
    back = load(ours)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor)


def test_encoded_tensors_with_several_metadata_keys_read_back() -> None:
    # The library orders metadata by a hash map, so only the content can be compared.
    metadata = {"format": "pt", "aezoo.spec": '{"name": "é"}', "z": "1"}
    one = {"aezoo.spec": '{"name": "é"}'}  # non-ASCII: raw UTF-8, as the library writes it
    assert encode_tensors(_tensors(), one) == save(
        {k: v.contiguous() for k, v in _tensors().items()}, metadata=one)
    ours = encode_tensors(_tensors(), metadata)
    length = struct.unpack("<Q", ours[:8])[0]
    assert length % 8 == 0
    assert json.loads(ours[8:8 + length])["__metadata__"] == metadata
    assert set(load(ours)) == set(_tensors())


def test_tensors_sharing_memory_are_each_written_whole() -> None:
    """Tied weights (one storage under several names), which the library refuses, are
    written as copies of their own and read back equal."""
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    tensors = {"tied.a": w, "tied.b": w, "slice": w[1:3], "t": w.t(), "empty": w[:0]}
    back = load(encode_tensors(tensors, {"format": "pt"}))
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        assert torch.equal(back[name], tensor)
    assert w.untyped_storage().nbytes() == 4 * 6 * 4  # the caller's tensors are untouched


def test_writer_runs_jobs_in_order_off_the_calling_thread() -> None:
    writer, seen = BackgroundWriter(max_pending=2), []

    def job(i: int) -> None:
        time.sleep(0.002 * (i % 3))
        seen.append((i, threading.current_thread().name))

    for i in range(10):
        writer.submit(lambda i=i: job(i))
    writer.drain()
    assert [i for i, _ in seen] == list(range(10))
    assert {name for _, name in seen} == {"aezoo-writer"}
    writer.close()
    writer.submit(lambda: seen.append((10, "again")))  # a closed writer starts anew
    writer.close()
    assert seen[-1] == (10, "again")


def test_a_failed_write_is_raised_once_and_the_writes_after_it_still_run() -> None:
    writer, ran = BackgroundWriter(), []
    gate = threading.Event()

    def fail() -> None:
        gate.wait(5)
        raise OSError(errno.ENOSPC, "No space left on device")

    writer.submit(fail)
    writer.submit(lambda: ran.append("after"))  # stands alone: still written
    gate.set()
    with pytest.raises(OSError, match="No space"):
        writer.drain()
    assert ran == ["after"]
    writer.drain()  # raised once
    assert writer.close() is None
    writer.hold()  # the end-of-run hooks: the error waits for close, which returns it
    writer.submit(fail)
    writer.drain()
    writer.submit(lambda: ran.append("held"))
    error = writer.close()
    assert isinstance(error, OSError) and ran == ["after", "held"]


def test_a_job_that_hands_over_a_write_runs_it_inline_without_deadlock() -> None:
    writer, ran = BackgroundWriter(max_pending=1), []

    def outer() -> None:
        writer.submit(lambda: ran.append("inner"))  # from the writer's own thread
        writer.drain()  # cannot wait for itself: returns
        ran.append("outer")

    writer.submit(outer)
    assert writer.close() is None
    assert ran == ["inner", "outer"]


def _spec(epochs: int = 3):  # type: ignore[no-untyped-def]
    return build_run_spec("cae-upsample", [{"data": {"limit": 64},
                                            "train": {"epochs": epochs, "device": "cpu",
                                                      "batch_size": 32}}])


def test_pictures_are_written_off_the_training_thread_and_in_place_when_fit_returns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, writer_of = fileio.atomic_write_many, {}

    def recording(writes):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "aezoo-writer":
            time.sleep(0.01)  # a slow disk: the training thread must not wait for it
        for path, _ in writes:
            writer_of[Path(path).name] = threading.current_thread().name
        real(writes)

    monkeypatch.setattr(fileio, "atomic_write_many", recording)
    for module in ("aezoo._safetensors", "aezoo.callbacks.files"):
        monkeypatch.setattr(f"{module}.atomic_write_many", recording)
    train(_spec(), tmp_path / "run")
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / METRICS_JSONL).read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for name in ("images/curves.png", "images/epoch-0003.png", "status.json"):
        assert (run / name).is_file(), name
        assert writer_of[Path(name).name] == "aezoo-writer"
    assert json.loads((run / "status.json").read_text())["outcome"] == "completed"
    for name in (BEST_FILE, LAST_FILE, STATE_FILE, METRICS_JSONL):  # durable at epoch end
        assert writer_of[name] == "MainThread"
    assert not [t for t in threading.enumerate() if t.name == "aezoo-writer"]  # closed


def test_a_picture_that_fails_in_the_background_fails_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = fileio.atomic_write_many

    def full(writes):  # type: ignore[no-untyped-def]
        if writes[0][0].suffix == ".png":
            raise OSError(errno.ENOSPC, "No space left on device", str(writes[0][0]))
        real(writes)

    monkeypatch.setattr(fileio, "atomic_write_many", full)
    with pytest.raises(AezooError, match=r"cannot write .*\.png \(No space left on device\)"):
        train(_spec(), tmp_path / "run")
    assert not (tmp_path / "run" / "model.safetensors").exists()  # it failed, not finished


def test_the_runs_own_error_wins_over_a_pending_write_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = threading.Event()

    def full() -> None:
        failed.set()
        raise OSError(errno.ENOSPC, "No space left on device")

    class Boom(Callback):
        def on_epoch_end(self, trainer, result):  # type: ignore[no-untyped-def]
            trainer.files.submit(full)
            failed.wait(5)
            time.sleep(0.05)  # the write has failed; its error waits for a hand-over
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as caught:
        train(_spec(), tmp_path / "run", callbacks=[Boom()])
    assert caught.value.__context__ is None  # not raised while handling a write error
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["outcome"] == "failed"  # on_train_end still wrote it


def test_a_last_picture_that_fails_still_lets_every_end_of_run_hook_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real, ended = fileio.atomic_write_many, []

    def full(writes):  # type: ignore[no-untyped-def]
        if writes[0][0].name == "epoch-0003.png":  # the last epoch's, failing once every
            time.sleep(0.3)  # other hand-over of the epoch is made: pending at the end
            raise OSError(errno.ENOSPC, "No space left on device", str(writes[0][0]))
        real(writes)

    class Last(Callback):
        def on_train_end(self, trainer):  # type: ignore[no-untyped-def]
            ended.append(str(trainer.outcome))

    monkeypatch.setattr(fileio, "atomic_write_many", full)
    with pytest.raises(AezooError, match=r"cannot write .*epoch-0003\.png"):
        train(_spec(), tmp_path / "run", callbacks=[Last()])
    assert ended == ["completed"]
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["outcome"] == "completed" and status["epochs_done"] == 3
