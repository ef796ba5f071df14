"""``aezoo sweep``: the search space as text and files, trials as run directories, pruning,
failures, interrupts and resume, shared studies, ``sweep show``. Tiny budgets: 256
images, 1-2 epochs, a few trials."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aezoo_sweep.spec import SweepSpec, parse_param, parse_params, read_sweep_file
from typer.testing import CliRunner

from aezoo.cli import app
from aezoo.errors import SpecError
from aezoo.specs import validate

runner = CliRunner()
BASE = ["train.epochs=2", "data.limit=256", "train.images=false"]


def one_line_error(result: Any, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


# --- the space as text: no Optuna needed --------------------------------------------------

def test_distributions_parse() -> None:
    assert parse_param("train.lr=log(1e-4,1e-2)")[1].model_dump(exclude_none=True) == {
        "kind": "log", "low": 1e-4, "high": 1e-2}
    path, p = parse_param("model.encoder.params.channels=choice([16,8,8],[32,16,8])")
    assert path == "model.encoder.params.channels" and p.choices == [[16, 8, 8], [32, 16, 8]]
    assert parse_param("train.optimizer=choice(adam, sgd)")[1].choices == ["adam", "sgd"]
    assert parse_param("train.batch_size=int(32,256,32)")[1].step == 32
    assert parse_param("train.lr=float(0.001, 0.01)")[1].text() == "float(0.001,0.01)"


@pytest.mark.parametrize("text, words", [
    ("train.lr=log(0,1)", "a log scale needs low > 0"),
    ("train.lr=choice()", "choice() needs at least one value"),
    ("train.lr=float(2,1)", "low must be below high"),
    ("train.lr=int(1.5,3)", "whole numbers"),
    ("train.lr=normal(0,1)", "is not a distribution"),
    ("train.lr=float(a,1)", "takes numbers"),
    ("train.lr", "invalid --param"),
    ("=log(1,2)", "invalid --param"),
])
def test_bad_distributions_are_one_line_spec_errors(text: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_param(text)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_sweep_file_toml_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text(
        'variant = "cae-upsample"\nset = ["train.epochs=2"]\nmetric = "val_loss"\n'
        'trials = 3\npruner = "hyperband"\n[params]\n"train.lr" = "log(1e-4,1e-2)"\n'
        '"model.encoder.params.channels" = [[16, 8, 8], [8, 8, 8]]\n'
        '"train.batch_size" = { kind = "int", low = 32, high = 128, step = 32 }\n')
    spec = read_sweep_file(tmp_path / "s.toml", {"trials": 5})
    assert spec.trials == 5 and spec.pruner == "hyperband" and spec.goal == "minimize"
    assert spec.params["model.encoder.params.channels"].kind == "choice"
    (tmp_path / "s.yaml").write_text("variant: cae-upsample\nmetric: val_psnr\nparams:\n"
                                     "  train:\n    lr: log(1e-4,1e-2)\n")
    spec = read_sweep_file(tmp_path / "s.yaml")
    assert list(spec.params) == ["train.lr"] and spec.goal == "maximize"
    (tmp_path / "bad.toml").write_text('variant = "cae-upsample"\ntrails = 3\n'
                                       '[params]\n"train.lr" = "log(1e-4,1e-2)"\n')
    with pytest.raises(SpecError, match=r"invalid trails in .*bad.toml: unknown key"):
        read_sweep_file(tmp_path / "bad.toml")
    with pytest.raises(SpecError, match="at least one param"):
        validate(SweepSpec, {"variant": "cae-upsample"})


# --- with Optuna --------------------------------------------------------------------------

optuna = pytest.importorskip("optuna", reason="the sweep extra (optuna) is not installed")


def sweep(tmp_path: Path, *args: str) -> Any:
    return runner.invoke(app, ["sweep", *args], catch_exceptions=False,
                         env={"COLUMNS": "200"})


@pytest.mark.parametrize("args, words", [
    (["--param", "train.lr=log(0,1)"], "a log scale needs low > 0"),
    (["--param", "train.lr=choice()"], "at least one value"),
    (["--param", "train.lrr=log(1e-4,1e-2)"], "unknown key (did you mean 'lr'?)"),
    (["--param", "model.encoder.params.chanels=choice([8,8,8])"], "unknown key"),
    (["--param", "train.lr=log(1e-4,1e-2)", "--sampler", "grid"], "invalid sampler"),
])
def test_bad_sweeps_fail_before_anything_is_written(tmp_path: Path, args: list[str],
                                                    words: str) -> None:
    out = tmp_path / "s"
    line = one_line_error(sweep(tmp_path, "cae-upsample", "--out", str(out), *args))
    assert words in line
    assert not out.exists()


def test_unreachable_storage_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "s"
    line = one_line_error(sweep(tmp_path, "cae-upsample", "--param", "train.lr=log(1e-4,1e-2)",
                                "--out", str(out), "--storage",
                                f"sqlite:///{tmp_path}/no/such/dir/x.db"), code=1)
    assert "cannot open the study storage" in line and not out.exists()


def test_missing_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    line = one_line_error(sweep(tmp_path, "cae-upsample", "--param",
                                "train.lr=log(1e-4,1e-2)", "--out", str(tmp_path / "s")))
    assert "pip install 'aezoo[sweep]'" in line


def test_a_sweep_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "s"
    args = ["cae-upsample", "--param", "train.lr=log(1e-3,1e-2)", "--param",
            "model.encoder.params.channels=choice([16,8,8],[8,8,8])", "--trials", "3",
            "--pruner", "none", "--out", str(out)] + [a for s in BASE for a in ("--set", s)]
    result = sweep(tmp_path, *args)
    assert result.exit_code == 0, result.output
    dirs = sorted(p.name for p in out.glob("trial-*"))
    assert dirs == ["trial-0000", "trial-0001", "trial-0002"]
    trial = json.loads((out / "trial-0001" / "trial.json").read_text())
    assert trial["trial"] == 1 and set(trial["params"]) == {
        "train.lr", "model.encoder.params.channels"}
    run = json.loads((out / "trial-0001" / "run.json").read_text())
    assert run["train"]["lr"] == trial["params"]["train.lr"]
    assert run["model"]["encoder"]["params"]["channels"] == trial["params"][
        "model.encoder.params.channels"]
    # aezoo runs shows trials with their number and params (an ordinary run directory)
    listed = runner.invoke(app, ["runs", str(out), "--json"])
    rows = json.loads(listed.output)
    assert [r["trial"] for r in rows] == [0, 1, 2] and rows[0]["status"] == "completed"
    # the same command again: the study already holds its 3 trials
    again = sweep(tmp_path, *args)
    assert again.exit_code == 0 and "ran 0" in again.output
    shown = runner.invoke(app, ["sweep", "show", str(out), "--json"])
    report = json.loads(shown.output)
    assert report["counts"] == {"complete": 3}
    for picture in ("history", "importances"):  # drawn with matplotlib, on a headless machine
        assert Path(report["files"][picture]).read_bytes()[:4] == b"\x89PNG", report["notes"]
    values = [json.loads((out / f"trial-000{i}" / "metrics.jsonl").read_text().splitlines()[-1]
                         )["val_loss"] for i in range(3)]
    assert report["best"]["value"] == pytest.approx(min(values))
    # the best spec is a spec file `aezoo train --config` takes, equal to the best run's
    from aezoo.config import run_spec_from
    from aezoo.rundir import read_run_spec

    best = run_spec_from(None, out / "best.toml")
    assert best == read_run_spec(Path(report["best"]["run_dir"]))
    # a second sweep with another space on the same study is refused, nothing lost
    before = (out / "study.journal").read_bytes()
    line = one_line_error(sweep(tmp_path, "cae-upsample", "--param", "train.lr=log(1e-4,1e-2)",
                                "--out", str(out), *[a for s in BASE for a in ("--set", s)]))
    assert "another space" in line
    assert (out / "study.journal").read_bytes() == before


def test_pruned_trial_checkpoints_and_says_so(tmp_path: Path) -> None:
    from aezoo_sweep.study import TrialReporter

    from aezoo.config import run_spec_from
    from aezoo.run import train

    class Trial:
        reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return True

    reporter = TrialReporter(Trial(), "val_loss", "median")
    result = train(run_spec_from("cae-upsample", None, None, [*BASE, "train.epochs=3"]),
                   tmp_path / "r", callbacks=[reporter])
    assert reporter.pruned_at == 1 and len(result.history) == 1
    status = json.loads((tmp_path / "r" / "status.json").read_text())
    assert status["outcome"] == "stopped" and status["stop_reason"].startswith("pruned by")
    assert (tmp_path / "r" / "last.safetensors").exists()


def test_failed_and_diverged_trials_are_recorded_and_the_sweep_goes_on(tmp_path: Path
                                                                       ) -> None:
    from aezoo_sweep.study import run_sweep

    spec = SweepSpec(variant="cae-upsample", set=[*BASE, "train.epochs=1",
                                                  "train.optimizer=sgd"],
                     params=parse_params(["train.lr=choice(1e12, 0.01)"]), trials=3,
                     sampler="random", seed=1, pruner="none")

    class Boom:
        calls = 0

        def on_train_start(self, trainer: Any) -> None:
            Boom.calls += 1
            if Boom.calls == 1:
                raise RuntimeError("a plugin broke")

    result = run_sweep(spec, tmp_path / "s", callbacks=lambda: [Boom()])
    from aezoo_sweep.show import show_sweep

    report = show_sweep(tmp_path / "s", pictures=False)
    states = [t["state"] for t in report.trials]
    assert len(states) == 3 and states[0] == "failed"
    assert sum(result.counts.values()) == 3
    diverged = [t for t in report.trials if t["params"]["train.lr"] == 1e12
                and t["number"] > 0]
    assert all(t["state"] == "diverged" and "NaN" in t["error"] for t in diverged)
    assert report.trials[0]["error"] and "a plugin broke" in report.trials[0]["error"]


def test_ctrl_c_stops_after_the_checkpoint_and_the_same_sweep_resumes(tmp_path: Path
                                                                       ) -> None:
    from aezoo_sweep.study import run_sweep

    from aezoo.training import TrainingInterrupted

    spec = SweepSpec(variant="cae-upsample", set=BASE,
                     params=parse_params(["train.lr=log(1e-3,1e-2)"]), trials=2,
                     pruner="none")

    class CtrlC:
        def on_epoch_end(self, trainer: Any, result: Any) -> None:
            if result.epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match="run the same command again"):
        run_sweep(spec, tmp_path / "s", callbacks=lambda: [CtrlC()])
    run0 = tmp_path / "s" / "trial-0000"
    assert (run0 / "state.safetensors").exists() and not (run0 / "model.safetensors").exists()
    result = run_sweep(spec, tmp_path / "s")
    assert result.counts == {"complete": 2, "interrupted": 1}
    assert (run0 / "model.safetensors").exists()  # resumed in its own run directory
    rows = (run0 / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
    assert not (tmp_path / "s" / "trial-0001").exists()  # the resuming trial reused trial-0000
    trials = {json.loads((d / "trial.json").read_text())["trial"]: d
              for d in (tmp_path / "s").glob("trial-*")}
    lrs = [json.loads((trials[n] / "trial.json").read_text())["params"]["train.lr"]
           for n in sorted(trials)]
    assert len(lrs) == 2 and lrs[0] != lrs[1]  # the second process drew values of its own


def test_join_refuses_other_settings(tmp_path: Path) -> None:
    line = one_line_error(sweep(tmp_path, "--join", str(tmp_path / "nothing")))
    assert "is not a sweep directory" in line
    line = one_line_error(sweep(tmp_path, "--join", str(tmp_path), "--metric", "val_recon"))
    assert "cannot be combined with --join" in line


@pytest.mark.parametrize("pruner", ["hyperband", "median"])
def test_pruners_stop_trials_after_a_checkpoint(tmp_path: Path, pruner: str) -> None:
    from aezoo_sweep.show import show_sweep
    from aezoo_sweep.study import run_sweep

    spec = SweepSpec(variant="cae-upsample", set=[*BASE, "train.epochs=3"],
                     params=parse_params(["train.lr=log(1e-4,1e-2)"]), trials=4,
                     pruner=pruner, sampler="random", seed=3)
    run_sweep(spec, tmp_path / "s")
    report = show_sweep(tmp_path / "s", pictures=False)
    assert set(report.counts) <= {"complete", "pruned"} and sum(report.counts.values()) == 4
    for trial in report.trials:
        status = json.loads((Path(trial["run_dir"]) / "status.json").read_text())
        if trial["state"] == "pruned":
            assert status["stop_reason"].startswith(f"pruned by the sweep's {pruner}")
            assert (Path(trial["run_dir"]) / "last.safetensors").exists()
            assert status["epochs_done"] < 3
        else:
            assert status["outcome"] == "completed" and status["epochs_done"] == 3
