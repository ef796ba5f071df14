"""Run directories and exact resume: in process, and with real SIGKILL / SIGINT delivered
to a real `aezoo train` subprocess (a test plugin callback signals its own process at a
chosen step, so the kill lands at the same place on every machine)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import aezoo
from aezoo import registry
from aezoo.callbacks import Callback, Checkpointer
from aezoo.data import ArrayDataset
from aezoo.specs import TrainSpec
from aezoo.training import Trainer
from aezoo.training.state import read_info

PLUGIN = '''
import os
import signal


class SignalAt:
    """Sends AEZOO_TEST_SIGNAL="STEP:SIGNAME" to its own process after that global step;
    writes plugin-ran.txt at the end of training."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        at, _, name = os.environ.get("AEZOO_TEST_SIGNAL", "").partition(":")
        self.at, self.sig = (int(at), getattr(signal, name)) if at else (0, None)

    def on_step_end(self, trainer, step, images):
        if trainer.global_step == self.at:
            os.kill(os.getpid(), self.sig)

    def on_train_end(self, trainer):
        (self.out_dir / "plugin-ran.txt").write_text(trainer.outcome)
'''


def write_plugin_site(root: Path) -> Path:
    """A fake installed distribution providing the ``signal-at`` callback."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "aezoo_test_signals.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "aezoo_test_signals-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aezoo-test-signals\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[aezoo.callbacks]\nsignal-at = aezoo_test_signals:SignalAt\n")
    return root


TRAIN = ["train", "cae-upsample", "--device", "cpu", "--epochs", "3", "--limit", "256",
         "--batch-size", "32", "--checkpoint-every", "5", "--no-images",
         "--scheduler", "cosine", "--warmup", "3", "--grad-clip", "1.0", "--patience", "5",
         "--callback", "signal-at"]  # 8 steps per epoch, 24 in all


def aezoo_cli(args: list[str], site: Path, signal_at: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEZOO_")}
    env.update(PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", AEZOO_TEST_SIGNAL=signal_at)
    return subprocess.run([sys.executable, "-m", "aezoo", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("model.safetensors", "best.safetensors", "last.safetensors"):
        wa, wb = weights(a / name), weights(b / name)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{name} differs"  # bit-exact

    def losses(run: Path) -> list[tuple[float, float]]:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [(r["train_loss"], r["val_loss"]) for r in rows]

    assert losses(a) == losses(b) and len(losses(a)) == 3


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_plugin_site(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def reference(site: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    done = aezoo_cli([*TRAIN, "--out", str(out)], site)
    assert done.returncode == 0, done.stderr
    assert (out / "plugin-ran.txt").read_text() == "completed"
    return out


@pytest.mark.slow
def test_sigkill_then_sigint_then_resume_ends_bit_exact(site: Path, reference: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "run"
    killed = aezoo_cli([*TRAIN, "--out", str(out)], site, signal_at="13:SIGKILL")
    assert killed.returncode == -9
    assert not (out / "model.safetensors").exists()
    info = read_info(out / "state.safetensors")
    assert (info["epoch"], info["step"], info["global_step"]) == (2, 2, 10)  # last checkpoint

    # Resumed, then Ctrl-C at step 19: the state of that very step is saved, exit 130.
    stopped = aezoo_cli(["train", "--resume", str(out)], site, signal_at="19:SIGINT")
    assert stopped.returncode == 130, stopped.stderr
    assert f"aezoo train --resume {out}" in stopped.stderr and "Traceback" not in stopped.stderr
    assert (out / "plugin-ran.txt").read_text() == "interrupted"
    # status.json goes through the background writer: drained before the process exits
    assert json.loads((out / "status.json").read_text())["outcome"] == "interrupted"
    assert not (out / "model.safetensors").exists()
    info = read_info(out / "state.safetensors")
    assert (info["epoch"], info["step"], info["global_step"]) == (3, 3, 19)

    resumed = aezoo_cli(["train", "--resume", str(out)], site)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, out)


# --- in process -------------------------------------------------------------------------

@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Crash(Callback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer: Trainer, step: int, images: int) -> None:
        if trainer.global_step == self.at:
            raise RuntimeError("power cut")


@pytest.mark.parametrize("settings", [
    {"optimizer": "sgd", "scheduler": "step", "step_size": 1, "gamma": 0.5},
    {"optimizer": "adamw", "scheduler": "onecycle", "weight_decay": 0.01, "precision": "bf16"},
])
def test_resume_from_a_step_checkpoint_is_bit_exact(tmp_path: Path, one_thread: None,
                                                    settings: dict[str, Any]) -> None:
    rng = np.random.default_rng(1)
    data = ArrayDataset("tiny", rng.integers(0, 256, (100, 1, 28, 28), dtype=np.uint8),
                        rng.integers(0, 256, (20, 1, 28, 28), dtype=np.uint8))
    spec = TrainSpec(device="cpu", epochs=3, batch_size=16, checkpoint_every=3, **settings)

    def fresh(seed: int = 0) -> Any:
        torch.manual_seed(seed)
        return aezoo.build("cae-upsample")

    full = Trainer(fresh(), data, spec)
    full.fit()
    crashed = Trainer(fresh(), data, spec, [Checkpointer(tmp_path), Crash(11)])
    with pytest.raises(RuntimeError, match="power cut"):
        crashed.fit()
    assert crashed.outcome == "failed"
    assert read_info(tmp_path / "state.safetensors")["global_step"] == 9
    resumed = Trainer(fresh(seed=123), data, spec)  # another init: the state must replace it
    resumed.load_state(tmp_path / "state.safetensors")
    history = resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [(h.train_loss, h.val_loss) for h in history] == \
        [(h.train_loss, h.val_loss) for h in full.history]


def test_state_file_is_plain_safetensors(tmp_path: Path, one_thread: None) -> None:
    rng = np.random.default_rng(2)
    data = ArrayDataset("tiny", rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8),
                        rng.integers(0, 256, (8, 1, 28, 28), dtype=np.uint8))
    torch.manual_seed(0)
    trainer = Trainer(aezoo.build("cae-upsample"), data,
                      TrainSpec(device="cpu", epochs=1, batch_size=16), [Checkpointer(tmp_path)])
    trainer.fit()
    tensors = load_file(str(tmp_path / "state.safetensors"))
    assert {k.split(".")[0] for k in tensors} == {"model", "optim", "rng", "acc"}
    assert tensors["rng.generator"].dtype == torch.uint8
    info = read_info(tmp_path / "state.safetensors")
    assert (info["epoch"], info["step"], info["global_step"]) == (2, 0, 3)
    assert len(info["history"]) == 1 and info["optimizer"]["param_groups"][0]["lr"] == 1e-3


# --- the run directory and the CLI ------------------------------------------------------

@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = write_plugin_site(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("AEZOO_TEST_SIGNAL", raising=False)
    importlib.invalidate_caches()
    registry.clear_cache()  # the registry caches what is installed, per process
    yield site
    sys.modules.pop("aezoo_test_signals", None)
    registry.clear_cache()


def test_callback_plugin_by_name_and_run_dir_files(cli: Any, plugin_site: Path,
                                                   one_thread: None) -> None:
    args = ["train", "cae-upsample", "--device", "cpu", "--epochs", "2", "--limit", "64",
            "--batch-size", "32", "--out", "run"]
    result = cli(*args, "--callback", "signal-at")
    assert result.exit_code == 0, result.output
    run = Path("run")
    for name in ("model.safetensors", "last.safetensors", "best.safetensors",
                 "state.safetensors", "metrics.jsonl", "metrics.csv", "run.json",
                 "images/epoch-0001.png", "images/epoch-0002.png", "plugin-ran.txt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "run.json").read_text())["train"]["callbacks"] == ["signal-at"]
    final, last = weights(run / "model.safetensors"), weights(run / "last.safetensors")
    assert all(torch.equal(final[k], last[k]) for k in final)  # model = the final weights

    again = cli("train", "--resume", "run")
    assert again.exit_code == 2 and "already finished all 2 epochs" in again.output

    unknown = cli(*args[:-1], "run2", "--callback", "signal-att")
    assert unknown.exit_code == 2
    assert "unknown callback 'signal-att'" in unknown.output and "signal-at" in unknown.output


def test_unfinished_runs_are_not_overwritten_and_resume_errors_are_clear(
        cli: Any, tmp_path: Path) -> None:
    run = Path("run")
    run.mkdir()
    (run / "state.safetensors").write_bytes(b"precious")
    result = cli("train", "cae-upsample", "--epochs", "1", "--out", "run")
    assert result.exit_code == 2 and "--resume run" in result.output
    assert (run / "state.safetensors").read_bytes() == b"precious"

    missing = cli("train", "--resume", "nowhere")
    assert missing.exit_code == 2 and "not a run directory" in missing.output
    mixed = cli("train", "cae-upsample", "--resume", "run")
    assert mixed.exit_code == 2 and "NAME cannot be combined with --resume" in mixed.output


# --- what exactness depends on ------------------------------------------------------------


def _stopped_after_epoch_1(tmp_path: Path) -> Path:
    from aezoo.config import build_run_spec
    from aezoo.run import train

    spec = build_run_spec("cae-upsample", [{"train": {"epochs": 1, "batch_size": 64,
                                                      "images": False, "device": "cpu"},
                                            "data": {"limit": 128}}])
    out = tmp_path / "run"
    train(spec, out)
    (out / "model.safetensors").unlink()
    return out


def test_state_records_what_exactness_depends_on(tmp_path: Path) -> None:
    out = _stopped_after_epoch_1(tmp_path)
    recorded = read_info(out / "state.safetensors")["exactness"]
    assert recorded["threads"] == torch.get_num_threads()
    assert recorded["torch"] == torch.__version__ and recorded["device"] == "cpu"
    assert {"precision", "memory_format", "compile", "deterministic"} <= set(recorded)


def test_resume_on_another_thread_count_warns_once_naming_it(tmp_path: Path,
                                                             cli: Any) -> None:
    out = _stopped_after_epoch_1(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(before + 1)
    try:
        result = cli("train", "--resume", str(out), "--epochs", "2")
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert f"threads {before} -> {before + 1}" in warnings[0], warnings[0]
    assert "bit-exact" in warnings[0]


def test_resume_in_the_same_setting_warns_nothing(tmp_path: Path) -> None:
    from aezoo.run import resume

    out = _stopped_after_epoch_1(tmp_path)
    result = resume(out, {"epochs": 2})
    assert result.warnings == []
