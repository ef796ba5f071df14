"""``--callback mlflow`` and ``--callback wandb`` (the first-party plugin ``aezoo_trackers``),
for real and offline: MLflow with a local SQLite tracking store read back through
``MlflowClient``, W&B in offline mode read back from its local files. Each skips with a
reason where its extra is not installed."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from aezoo.config import run_spec_from
from aezoo.run import resume, train
from aezoo.training import TrainingInterrupted

BASE = ["data.limit=256", "train.epochs=2"]


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def values(row: dict[str, Any]) -> dict[str, float]:
    out = {k: row[k] for k in ("train_loss", "val_loss", "lr", "images_per_s", "seconds")}
    out.update(row.get("terms") or {})
    return {k: v for k, v in out.items() if math.isfinite(v)}


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "aezoo-tests")
    monkeypatch.chdir(tmp_path)  # a SQLite store puts artifacts under ./mlruns
    return uri


class CtrlCAfterEpoch1:
    def on_epoch_end(self, trainer: Any, result: Any) -> None:
        if result.epoch == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_mlflow_logs_spec_epochs_eval_and_files_and_resumes_the_same_run(
        tmp_path: Path, mlflow_store: str) -> None:
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "r"
    spec = run_spec_from("cae-upsample", None, None, [*BASE, "train.callbacks=[\"mlflow\"]"])
    with pytest.raises(TrainingInterrupted):
        train(spec, run_dir, callbacks=[CtrlCAfterEpoch1()])
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("aezoo-tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "KILLED"
    resume(run_dir)  # the same MLflow run goes on
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    assert run.data.params["train.lr"] == json.dumps(spec.train.lr)
    assert run.data.params["model.variant"] == "cae-upsample"
    written = rows(run_dir)
    assert [r["epoch"] for r in written] == [1, 2]
    for key in values(written[0]):
        history = client.get_metric_history(run.info.run_id, key)
        assert {m.step: m.value for m in history} == pytest.approx(
            {r["epoch"]: values(r)[key] for r in written}), key
    assert {"eval_psnr", "eval_ssim", "eval_mse"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"last.safetensors", "best.safetensors", "metrics.jsonl", "run.json",
            "images"} <= artifacts
    images = {a.path for a in client.list_artifacts(run.info.run_id, "images")}
    assert {"images/curves.png", "images/epoch-0002.png"} <= images


def test_mlflow_logs_each_trial_of_a_sweep(tmp_path: Path, mlflow_store: str) -> None:
    pytest.importorskip("optuna", reason="the sweep extra (optuna) is not installed")
    from aezoo_sweep.spec import SweepSpec, parse_params
    from aezoo_sweep.study import run_sweep
    from mlflow.tracking import MlflowClient

    spec = SweepSpec(variant="cae-upsample", set=[*BASE, "train.epochs=1",
                                                  "train.images=false"],
                     params=parse_params(["train.lr=log(1e-3,1e-2)"]), trials=2,
                     callbacks=["mlflow"], pruner="none")
    run_sweep(spec, tmp_path / "s")
    client = MlflowClient(mlflow_store)
    experiment = client.get_experiment_by_name("aezoo-tests")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.params["sweep.trial"] for r in runs) == ["0", "1"]


def test_wandb_offline_logs_epochs_and_files(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "r"
    spec = run_spec_from("cae-upsample", None, None, [*BASE, "train.callbacks=[\"wandb\"]"])
    train(spec, run_dir)
    (offline,) = list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
    records = read_records(offline)
    history = [{"/".join(i.nested_key) or i.key: json.loads(i.value_json)
                for i in r.history.item} for r in records["history"]]
    assert [h["_step"] for h in history] == [1, 2]
    for logged, row in zip(history, rows(run_dir), strict=True):
        assert {k: logged[k] for k in values(row)} == pytest.approx(values(row))
    summary = {"/".join(u.nested_key) or u.key: json.loads(u.value_json)
               for r in records["summary"] for u in r.summary.update}
    assert {"eval_psnr", "eval_ssim", "eval_mse"} <= set(summary)
    (run,) = records["run"]
    config = {u.key: json.loads(u.value_json) for u in run.run.config.update}
    assert config["model.variant"] == "cae-upsample" and config["train.lr"] == "0.001"
    (artifact,) = records["artifact"]
    files = {e.path for e in artifact.artifact.manifest.contents}
    assert {"last.safetensors", "best.safetensors", "metrics.jsonl", "run.json",
            "images/curves.png", "images/epoch-0002.png"} <= files


def read_records(path: Path) -> dict[str, list[Any]]:
    """The records of an offline ``.wandb`` file by type. Its container is LevelDB's log
    format (a 7-byte header ``:W&B``, magic, version; then 32 KiB blocks of chunks: CRC,
    length, type FULL/FIRST/MIDDLE/LAST), each record a ``wandb_internal_pb2.Record``."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, chunks, buf = path.read_bytes(), 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            buf = chunk
        elif kind == 3:
            buf += chunk
        elif kind == 4:
            chunks.append(buf + chunk)
    out: dict[str, list[Any]] = {}
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        out.setdefault(str(record.WhichOneof("record_type")), []).append(record)
    return out


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_tracker_extra_is_named(name: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from aezoo.callbacks import load_callback
    from aezoo.errors import UsageError

    monkeypatch.setitem(sys.modules, name, None)  # import NAME -> ImportError
    monkeypatch.setitem(sys.modules, f"{name}.tracking", None)
    with pytest.raises(UsageError, match=rf"pip install 'aezoo\[{name}\]'"):
        load_callback(name, tmp_path)


@pytest.mark.parametrize("name", ["mlflow", "wandb", "tensorboard"])
def test_aezoo_info_describes_each_tracker(name: str, cli: Any) -> None:
    """Described without its extra; a tracker's own methods are no params model."""
    result = cli("info", name, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["plugin"].startswith("aezoo ") and info["params"] == {}
    assert info["description"].endswith(".")


@pytest.mark.parametrize("name", ["mlflow", "wandb", "tensorboard"])
def test_each_tracker_passes_the_conformance_kit(name: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin meets the contract a third party's callback does: a torch-free entry
    point and, where its extra is installed, a callback with callable hooks."""
    from aezoo.testing import check_callback, check_descriptor

    check_descriptor("callback", name, torch_free=True)
    pytest.importorskip(name, reason=f"the {name} extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    assert check_callback(name, tmp_path).state_key == (None if name == "tensorboard" else name)


def test_tensorboard_callback_logs_or_names_the_extra(cli: Any) -> None:
    args = ["train", "cae-upsample", "--device", "cpu", "--epochs", "1", "--limit", "64",
            "--no-images", "--out", "run", "--callback", "tensorboard"]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        result = cli(*args)
        assert result.exit_code == 2
        assert "pip install 'aezoo[tensorboard]'" in result.output
        assert not Path("run/metrics.jsonl").exists()  # failed before training
        return
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert list(Path("run/tensorboard").glob("events.out.tfevents.*"))
