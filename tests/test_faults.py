"""Faults: a save killed half-way, a full disk, a read-only run directory.

Nothing saved may be lost: after each fault the previous files load and hold exactly what
was saved before. Mount-based tests need root and ``mount`` (a tmpfs: a small disk, or a
read-only one); they are skipped where that is not allowed. Without root, chmod is used
for the read-only case instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import aezoo
import aezoo.rundir
from aezoo.callbacks import Callback
from aezoo.errors import AezooError, CheckpointError, UsageError

ROOT = Path(__file__).resolve().parents[1]


# --- helpers --------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(point: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A fresh tmpfs at ``point``; skips the test where mounting is not allowed."""
    point.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()})")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def remount_read_only(point: Path) -> None:
    done = subprocess.run(["mount", "-o", "remount,ro", str(point)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"remounting read-only is not permitted here ({done.stderr.strip()})")


def fill(directory: Path) -> Path:
    """Fill the file system holding ``directory`` to the last byte."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        chunk = 1 << 16
        while chunk:
            try:
                f.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    return filler


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "filler"}


def constant_of(model: Any) -> float:
    """The single value every parameter of ``model`` holds (the saved 'version')."""
    values = torch.cat([p.detach().flatten() for p in model.parameters()]).unique()
    assert values.numel() == 1, "a model mixing two saved versions"
    return float(values.item())


# --- a process killed during a save ------------------------------------------------------

_SAVER = textwrap.dedent("""
    import os, sys, time
    import torch, aezoo

    target, mode = sys.argv[1], sys.argv[2]
    model = aezoo.build("cae-upsample", encoder_params={"channels": [128, 64, 32]},
                        decoder_params={"channels": [32, 64, 128]})  # ~0.5 MB of weights

    def fill(value):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)

    fill(1.0)
    aezoo.save(model, target)
    print("saved 1", flush=True)
    real_fdopen, real_fsync = os.fdopen, os.fsync

    if mode == "mid-write":  # write half the bytes of version 2, then hang
        class Half:
            def __init__(self, f): self.f = f
            def __enter__(self): return self
            def __exit__(self, *a): return self.f.__exit__(*a)
            def write(self, data):
                self.f.write(data[: len(data) // 2]); self.f.flush()
                print("mid-write", flush=True); time.sleep(60)
            def __getattr__(self, name): return getattr(self.f, name)
        os.fdopen = lambda *a, **k: Half(real_fdopen(*a, **k))
    elif mode == "before-rename":  # written and synced, not yet renamed
        def fsync(fd):
            real_fsync(fd); print("before-rename", flush=True); time.sleep(60)
        os.fsync = fsync
    if mode in ("mid-write", "before-rename"):
        fill(2.0)
        aezoo.save(model, target)
    else:  # "loop": save versions 2, 3, ... as fast as possible until killed
        version = 1
        while True:
            version += 1
            fill(float(version))
            aezoo.save(model, target)
            print(f"saved {version}", flush=True)
""")


def _kill_saver(tmp_path: Path, mode: str, after: str, delay: float = 0.0) -> tuple[Path, int]:
    """Start a saver, wait for the line ``after``, SIGKILL it; (target, last version saved)."""
    target = tmp_path / "model.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(target), mode],
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    assert proc.stdout is not None
    last = 0
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if line.startswith("saved "):
                last = int(line.split()[1])
            if line.strip() == after or (after == "saved N" and last >= 3):
                break
            assert time.monotonic() < deadline, "the saver never got there"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        for line in proc.stdout:  # saves that completed before the kill landed
            if line.startswith("saved "):
                last = int(line.split()[1])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return target, last


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "after"), [("mid-write", "mid-write"),
                                             ("before-rename", "before-rename")])
def test_kill_during_a_save_keeps_the_previous_file(tmp_path: Path, mode: str,
                                                    after: str) -> None:
    target, last = _kill_saver(tmp_path, mode, after)
    assert last == 1
    assert constant_of(aezoo.load(target)) == 1.0  # the previous version, whole
    # The half-written temp file is hidden and harmless; the next save just works.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != target.name]
    assert all(n.startswith(".model.safetensors.") and n.endswith(".tmp") for n in leftovers)
    model = aezoo.load(target)
    aezoo.save(model, target)
    assert constant_of(aezoo.load(target)) == 1.0


@pytest.mark.slow
def test_kill_at_a_random_moment_of_repeated_saves(tmp_path: Path) -> None:
    target, last = _kill_saver(tmp_path, "loop", "saved N", delay=random.uniform(0, 0.3))
    version = constant_of(aezoo.load(target))
    # The file is one whole version: the last completed one, or the one whose rename
    # landed just before the kill (its "saved" line never printed).
    assert version in (float(last), float(last + 1)), (version, last)


# --- a full disk ------------------------------------------------------------------------


def test_full_disk_on_save_is_a_clear_error_and_keeps_the_previous_file(
        tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "1m") as disk:
        target = disk / "model.safetensors"
        first = aezoo.build("cae-upsample")
        aezoo.save(first, target)
        before = target.read_bytes()
        fill(disk)
        with pytest.raises(CheckpointError) as info:
            aezoo.save(aezoo.build("cae-strided"), target)
        assert "No space left on device" in str(info.value) and "model.safetensors" in str(
            info.value)
        assert target.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "model.safetensors"]
        loaded = aezoo.load(target)
        assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                     loaded.state_dict().values(), strict=True))


def test_full_disk_is_refused_before_training(tmp_path: Path, cli: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.training import Trainer

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("training started on a full disk")

    monkeypatch.setattr(Trainer, "fit", no_training)
    with tmpfs(tmp_path / "small", "256k") as disk:
        fill(disk)
        result = cli("train", "cae-upsample", "--out", str(disk / "run"), "--device", "cpu")
        assert result.exit_code == 2, result.output
        assert "No space left on device" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


class FillDiskAt(Callback):
    """Fills the disk at the end of epoch ``epoch`` (after the metrics, before checkpoints)."""

    def __init__(self, directory: Path, epoch: int) -> None:
        self.directory, self.epoch = directory, epoch

    def on_epoch_end(self, trainer: Any, result: Any) -> None:
        if result.epoch == self.epoch:
            fill(self.directory)


@pytest.mark.slow
def test_disk_filling_up_mid_run_fails_clearly_keeps_checkpoints_and_resumes(
        tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills at the end of epoch 2: one red line; epoch 1's checkpoints intact;
    once space is freed, --resume finishes the run."""
    import aezoo.run

    with tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "run"
        real = aezoo.run.run_callbacks

        def with_filler(spec: Any, out_dir: Path, extra: Any = ()) -> list[Any]:
            return real(spec, out_dir, [*extra, FillDiskAt(disk, 2)])

        monkeypatch.setattr(aezoo.run, "run_callbacks", with_filler)
        args = ["train", "cae-upsample", "--out", str(out), "--epochs", "3", "--limit", "256",
                "--batch-size", "64", "--device", "cpu", "--no-images"]
        result = cli(*args)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
        assert "unexpected" not in lines[0]
        assert not (out / "model.safetensors").exists()
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
                   if line.strip()]
        assert history and history[0]["epoch"] == 1
        last = aezoo.load(out / "last.safetensors")  # a whole model, from epoch 1 or 2
        assert last.num_parameters() == 4385
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

        monkeypatch.setattr(aezoo.run, "run_callbacks", real)
        (disk / "filler").unlink()
        result = cli("train", "--resume", str(out))
        assert result.exit_code == 0, result.output
        final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in final] == [1, 2, 3]
        assert aezoo.load(out / "model.safetensors").num_parameters() == 4385


# --- a read-only run directory ----------------------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nothing can be written to: a read-only tmpfs as root, chmod otherwise."""
    if os.geteuid() != 0:
        path = tmp_path / "ro"
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as path:
        yield path


def test_read_only_out_dir_is_refused_before_anything_loads(
        read_only_dir: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import aezoo.run

    def no_data(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the dataset was loaded for a run that cannot be saved")

    monkeypatch.setattr(aezoo.run, "load_dataset", no_data)
    for out in (read_only_dir, read_only_dir / "new-run"):
        start = time.perf_counter()
        result = cli("train", "cae-upsample", "--out", str(out), "--device", "cpu")
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(read_only_dir) in lines[0], result.stderr
        assert "not writable" in lines[0] or "cannot create" in lines[0]
        assert time.perf_counter() - start < 30  # refused up front, not after training
    with pytest.raises(UsageError, match="not writable"):
        aezoo.rundir.prepare_out_dir(read_only_dir, force=False)


def test_a_full_disk_fools_os_access_but_not_the_probe(tmp_path: Path) -> None:
    """The bug this guards: os.access(W_OK) says yes to a directory on a full disk (and,
    for root, to any directory whatever its mode), so a run would fail at its first save."""
    from aezoo.rundir import check_writable

    with tmpfs(tmp_path / "small", "256k") as disk:
        fill(disk)
        assert os.access(disk, os.W_OK)  # the lie
        with pytest.raises(UsageError, match="No space left on device"):
            check_writable(disk)
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_read_only_dir_is_refused_by_the_probe(read_only_dir: Path) -> None:
    from aezoo.rundir import check_writable

    with pytest.raises(UsageError, match="not writable"):
        check_writable(read_only_dir)
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.slow
def test_resume_into_a_run_dir_gone_read_only_is_refused_before_training(
        tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "run"
        result = cli("train", "cae-upsample", "--out", str(out), "--epochs", "1", "--limit",
                     "128", "--batch-size", "64", "--device", "cpu", "--no-images")
        assert result.exit_code == 0, result.output
        (out / "model.safetensors").unlink()  # as if it had been interrupted after epoch 1
        before = snapshot(out)
        remount_read_only(disk)

        from aezoo.training import Trainer

        def no_training(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("training started in a read-only run dir")

        monkeypatch.setattr(Trainer, "fit", no_training)
        result = cli("train", "--resume", str(out), "--epochs", "2")
        assert result.exit_code == 2, result.output
        assert "not writable (Read-only file system)" in result.stderr
        assert snapshot(out) == before


def test_save_to_read_only_dir_is_a_checkpoint_error(read_only_dir: Path) -> None:
    with pytest.raises(AezooError, match="cannot write"):
        aezoo.save(aezoo.build("cae-upsample"), read_only_dir / "m.safetensors")
    assert list(read_only_dir.iterdir()) == []


# --- a training process killed (power loss, OOM killer) ----------------------------------


@pytest.mark.slow
def test_training_killed_with_sigkill_keeps_a_resumable_run(tmp_path: Path, cli: Any) -> None:
    """No handler runs on SIGKILL: whatever was written last must still be whole."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("AEZOO_DEBUG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "aezoo", "train", "cae-upsample", "--out", str(out), "--epochs",
         "4", "--limit", "1024", "--batch-size", "64", "--device", "cpu", "--no-images",
         "--checkpoint-every", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "state.safetensors").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(random.uniform(0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert aezoo.load(out / "last.safetensors").num_parameters() == 4385
    if (out / "model.safetensors").exists():  # it finished before the kill landed
        return
    result = cli("train", "--resume", str(out))
    assert result.exit_code == 0, result.output
    epochs = [json.loads(line)["epoch"]
              for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]
    assert aezoo.load(out / "model.safetensors").num_parameters() == 4385
