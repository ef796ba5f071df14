"""The epoch record (aezoo.epochs): its metrics.jsonl row, the row read back, ``best``,
``finite``; and "best" in status.json, ``aezoo runs`` and ``epoch_of`` following the run's
``train.monitor`` / ``train.mode`` (issue 27), as best.safetensors does."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import aezoo
from aezoo.epochs import EpochResult, best, column, finite, parse_row, read_rows, terms_of

KL = EpochResult(3, 0.5, 0.625, 2.0, 48.0, 0.001,
                 {"train_recon": 0.25, "train_kl": 0.25, "val_recon": 0.375, "val_kl": 0.25,
                  "val_psnr": 14.5, "host": 1.5})


def test_finite_takes_numbers_only_and_not_bool() -> None:
    # JSON's true is no epoch value: curves.py counted it (True is an int), records did not.
    assert finite(0) and finite(1.5) and finite(-3) and finite(1e308)
    for value in (True, False, math.nan, math.inf, -math.inf, "1.0", None, [1.0]):
        assert not finite(value), value


def test_the_row_keeps_metrics_jsonl_byte_for_byte_and_reads_back() -> None:
    # The line aezoo has always written: the standard columns, then the terms as logged.
    line = ('{"epoch": 3, "train_loss": 0.5, "val_loss": 0.625, "seconds": 2.0, '
            '"images_per_s": 48.0, "lr": 0.001, "train_recon": 0.25, "train_kl": 0.25, '
            '"val_recon": 0.375, "val_kl": 0.25, "val_psnr": 14.5, "host": 1.5}')
    assert json.dumps(KL.row()) == line
    assert parse_row(json.loads(line)) == KL.row()
    assert KL.as_dict() == {**{k: v for k, v in KL.row().items() if k in
                               ("epoch", "train_loss", "val_loss", "seconds", "images_per_s",
                                "lr")}, "terms": KL.terms}
    assert terms_of(KL.row()) == ["recon", "kl", "psnr"]
    assert [column("train", t) for t in terms_of(KL.row())][:2] == ["train_recon", "train_kl"]


def test_the_record_is_built_from_each_splits_named_values() -> None:
    built = EpochResult.measured(3, {"loss": 0.5, "recon": 0.25, "kl": 0.25},
                                 {"loss": 0.625, "recon": 0.375, "kl": 0.25, "psnr": 14.5},
                                 {"host": 1.5}, 2.0, 96.0, 0.001)
    assert built == KL


def test_rows_read_back_skip_what_is_no_epoch(tmp_path: Path) -> None:
    old = tmp_path / "metrics.jsonl"  # a run from before lr and the terms were logged
    old.write_text('{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "seconds": 1.0}\n'
                   '{"epoch": 2, "train_loss": "x", "val_loss": 0.5, "flag": true}\n'
                   '{"epoch": true, "val_loss": 0.1}\n[1, 2]\n{"epoch": 3, "val_loss"\n')
    rows = read_rows(old)
    assert rows == [{"epoch": 1, "train_loss": 0.7, "val_loss": 0.6, "seconds": 1.0},
                    {"epoch": 2, "val_loss": 0.5}]
    assert read_rows(tmp_path / "absent.jsonl") == []


def test_best_by_any_value_in_either_direction() -> None:
    rows = [{"epoch": 1, "val_loss": 0.5, "val_psnr": 20.0},
            {"epoch": 2, "val_loss": math.nan, "val_psnr": 25.0},
            {"epoch": 3, "val_loss": 0.25, "val_psnr": 25.0},
            {"epoch": 4, "val_loss": 0.25, "val_psnr": True}]
    assert best(rows) == (rows[2], 0.25)  # NaN passed over, the first of equals
    assert best(rows, "val_psnr", "max") == (rows[1], 25.0)  # a bool is no value
    assert best(rows, "val_psnr", "min") == (rows[0], 20.0)
    assert best(rows, "absent") is None and best([]) is None
    records = [EpochResult(e, 1.0, v, 1.0, 1.0, terms={"val_kl": -v})
               for e, v in ((1, 0.5), (2, 0.25), (3, 0.375))]
    assert best(records) == (records[1], 0.25)
    assert best(records, "val_kl", "max") == (records[1], -0.25)
    assert best(records, "train_loss") == (records[0], 1.0)


class Rising:
    """Logs ``host``, which grows every step: with mode min its best epoch is the first,
    whatever val_loss does."""

    def on_step_end(self, trainer: Any, step: int, images: int) -> None:
        trainer.log("host", float(trainer.global_step))


@pytest.mark.parametrize("mode", ["min", "max"])
def test_status_runs_and_epoch_of_follow_the_monitor(tmp_path: Path, mode: str) -> None:
    from aezoo.callbacks import Checkpointer, MetricsWriter
    from aezoo.callbacks.status import StatusWriter
    from aezoo.data import ArrayDataset
    from aezoo.records import epoch_of, read_run
    from aezoo.specs import TrainSpec
    from aezoo.training import Trainer

    rng = np.random.default_rng(0)
    data = ArrayDataset("tiny", rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8),
                        rng.integers(0, 256, (32, 1, 28, 28), dtype=np.uint8))
    spec = TrainSpec(device="cpu", epochs=3, batch_size=16, seed=0, images=False,
                     precision="32", channels_last=False, monitor="host", mode=mode)
    torch.manual_seed(0)
    trainer = Trainer(aezoo.build("cae-upsample"), data, spec,
                      [Rising(), MetricsWriter(tmp_path / "metrics.jsonl"),
                       StatusWriter(tmp_path), Checkpointer(tmp_path)])
    history = trainer.fit()
    expected = 1 if mode == "min" else 3
    assert max(history, key=lambda r: r.terms["host"] * (1 if mode == "max" else -1)
               ).epoch == expected
    if mode == "min":  # what val_loss would have chosen is another epoch
        assert min(history, key=lambda r: r.val_loss).epoch != expected
    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["monitor"], status["mode"]) == ("host", mode)
    summary = status["summary"]
    assert summary["best_epoch"] == expected
    assert summary["val_loss"] == history[expected - 1].val_loss  # best.safetensors' own
    (tmp_path / "run.json").write_text(json.dumps({"train": {"epochs": 3}}))
    listed, parsed = read_run(tmp_path), read_run(tmp_path, rows=True)
    assert (listed.best_epoch, listed.val_loss) == (parsed.best_epoch, parsed.val_loss) == (
        expected, history[expected - 1].val_loss)
    assert epoch_of(tmp_path / "best.safetensors") == expected
    # A run killed before status.json said it: run.json's train.monitor and mode decide.
    (tmp_path / "status.json").unlink()
    (tmp_path / "run.json").write_text(json.dumps({"train": {"monitor": "host",
                                                             "mode": mode}}))
    assert read_run(tmp_path).best_epoch == expected
    assert epoch_of(tmp_path / "best.safetensors") == expected


def test_the_epoch_line_shows_the_terms_of_val_loss() -> None:
    from aezoo.cli.progress import line

    text = line(KL, 10)
    assert "val_loss 0.62500  val_recon 0.37500  val_kl 0.25000  val_psnr 14.50000  " in text
    assert "train_recon" not in text and "host" not in text


def test_the_train_summary_names_the_monitored_best_epoch(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from aezoo.cli.train import summary
    from aezoo.specs import TrainSpec

    history = [EpochResult(e, 1.0, v, 1.0, 1.0, terms={"val_kl": kl})
               for e, v, kl in ((1, 0.5, 0.25), (2, 0.25, 0.75), (3, 0.375, 0.5))]

    def told(**train: Any) -> str:
        result = SimpleNamespace(out_dir=tmp_path, history=history,
                                 model_path=tmp_path / "model.safetensors",
                                 spec=SimpleNamespace(train=TrainSpec(**train)))
        return next(ln for ln in summary(result, 3.0) if ln.startswith("best epoch"))

    assert told().startswith("best epoch 2: val_loss 0.25000")
    assert told(monitor="val_kl", mode="max").startswith("best epoch 2: val_kl 0.75000")
    assert told(monitor="val_kl").startswith("best epoch 1: val_kl 0.25000")
    assert told(mode="max").startswith("best epoch 1: val_loss 0.50000")  # as the trainer
