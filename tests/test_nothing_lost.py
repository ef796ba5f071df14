"""Nothing lost, nothing hangs on the newer surfaces: a FIFO where aezoo reads a file is
refused without blocking, one corrupt run never hides the others, a damaged bench.json is
named, not overwritten (the "replace only when complete" cases of `data pack` and `export`
live with them: tests/test_data_pack.py, tests/test_export.py)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aezoo import fileio

Cli = Callable[..., Any]
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


def no_hang(call: Callable[[], Any], fifos: list[Path], seconds: float = 60) -> Any:
    """``call()``'s result; fails (after unblocking it) if it is still running after
    ``seconds``: it opened one of ``fifos`` and waits for a writer."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            out.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        for fifo in fifos:  # a writer that closes at once: the reader sees end-of-file
            with open(fifo, "wb"):
                pass
        worker.join(10)
        pytest.fail(f"blocked on a FIFO: {[f.name for f in fifos]}")
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def one_line(result: Any, code: int | None = None) -> str:
    """The CLI's single error line (asserting no traceback, no catch-all)."""
    text = result.output
    assert "Traceback" not in text and "unexpected" not in text, text
    if code is not None:
        assert result.exit_code == code, text
    else:
        assert result.exit_code != 0, text
    return text.strip().splitlines()[-1]


# --- the helpers themselves --------------------------------------------------------------


@needs_fifo
def test_the_regular_file_readers_refuse_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "x.json"
    os.mkfifo(fifo)
    for read in (fileio.open_regular, fileio.read_bounded, fileio.check_regular):
        with pytest.raises(fileio.NotRegularFileError, match="a FIFO, not a regular file"):
            no_hang(lambda read=read: read(fifo), [fifo])  # type: ignore[misc]
    with pytest.raises(fileio.NotRegularFileError, match="a directory"):
        fileio.read_bounded(tmp_path)
    (tmp_path / "big").write_bytes(b"x" * 101)
    with pytest.raises(OSError, match="larger than 100 bytes"):
        fileio.read_bounded(tmp_path / "big", 100)
    assert fileio.read_bounded(tmp_path / "big") == b"x" * 101


# --- runs and compare: one bad run is shown as bad -------------------------------------


def _run(root: Path, name: str, spec: dict[str, Any] | None = None,
         rows: list[Any] | None = None, status: dict[str, Any] | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    spec = spec if spec is not None else {"model": {"variant": "cae-upsample"},
                                          "data": {"name": "mnist5k"}, "train": {"epochs": 2}}
    (run / "run.json").write_text(json.dumps(spec))
    rows = rows if rows is not None else [
        {"epoch": 1, "train_loss": 0.3, "val_loss": 0.25, "seconds": 1.0},
        {"epoch": 2, "train_loss": 0.2, "val_loss": 0.2, "seconds": 1.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status is not None:
        (run / "status.json").write_text(json.dumps(status))
    return run


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("damage", ["variant-5", "data-list", "best-epoch-1.5",
                                    "seconds-1e308", "train-loss-x", "deep-spec",
                                    "epochs-true"])
def test_one_corrupt_run_never_breaks_runs_or_compare(tmp_path: Path, cli: Cli,
                                                      damage: str) -> None:
    root = tmp_path / "runs"
    good = _run(root, "good")
    spec: dict[str, Any] = {"model": {"variant": "cae-upsample"}, "data": {"name": "x"},
                            "train": {"epochs": 2}}
    rows = None
    status = None
    if damage == "variant-5":
        spec["model"]["variant"] = 5
    elif damage == "data-list":
        spec["data"] = {"name": ["a"]}
    elif damage == "best-epoch-1.5":
        status = {"outcome": "completed", "summary": {"best_epoch": 1.5, "epochs_done": 2.5,
                                                      "val_loss": 0.1, "seconds": 1}}
    elif damage == "seconds-1e308":
        rows = [{"epoch": 1, "seconds": 1e308, "val_loss": 0.3},
                {"epoch": 2, "seconds": 1e308, "val_loss": 0.3}]
        status = {"outcome": "stopped", "summary": {"seconds": 1e308}}
    elif damage == "train-loss-x":
        rows = [{"epoch": 1, "train_loss": "x", "val_loss": "y", "seconds": "z"}]
    elif damage == "deep-spec":
        spec["train"]["lr"] = json.loads(_deep(200))
    elif damage == "epochs-true":
        spec["train"]["epochs"] = True
    bad = _run(root, "bad", spec, rows, status)
    if status is not None:  # newer than metrics.jsonl: the summary is what is read
        os.utime(bad / "status.json", ns=(2**62, 2**62))
    for sort in ("name", "variant", "data", "epochs", "val_loss", "best_epoch", "time",
                 "params", "status"):
        for extra in ([], ["--filter", "cae*"], ["--json"]):
            result = cli("runs", str(root), "--sort", sort, *extra)
            assert result.exit_code == 0, (sort, extra, result.output)
            assert "good" in result.output
    compared = cli("compare", str(good), str(bad), "--no-picture")
    if compared.exit_code:
        line = one_line(compared, 2)
        assert "bad" in line and ("run.json" in line or "metrics.jsonl" in line)
    drawn = cli("compare", str(good), str(bad), "--out", str(tmp_path / "c.png"))
    assert drawn.exit_code == compared.exit_code, drawn.output


@needs_fifo
@pytest.mark.parametrize("name", ["status.json", "metrics.jsonl", "run.json"])
def test_a_fifo_in_a_run_directory_hangs_neither_runs_nor_compare(
        tmp_path: Path, cli: Cli, name: str) -> None:
    root = tmp_path / "runs"
    good = _run(root, "good")
    bad = _run(root, "bad")
    (bad / name).unlink(missing_ok=True)
    os.mkfifo(bad / name)
    listed = no_hang(lambda: cli("runs", str(root), "--json"), [bad / name])
    assert listed.exit_code == 0, listed.output
    got = {r["name"]: r["status"] for r in json.loads(listed.stdout)}
    assert got["good"] != "unreadable"
    if name == "metrics.jsonl":
        assert got["bad"] == "unreadable"
    compared = no_hang(lambda: cli("compare", str(good), str(bad), "--no-picture"),
                       [bad / name])
    if name == "status.json":
        assert compared.exit_code == 0, compared.output
    else:
        assert "not a regular file" in one_line(compared, 2) or name == "run.json"


# --- bench: settings recorded first, a damaged bench.json named ---------------------------


BENCH = ["bench", "cae-upsample", "--epochs", "1", "--limit", "32", "--batch-size", "32",
         "--device", "cpu", "--out", "B"]


def test_an_interrupted_bench_resumed_with_other_settings_is_refused(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aezoo.leaderboard

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the run trained, its numbers not yet recorded

    real = aezoo.leaderboard.evaluate_run
    monkeypatch.setattr(aezoo.leaderboard, "evaluate_run", killed)
    assert cli(*BENCH).exit_code == 130
    monkeypatch.setattr(aezoo.leaderboard, "evaluate_run", real)
    recorded = json.loads((tmp_path / "B/bench.json").read_text())
    assert recorded["settings"]["limit"] == 32 and recorded["runs"] == {}
    other = cli(*BENCH[:3], "2", *BENCH[4:5], "64", *BENCH[6:])
    assert "other settings (epochs 1 -> 2, limit 32 -> 64)" in one_line(other, 2)
    assert json.loads((tmp_path / "B/bench.json").read_text()) == recorded
    (tmp_path / "B/bench.json").unlink()  # runs without a record of their settings
    orphan = cli(*BENCH)
    assert "holds runs but no bench.json" in one_line(orphan, 2)
    assert cli(*BENCH, "--force").exit_code == 0


@pytest.mark.parametrize("body", ['{"settings": 5}', '{"runs": [1, 2]}',
                                  '{"settings": {}, "runs": {"a": 1}}', "[1, 2]",
                                  _deep(100_000), "{bad", "FIFO"])
def test_a_damaged_bench_json_is_named_and_kept(cli: Cli, tmp_path: Path, body: str) -> None:
    path = tmp_path / "B" / "bench.json"
    path.parent.mkdir()
    if body == "FIFO":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    else:
        path.write_text(body)
    result = no_hang(lambda: cli(*BENCH), [path])
    line = one_line(result, 2)
    assert line.startswith("error: cannot read B/bench.json (") and "delete it" in line
    assert body == "FIFO" or path.read_text() == body


# --- encode: latents and labels are one set ---------------------------------------------


def test_encode_force_never_leaves_old_labels_beside_new_latents(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from aezoo.outputs import write_latents

    out = tmp_path / "lat.npy"
    z = np.zeros((3, 4), np.float32)
    assert write_latents(out, z, [0, 1, 2]) == tmp_path / "lat.labels.npy"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "full")))
    with pytest.raises(OSError, match="full"):
        write_latents(out, z + 1, [2, 1, 0])
    monkeypatch.setattr(os, "fsync", real)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # both old
    assert write_latents(out, np.ones((5, 4), np.float32)) is None  # unlabelled now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lat.npy"]


# --- data: a FIFO where a file should be is refused, never opened for reading ----------


def _png(path: Path, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)
                    ).save(path)


@needs_fifo
def test_a_fifo_in_a_packed_store_hangs_neither_info_verify_nor_training(
        tmp_path: Path, cli: Cli) -> None:
    from aezoo.data import load_dataset
    from aezoo.errors import DataError
    from aezoo.specs import DataSpec

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            _png(tmp_path / "imgs" / cls / f"{i}.png", i)
    store = tmp_path / "store"
    assert cli("data", "pack", f"folder:{tmp_path / 'imgs'}", "--out", str(store)).exit_code == 0
    for name in ("train.labels.npy", "train.npy"):
        fifo = store / name
        fifo.rename(tmp_path / name)
        os.mkfifo(fifo)
        for args in (["data", "info", f"packed:{store}"], ["data", "verify", str(store)]):
            result = no_hang(lambda args=args: cli(*args), [fifo])
            assert "a FIFO, not a regular file" in one_line(result, 1), args
        with pytest.raises(DataError, match="a FIFO, not a regular file"):
            no_hang(lambda: load_dataset(DataSpec(name=f"packed:{store}")), [fifo])
        fifo.unlink()
        (tmp_path / name).rename(fifo)


@needs_fifo
def test_a_fifo_as_a_shard_an_hf_image_or_a_streamed_image_is_refused(
        tmp_path: Path, cli: Cli) -> None:
    from aezoo_datasets.hf import HFImages

    from aezoo.data.stream_folder import FolderStream, PathTable
    from aezoo.errors import DataError

    fifo = tmp_path / "s.tar"
    os.mkfifo(fifo)
    result = no_hang(lambda: cli("data", "info", f"wds:{fifo}"), [fifo])
    assert "a FIFO, not a regular file" in one_line(result, 1)
    image = tmp_path / "x.png"
    os.mkfifo(image)
    rows = HFImages([{"image": {"bytes": None, "path": str(image)}}], "image", "hf:x train",
                    (8, 8), 1)
    with pytest.raises(DataError, match="a FIFO, not a regular file"):
        no_hang(lambda: rows[0], [image])
    stream = FolderStream(PathTable([str(image)]), (8, 8), 1)
    with pytest.raises(DataError, match="a FIFO, not a regular file"):
        no_hang(lambda: stream[0], [image])


# --- the catch-all, eliminated: score's JSON, the batch API, completion, sample, names --


def test_score_json_of_a_nan_model_is_valid_json(cli: Cli, tmp_path: Path) -> None:
    import torch

    import aezoo

    model = aezoo.build("cae-upsample")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    aezoo.save(model, tmp_path / "nan.safetensors")
    result = cli("score", str(tmp_path / "nan.safetensors"), "--limit", "8", "--device",
                 "cpu", "--out", "s.json")
    assert result.exit_code == 0, result.output

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    scores = json.loads((tmp_path / "s.json").read_text(), parse_constant=refuse)
    assert all(row["score"] is None for row in scores["rows"])


def test_the_batch_api_answers_bad_input_with_aezoos_errors() -> None:
    import numpy as np
    import torch

    import aezoo
    from aezoo.errors import ShapeError, UsageError

    model = aezoo.build("cae-upsample").eval()
    images = np.zeros((3, 1, 28, 28), np.uint8)
    codes = model.encode(images)
    decoded = model.decode(codes)  # numpy in, numpy out
    assert isinstance(decoded, np.ndarray) and decoded.shape == (3, 1, 28, 28)
    assert torch.equal(model.decode(torch.from_numpy(codes)), torch.from_numpy(decoded))
    with pytest.raises(UsageError, match="codes of dtype int64 cannot be decoded"):
        model.decode(codes.astype(np.int64))
    with pytest.raises(UsageError, match="codes of dtype int64 cannot be decoded"):
        model.decode(torch.from_numpy(codes.astype(np.int64)))
    with pytest.raises(UsageError, match="got a list"):
        model.decode(codes.tolist())
    with pytest.raises(ShapeError, match="decodes"):
        model.decode(codes[:, :1])
    for bad in (2.5, "2", True):
        with pytest.raises(UsageError, match="batch_size must be a whole number"):
            model.encode(images, batch_size=bad)
    assert model.encode(images, batch_size=np.int64(2)).shape == codes.shape


@pytest.mark.parametrize("cword", ["x", "", "-1", "99", "1e3"])
def test_completion_with_a_malformed_word_index_is_one_line(cword: str) -> None:
    import subprocess
    import sys

    env = {**os.environ, "_AEZOO_COMPLETE": "complete_bash", "COMP_WORDS": "aezoo tr",
           "COMP_CWORD": cword}
    result = subprocess.run([sys.executable, "-c", "from aezoo.cli import main; main()"],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: COMP_CWORD is ")


def test_sample_n_0_and_a_300_character_dataset_name(cli: Cli, tmp_path: Path) -> None:
    import aezoo

    aezoo.save(aezoo.build("cae-vae"), tmp_path / "vae.safetensors")
    zero = cli("sample", str(tmp_path / "vae.safetensors"), "--n", "0", "--out", "s.png")
    assert one_line(zero, 2).endswith("pass at least 1")
    long = cli("data", "info", "x" * 300)
    assert "unknown dataset 'xxx" in one_line(long, 2)
