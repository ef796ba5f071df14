"""Training under pipes and signals, in real subprocesses with real signals.

Each signal is sent by the process to itself at a chosen point (a patched function of
the program: an import, the final validation, the final save, the `saved` line), so the
tests assert what happens there without depending on timing. Timeouts are hang guards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import aezoo

pytestmark = pytest.mark.slow

# Runs the aezoo program (as `python -m aezoo` would) after arranging for SIGINT at the
# point AEZOO_TEST_SIGINT names.
_HARNESS = textwrap.dedent("""
    import os, signal, sys, runpy

    mode = os.environ["AEZOO_TEST_SIGINT"]
    sys.argv = ["aezoo", *sys.argv[1:]]  # the program, as its console script is called

    def sigint(times=1):
        for _ in range(times):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # a Python loop: the handler runs here
                pass

    if mode.startswith("import:"):  # SIGINT while that module is being imported
        import importlib.abc
        target = mode.split(":", 1)[1]

        class Finder(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target_=None):
                if name == target:
                    sys.meta_path.remove(self)
                    sigint()
                return None

        sys.meta_path.insert(0, Finder())
    else:
        from aezoo.training.loop import Trainer
        from aezoo.training.control import Control
        import aezoo.run
        from aezoo.cli.common import PipeSafeConsole

        last = int(os.environ.get("AEZOO_TEST_STEP", "0"))
        if mode == "final-validation":
            evaluate = Trainer.evaluate_terms  # what each epoch's validation calls
            def patched(self, images=None):
                if images is None and self.epoch == self.spec.epochs:
                    sigint()
                return evaluate(self, images)
            Trainer.evaluate_terms = patched
        elif mode in ("last-step", "twice"):
            after_step = Control.after_step
            def patched(self, global_step, sync_every):
                after_step(self, global_step, sync_every)
                if global_step == last:
                    sigint(2 if mode == "twice" else 1)
            Control.after_step = patched
        elif mode == "final-save":
            save = aezoo.run.save
            def patched(model, path):
                sigint()
                return save(model, path)
            aezoo.run.save = patched
        elif mode == "after-saved":
            print_ = PipeSafeConsole.print
            def patched(self, *objects, **kwargs):
                print_(self, *objects, **kwargs)
                if objects and str(objects[0]).startswith("saved "):
                    sigint()
            PipeSafeConsole.print = patched

    runpy.run_module("aezoo", run_name="__main__", alter_sys=True)
""")

TRAIN = ["train", "cae-upsample", "--limit", "128", "--batch-size", "64", "--device", "cpu",
         "--no-images"]  # 2 steps per epoch


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    env.pop("AEZOO_DEBUG", None)
    return env


def _run(mode: str, *args: str, step: int = 0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _HARNESS, *args], capture_output=True,
                          text=True, timeout=300,
                          env=_env(AEZOO_TEST_SIGINT=mode, AEZOO_TEST_STEP=str(step)))


def _aezoo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aezoo", *args], capture_output=True,
                          text=True, timeout=300, env=_env())


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in
            (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


# --- a closed stdout ---------------------------------------------------------------------


def test_closed_stdout_never_stops_training(tmp_path: Path) -> None:
    """`aezoo train ... | head -1`: the reader quits after the first line; training goes on
    quietly, says so once on stderr, writes every epoch and the model, and exits 0."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "aezoo", *TRAIN, "--epochs", "3",
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stdout.readline()
        proc.stdout.close()  # as `head -1` does
        stderr = proc.stderr.read()
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert first.startswith("training on"), first
    assert proc.returncode == 0, stderr
    assert stderr.count("stdout was closed") == 1, stderr
    assert "Traceback" not in stderr and "error" not in stderr, stderr
    assert _epochs(out) == [1, 2, 3]
    assert aezoo.load(out / "model.safetensors").num_parameters() == 4385


# --- Ctrl-C at the end of a run ------------------------------------------------------------


@pytest.mark.parametrize(("mode", "step"), [("final-validation", 0), ("last-step", 4)])
def test_ctrl_c_at_the_end_leaves_a_run_that_resume_finishes(tmp_path: Path, mode: str,
                                                             step: int) -> None:
    out = tmp_path / "run"
    done = _run(mode, *TRAIN, "--epochs", "2", "--out", str(out), step=step)
    assert done.returncode == 130, done.stderr
    assert "SIGINT" in done.stderr and "--resume" in done.stderr, done.stderr
    assert not (out / "model.safetensors").exists()
    resumed = _aezoo("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert _epochs(out) == [1, 2]
    assert aezoo.load(out / "model.safetensors").num_parameters() == 4385


@pytest.mark.parametrize("mode", ["final-save", "after-saved"])
def test_ctrl_c_once_the_model_is_saved_keeps_the_run_finished(tmp_path: Path,
                                                                mode: str) -> None:
    """A Ctrl-C during the final save waits for it; one after the `saved` line is moot."""
    out = tmp_path / "run"
    done = _run(mode, *TRAIN, "--epochs", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "interrupted" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert f"saved {out / 'model.safetensors'}" in done.stdout
    assert aezoo.load(out / "model.safetensors").num_parameters() == 4385


def test_a_second_ctrl_c_says_what_was_kept_and_how_to_go_on(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _run("twice", *TRAIN, "--epochs", "3", "--out", str(out), step=3)
    assert done.returncode == 130, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "after epoch 1" in lines[0] and "state.safetensors" in lines[0], lines[0]
    assert f"aezoo train --resume {out}" in lines[0], lines[0]
    resumed = _aezoo("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert _epochs(out) == [1, 2, 3]


@pytest.mark.parametrize("module", ["typer", "numpy", "torch"])
def test_an_early_ctrl_c_exits_130_with_one_word(tmp_path: Path, module: str) -> None:
    """Ctrl-C while the program starts or imports numpy/torch: `interrupted`, nothing else
    (never an `unexpected AttributeError`, never ignored), and no run directory."""
    out = tmp_path / "run"
    done = _run(f"import:{module}", *TRAIN, "--epochs", "1", "--out", str(out))
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "error: interrupted", done.stderr
    assert not out.exists()
