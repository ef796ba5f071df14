"""Seeing runs: curves.png, the end-of-training summary, `aezoo runs`, `aezoo compare`."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import aezoo
from aezoo import curves
from aezoo.config import build_run_spec
from aezoo.records import list_runs, read_run, spec_diff

Cli = Callable[..., Any]


def rows(n: int, terms: bool = False) -> list[dict[str, Any]]:
    out = []
    for e in range(1, n + 1):
        row: dict[str, Any] = {"epoch": e, "train_loss": 0.3 * math.exp(-e / 8) + 0.1,
                               "val_loss": 0.28 * math.exp(-e / 9) + 0.105,
                               "lr": 1e-3 * (1 + math.cos(math.pi * e / n)) / 2}
        if terms:
            row |= {"train_kl": 0.01 * e, "val_kl": 0.011 * e, "val_recon": 0.2}
        out.append(row)
    return out


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def colors_of(data: bytes) -> set[tuple[int, int, int]]:
    return {c for _, c in decode(data).convert("RGB").getcolors(1 << 20) or []}


def legend_of(fig: Any) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_curves_picture_decodes_and_changes_with_each_epoch() -> None:
    first = curves.png_bytes(curves.run_curves(rows(5), title="runs/x"))
    second = curves.png_bytes(curves.run_curves(rows(6), title="runs/x"))
    image = decode(first)
    assert image.format == "PNG" and image.width == curves.WIDTH
    assert curves.HEIGHT < image.height < curves.HEIGHT + 40  # one legend row below
    assert first != second
    colors = colors_of(second)
    assert rgb(curves.PALETTE[0]) in colors and rgb(curves.PALETTE[1]) in colors  # train, val
    assert rgb(curves.MARK) in colors  # the best epoch is marked


def test_curves_terms_lr_axis_and_log_scale() -> None:
    fig = curves.run_curves(rows(10, terms=True))
    assert decode(curves.png_bytes(fig)).height > curves.HEIGHT + 20  # two legend rows
    best = rows(10)[-1]["val_loss"]  # falling: the last epoch is the best
    assert legend_of(fig) == ["train_loss", "val_loss", "train_kl", "val_kl", "val_recon",
                              f"best epoch 10: val_loss {best:.5f}", "lr"]
    loss, lr = fig.axes  # one panel (kl and recon are on the loss's scale), lr on a twin
    assert loss.get_yscale() == "log"  # kl 0.01 .. loss 0.4: spans over 20x
    assert lr.get_ylabel() == "lr" and loss.get_xlabel() == "epoch"
    chosen = curves.run_curves(rows(10), best_epoch=3)  # the run's best by train.monitor
    assert f"best epoch 3: val_loss {rows(10)[2]['val_loss']:.5f}" in legend_of(chosen)
    assert decode(fig._repr_png_()).width == curves.WIDTH  # what a notebook shows
    constant = curves.run_curves([dict(r, lr=0.001) for r in rows(4)])
    assert len(constant.axes) == 1  # no lr axis: the rate is named in the legend
    assert legend_of(constant)[-1] == "lr 0.001 (constant)"
    assert curves.log_scale([0.01, 1.0])  # spans 100x: log
    assert not curves.log_scale([0.1, 0.2])
    assert not curves.log_scale([0.0, 1.0])  # zero cannot be logged


@pytest.mark.parametrize("case", ["one-epoch", "nan", "empty", "flat"])
def test_curves_draw_odd_histories(case: str) -> None:
    history = {"one-epoch": rows(1), "empty": [],
               "nan": [dict(r, val_loss=math.nan if r["epoch"] == 3 else r["val_loss"],
                            train_loss=math.inf if r["epoch"] == 4 else r["train_loss"])
                       for r in rows(6)],
               "flat": [dict(r, train_loss=0.5, val_loss=0.5, lr=0.001) for r in rows(4)]}[case]
    decode(curves.png_bytes(curves.run_curves(history)))
    decode(curves.png_bytes(curves.overlay_curves({"a": history, "b": rows(3)})))


def test_the_overlay_names_each_runs_own_best_epoch() -> None:
    fig = curves.overlay_curves({"a": rows(5), "b": rows(5)}, best_epochs={"a": 2, "b": None})
    a, b = legend_of(fig)
    assert a == f"a  (best epoch 2: {rows(5)[1]['val_loss']:.5f})"  # by a's train.monitor
    assert b == f"b  (best epoch 5: {rows(5)[4]['val_loss']:.5f})"  # the lowest val_loss


def test_curves_are_redrawn_at_most_every_interval_and_at_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.callbacks.curves import CurvesWriter
    from aezoo.training.hooks import EpochResult

    drawn: list[int] = []  # the epochs of each drawing
    monkeypatch.setattr(curves, "run_curves",
                        lambda r, title="", best=None: drawn.append(len(r)) or r)
    monkeypatch.setattr(curves, "write_picture", lambda path, picture: path)
    now = [100.0]
    monkeypatch.setattr("aezoo.callbacks.curves.time.monotonic", lambda: now[0])

    class Files:
        def submit(self, job: Callable[[], object]) -> None:
            job()

    class Trainer:
        history: list[EpochResult] = []
        files = Files()
        spec = types.SimpleNamespace(monitor="val_loss")
        mode = "min"

    trainer: Any = Trainer()
    writer = CurvesWriter(tmp_path / "run", interval=5.0)
    writer.on_train_start(trainer)
    for epoch in range(1, 13):  # one epoch a second
        now[0] += 1.0
        result = EpochResult(epoch, 0.5, 0.4, 1.0, 100.0, 1e-3)
        trainer.history.append(result)
        writer.on_epoch_end(trainer, result)
    assert drawn == [5, 10]  # every 5 s, not every epoch
    writer.on_train_end(trainer)
    assert drawn == [5, 10, 12]  # the end: every epoch
    writer.on_train_end(trainer)
    assert drawn == [5, 10, 12]  # nothing new: not drawn again


def test_plot_draws_a_run_on_demand(trained: Path, cli: Cli, tmp_path: Path) -> None:
    figure = aezoo.plot(trained)  # a matplotlib Figure; nothing written
    code = f"import sys, aezoo; aezoo.plot({str(trained)!r}); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False"]  # metrics.jsonl only
    assert figure.axes[0].get_title() == "done" and not (tmp_path / "c.png").exists()
    result = cli("plot", str(trained), "--out", "c.png")
    assert result.exit_code == 0 and "wrote c.png" in result.stdout
    assert decode((tmp_path / "c.png").read_bytes()).width == curves.WIDTH
    again = cli("plot", str(trained), "--out", "c.png")
    assert again.exit_code == 2 and "c.png already exists" in again.output
    own = trained / "images" / "curves.png"
    own.unlink()
    result = cli("plot", str(trained))  # the run's own picture, redrawn in place
    assert result.exit_code == 0 and own.exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "run.json").write_text((trained / "run.json").read_text())
    empty = cli("plot", str(fresh))
    assert empty.exit_code == 2 and "has no finished epoch yet: nothing to plot" in empty.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aezoo.run import train

    out = tmp_path_factory.mktemp("see") / "runs" / "done"
    spec = build_run_spec("cae-upsample", [{"data": {"limit": 64}, "train": {
        "epochs": 2, "batch_size": 32, "device": "cpu", "scheduler": "cosine"}}])
    train(spec, out)
    return out


def test_a_run_draws_its_curves_and_says_where_everything_is(cli: Cli, tmp_path: Path
                                                             ) -> None:
    result = cli("train", "cae-upsample", "--limit", "64", "--batch-size", "32", "--epochs",
                 "2", "--device", "cpu", "--scheduler", "cosine", "--out", "run")
    assert result.exit_code == 0, result.output
    picture = decode((tmp_path / "run/images/curves.png").read_bytes())
    assert picture.width == curves.WIDTH
    out = result.stdout
    assert "epoch 2/2" in out and "  lr " in out  # a schedule: the rate on the epoch line
    assert "best epoch " in out and "run/best.safetensors" in out
    assert "run/images/curves.png" in out and "run/images/epoch-0002.png" in out
    assert "aezoo eval run" in out and "aezoo reconstruct run" in out
    status = json.loads((tmp_path / "run/status.json").read_text())
    assert status["outcome"] == "completed" and status["params"] == 4385
    result = cli("train", "cae-upsample", "--limit", "32", "--batch-size", "32", "--epochs",
                 "1", "--device", "cpu", "--no-images", "--out", "plain")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "plain/images").exists()
    assert "  lr " not in result.stdout  # no schedule: the rate never changes


def test_load_takes_a_run_directory(trained: Path) -> None:
    model = aezoo.load(trained)
    assert model.spec.variant == "cae-upsample"
    assert aezoo.load(trained).state_dict().keys() == model.state_dict().keys()


def fake_runs(trained: Path, root: Path) -> dict[str, str]:
    """Runs in every state from one real run: the expected status of each."""
    shutil.copytree(trained, root / "done")
    expected = {"done": "completed"}
    for name, outcome in (("stopped-early", "stopped"), ("diverged", "diverged"),
                          ("interrupted", "interrupted"), ("killed", "running"),
                          ("old-interrupted", None), ("running", "running")):
        run = root / "group" / name
        shutil.copytree(trained, run)
        if outcome in ("diverged", "interrupted", "running", None):
            (run / "model.safetensors").unlink()
        status = run / "status.json"
        if outcome is None:
            status.unlink()
        else:
            status.write_text(json.dumps({**json.loads(status.read_text()),
                                          "outcome": outcome}))
        expected[f"group/{name}"] = {"killed": "interrupted",
                                     "old-interrupted": "interrupted"}.get(name, outcome or "")
    return expected


def test_runs_reports_every_status_and_never_imports_torch(trained: Path, tmp_path: Path
                                                           ) -> None:
    root = tmp_path / "runs"
    expected = fake_runs(trained, root)
    (root / "group/killed/.aezoo.lock").write_text("999999")  # a stale lock: nobody holds it
    holder = subprocess.Popen(  # another process holds group/running's lock, as training does
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from aezoo.rundir import RunLock; RunLock(Path(sys.argv[1])).acquire(); "
         "print('held', flush=True); time.sleep(60)", str(root / "group/running")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        probe = ("import json, sys\nfrom aezoo.cli import app\n"
                 "try:\n    app(['runs', sys.argv[1], '--json'], standalone_mode=False)\n"
                 "except SystemExit as exc:\n    assert not exc.code\n"
                 "print('TORCH', 'torch' in sys.modules)")
        result = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True,
                                text=True, timeout=120, check=False)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 0, result.stderr
    listed, torch_line = result.stdout.strip().splitlines()
    assert torch_line == "TORCH False"
    got = {r["name"]: r["status"] for r in json.loads(listed)}
    assert got == expected
    done = next(r for r in json.loads(listed) if r["name"] == "done")
    assert done["epochs_done"] == done["epochs"] == 2 and done["params"] == 4385
    assert done["best_epoch"] in (1, 2) and done["val_loss"] > 0
    # After the holder is gone the lock is stale: the run is no longer running.
    assert read_run(root / "group/running").status == "interrupted"


def test_runs_table_sort_and_filter(trained: Path, cli: Cli, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    fake_runs(trained, root)
    (root / "broken").mkdir()
    (root / "broken/run.json").write_text("{not json")
    monkeypatch.setenv("COLUMNS", "160")  # every column (80: test_runs_table_fits_80_columns)
    result = cli("runs", str(root), "--sort", "status")
    assert result.exit_code == 0, result.output
    for word in ("group/old-interrupted", "cae-upsample", "mnist5k", "2/2", "diverged",
                 "unreadable", "4,385"):
        assert word in result.stdout, word
    names = [r.name for r in list_runs(root, "stop")]
    assert names == ["group/stopped-early"]
    assert [r.name for r in list_runs(root, "cae-*")][:1] == ["done"]
    assert len(list_runs(root, "nothing-like-this")) == 0
    bad = cli("runs", str(root), "--sort", "colour")
    assert bad.exit_code == 2 and "cannot sort by 'colour'" in bad.output
    missing = cli("runs", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "is not a directory" in missing.output


def test_compare_shows_exactly_the_differing_keys(trained: Path, cli: Cli, tmp_path: Path
                                                  ) -> None:
    other = tmp_path / "other"
    shutil.copytree(trained, other)
    spec = json.loads((other / "run.json").read_text())
    spec["train"]["lr"] = 0.01
    spec["model"]["encoder"]["params"]["channels"] = [8, 8, 8]
    (other / "run.json").write_text(json.dumps(spec))
    assert [k for k, _ in spec_diff([json.loads((trained / "run.json").read_text()), spec])
            ] == ["model.encoder.params.channels", "train.lr"]
    result = cli("compare", str(trained), str(other), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["differences"]) == {"model.encoder.params.channels", "train.lr"}
    assert report["differences"]["train.lr"][1] == 0.01
    assert decode((tmp_path / "compare.png").read_bytes()).width == curves.WIDTH
    table = cli("compare", str(trained), str(other), "--force")
    assert table.exit_code == 0, table.output
    assert "train.lr" in table.stdout and "best val_loss" in table.stdout
    assert "train.epochs" not in table.stdout  # equal keys are not shown
    again = cli("compare", str(trained), str(other))
    assert again.exit_code == 2 and "already exists" in again.output
    one = cli("compare", str(trained))
    assert one.exit_code == 2 and "at least two runs" in one.output
    nope = cli("compare", str(trained), str(tmp_path))
    assert nope.exit_code == 2 and "not a run directory" in nope.output


def test_runs_is_quick_on_many_runs(trained: Path, tmp_path: Path, cli: Cli,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a timing test (benchmarks/runs.py times 1,000): each run costs a few small reads.
    for i in range(30):
        run = tmp_path / f"r{i:03d}"
        run.mkdir()
        for name in ("run.json", "metrics.jsonl", "status.json"):
            shutil.copy(trained / name, run / name)
    found = list_runs(tmp_path)
    assert len(found) == 30 and {r.status for r in found} == {"interrupted"}
    assert [r.name for r in found] == sorted(f"r{i:03d}" for i in range(30))
    from aezoo.cli import runs as runs_cli

    monkeypatch.setattr(runs_cli, "PLAIN_ABOVE", 10)  # a long listing: plain aligned text
    result = cli("runs", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "variant", "data"] and len(lines) == 31
    assert all(f"r{i:03d}  cae-upsample  mnist5k" in result.stdout for i in range(30))


def test_reconstruct_rows_caption_and_scale(trained: Path, cli: Cli, tmp_path: Path) -> None:
    named = cli("reconstruct", str(trained), "--n", "10", "--rows", "3", "--scale", "1",
                "--device", "cpu", "--out", "named.png")
    assert named.exit_code == 0, named.output
    result = cli("reconstruct", str(trained), "--n", "10", "--rows", "3", "--scale", "1",
                 "--device", "cpu", "--out", "bands.png", "--no-labels")
    assert result.exit_code == 0, result.output
    with_names = decode((tmp_path / "named.png").read_bytes())  # the rows named on the left
    assert with_names.height == 3 * (2 * 28 + 6) + 2 * 4 and with_names.width > 4 * 28 + 70
    # 3 bands of ceil(10/3) = 4 images (the last padded white), each 2*28 + 3*2 high,
    # 4 px between bands.
    picture = decode((tmp_path / "bands.png").read_bytes())
    assert picture.size == (4 * 28 + 5 * 2, 3 * (2 * 28 + 6) + 2 * 4)
    assert picture.getpixel((picture.width - 3, picture.height - 3)) == 255  # padding
    result = cli("reconstruct", str(trained), "--n", "2", "--caption", "--device", "cpu",
                 "--out", "cap.png")
    assert result.exit_code == 0, result.output
    captioned = decode((tmp_path / "cap.png").read_bytes())
    assert captioned.height == 2 * 28 * 4 + 6 + 18  # scale 4 for 28x28, an 18 px caption
    assert captioned.width > 2 * 28 * 4 + 6  # widened to fit the caption's text
    from aezoo.records import epoch_of

    assert epoch_of(trained / "model.safetensors") == 2
    assert epoch_of(trained / "best.safetensors") in (1, 2)
    assert epoch_of(tmp_path / "cap.png") is None


def test_runs_table_fits_80_columns(trained: Path, cli: Cli, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # A new user's listing: long run names and an absolute packed:/... path made a
    # ~150-character table that wrapped into a mess at 80 columns.
    import json as json_

    root = tmp_path / "runs"
    fake_runs(trained, root)
    long_name = root / "cae-upsample-packed-digits-20250101-120000"
    shutil.copytree(root / "done", long_name)
    spec = json_.loads((long_name / "run.json").read_text())
    spec["data"]["name"] = f"packed:{tmp_path / 'digits.pack'}"
    (long_name / "run.json").write_text(json_.dumps(spec))
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("runs", str(root))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    assert any(long_name.name in line for line in lines)  # a name is never cut
    assert "left out at 80 columns" in result.stdout
    monkeypatch.setenv("COLUMNS", "120")
    wider = cli("runs", str(root)).stdout
    assert "packed:digits.pack" in wider  # relative to the working directory
    assert f"packed:{tmp_path}" not in wider and max(map(len, wider.splitlines())) <= 120
