"""Hyperparameter sweeps: Optuna searches, prunes, stores and shares; aezoo translates each
trial's params into ``--set`` overrides and trains an ordinary run directory,
``OUT/trial-NNNN`` (the sweep directory's layout: docs/sweeps.md).

Ctrl-C stops after the running trial's checkpoint; the trial is marked failed with
``aezoo.outcome = interrupted`` and the same command enqueues it again, resuming its run
directory. A trial that diverges or fails is recorded as failed; the sweep goes on.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from aezoo.epochs import EpochResult
from aezoo.errors import AezooError, UsageError, summary
from aezoo.fileio import atomic_write
from aezoo.rundir import MODEL_FILE, STATE_FILE, TRIAL_FILE, held_locks, is_running
from aezoo.training import TrainingInterrupted
from aezoo.training.hooks import Callback
from aezoo_sweep.spec import SweepSpec, check_space, param_sets, space_of, validate_sweep

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

SWEEP_FILE = "sweep.json"
JOURNAL_FILE = "study.journal"
ATTR = "aezoo."  # prefix of aezoo's user attributes on studies and trials
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "cmaes": "CmaEsSampler",
            "qmc": "QMCSampler"}


def import_optuna() -> Any:
    """Optuna, or a one-line error naming the extra."""
    try:
        import optuna
    except ImportError:
        raise UsageError("aezoo sweep needs Optuna", "pip install 'aezoo[sweep]'") from None
    return optuna


@dataclass
class SweepResult:
    out: Path
    study: str
    storage: str
    counts: dict[str, int] = field(default_factory=dict)  # state -> trials
    ran: list[int] = field(default_factory=list)  # trial numbers this process ran


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"journal:{(out / JOURNAL_FILE).absolute()}"


def open_storage(url: str) -> Any:
    """``journal:PATH`` (a journal file) or any URL Optuna takes (``sqlite:///x.db``)."""
    optuna = import_optuna()
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix("journal:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        return optuna.storages.get_storage(url)
    except Exception as exc:  # each backend and driver raises its own
        raise AezooError(f"cannot open the study storage {url} ({summary(exc, limit=200)})",
                         "check the URL, its database driver and that the server is up"
                         ) from None


def _seed(spec: SweepSpec, existing: int, shared: bool) -> int | None:
    """``spec.seed`` for the first process of a new study (the sweep is reproducible);
    another for a process that resumes or joins, so it does not draw the very values
    the first process drew (each process seeds its own sampler)."""
    if spec.seed is None or (existing == 0 and not shared):
        return spec.seed
    return (spec.seed + 7919 * existing + os.getpid()) % 2**31


def _pruner(optuna: Any, name: str) -> Any:
    pruners = optuna.pruners
    if name in ("hyperband", "successive-halving"):
        kind = "HyperbandPruner" if name == "hyperband" else "SuccessiveHalvingPruner"
        return getattr(pruners, kind)(min_resource=1)
    if name == "none":
        return pruners.NopPruner()
    return pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def open_study(spec: SweepSpec, out: Path, name: str | None = None,
               shared: bool = False) -> Any:
    """The study of ``spec`` (created, or loaded when it exists); a study made by a sweep
    with another space, metric or base is refused, and left as it was."""
    optuna = import_optuna()
    url = storage_url(out, spec.storage)
    storage = open_storage(url)
    study_name = name or spec.study or Path(out).absolute().name
    pruner = _pruner(optuna, spec.pruner)
    sampler = getattr(optuna.samplers, SAMPLERS[spec.sampler])
    try:
        try:  # loaded first: a refused join appends nothing to the storage
            study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
            existing = len(study.get_trials(deepcopy=False))
            study.sampler = sampler(seed=_seed(spec, existing, shared))
        except KeyError:  # no such study yet
            study = optuna.create_study(storage=storage, study_name=study_name,
                                        direction=spec.goal, pruner=pruner, load_if_exists=True,
                                        sampler=sampler(seed=_seed(spec, 0, shared)))
    except Exception as exc:
        raise AezooError(f"cannot open study {study_name} in {url} "
                         f"({summary(exc, limit=200)})", "check --storage") from None
    if len(study.directions) != 1 or study.direction.name.lower() != spec.goal:
        raise UsageError(f"study {study_name} in {url} does not {spec.goal} one value",
                         "use another --study, or --direction as the study has it")
    # What makes two sweeps one study: the space, the metric and the trials' base.
    mine = {"space": space_of(spec.params), "metric": spec.metric, "direction": spec.goal,
            "variant": spec.variant, "config": spec.config, "set": list(spec.set)}
    theirs = study.user_attrs.get(ATTR + "sweep")
    if theirs is None:
        study.set_user_attr(ATTR + "sweep", mine)
    elif theirs != mine:
        differ = ", ".join(k for k in mine if mine[k] != theirs.get(k))
        raise UsageError(f"study {study_name} in {url} belongs to a sweep with another "
                         f"{differ} (its space: {json.dumps(theirs.get('space'))[:200]})",
                         "join it with `aezoo sweep --join DIR` (its own settings), or use "
                         "another --study or --out")
    return study


def read_sweep(out: Path) -> dict[str, Any]:
    """``OUT/sweep.json``: {"spec": ..., "study": ..., "storage": ...}."""
    path = Path(out) / SWEEP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{out} is not a sweep directory (no {SWEEP_FILE})",
                         "give the --out of an `aezoo sweep`") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path} ({summary(exc, with_type=False, limit=200)})",
                         "delete the sweep directory or fix the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise UsageError(f"cannot read {path} (not a sweep record)",
                         "delete the sweep directory or fix the file")
    return data


def joined(out: Path) -> SweepSpec:
    """The spec of the sweep in ``out`` (``aezoo sweep --join OUT``)."""
    return validate_sweep(read_sweep(out)["spec"])


def states(trials: Sequence[Any]) -> list[str]:
    """Each trial's ``complete``, ``pruned``, ``running``, ``waiting``, ``failed``,
    ``diverged`` or ``interrupted`` (failed by a Ctrl-C or a kill: resumed by a later
    trial)."""
    resumed = {t.user_attrs.get(ATTR + "resumes") for t in trials}
    out = []
    for t in trials:
        outcome = t.user_attrs.get(ATTR + "outcome")
        out.append(str(t.state.name.lower()) if t.state.name != "FAIL"
                   else "interrupted" if outcome == "interrupted" or t.number in resumed
                   else "diverged" if outcome == "diverged" else "failed")
    return out


def counts(trials: Sequence[Any]) -> dict[str, int]:
    return dict(Counter(states(trials)))


def _resume_interrupted(study: Any, out: Path) -> None:
    """Enqueue each interrupted trial again, with its params and run directory (once)."""
    state = import_optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    taken = {t.user_attrs.get(ATTR + "resumes") for t in trials}
    held = held_locks()
    for t in trials:
        run_dir = t.user_attrs.get(ATTR + "run_dir")
        if not run_dir or t.number in taken:
            continue
        if t.state == state.RUNNING:  # a process killed mid-trial?
            if is_running(Path(run_dir), held) or not (Path(run_dir) / STATE_FILE).exists():
                continue  # alive in another process (or too young to tell)
            study.tell(t.number, state=state.FAIL)
        elif not (t.state == state.FAIL and t.user_attrs.get(ATTR + "outcome") == "interrupted"):
            continue
        if (Path(run_dir) / MODEL_FILE).exists() or not (Path(run_dir) / STATE_FILE).exists():
            continue
        study.enqueue_trial(t.params, user_attrs={ATTR + "resumes": t.number,
                                                  ATTR + "run_dir": run_dir},
                            skip_if_exists=False)


class MetricUnknown(UsageError):
    """The sweep's metric is not among a run's per-epoch values (every trial would fail)."""


class TrialReporter(Callback):
    """Reports ``metric`` after every epoch to ``trial`` (duck-typed: ``report(value,
    step)``, ``should_prune()``); when the pruner says so, asks the trainer to stop after
    this epoch (the checkpoint callback, always last, saves it first) with a stop reason
    that ``status.json`` records."""

    def __init__(self, trial: Any, metric: str, pruner: str = "the pruner") -> None:
        self.trial, self.metric, self.pruner = trial, metric, pruner
        self.last: float | None = None
        self.pruned_at: int | None = None

    def _value(self, result: EpochResult) -> float:
        values = result.row()
        values.pop("epoch")  # a step, not a value
        if self.metric not in values:
            raise MetricUnknown(f"the sweep's metric '{self.metric}' is not logged by this "
                                f"run (it logs {', '.join(sorted(values))})",
                                "pass --metric with one of those (a train.metrics entry NAME "
                                "is logged as val_NAME)")
        return float(values[self.metric])

    def on_train_start(self, trainer: Trainer) -> None:
        for result in trainer.history:  # a resumed trial: the epochs its first process ran
            value = self._value(result)
            if math.isfinite(value):
                self.trial.report(value, result.epoch)
                self.last = value

    def on_epoch_end(self, trainer: Trainer, result: EpochResult) -> None:
        value = self.last = self._value(result)
        if not math.isfinite(value):
            return  # the NaN guard (val_loss) or the trial's value decides
        self.trial.report(value, result.epoch)
        if result.epoch < trainer.spec.epochs and self.trial.should_prune():
            self.pruned_at = result.epoch
            trainer.request_stop(f"pruned by the sweep's {self.pruner} pruner at epoch "
                                 f"{result.epoch} ({self.metric} {value:.5g})")


class TrialFailed(Exception):
    """A trial that diverged or failed: recorded as failed, the sweep goes on."""


def _failed(trial: Any, outcome: str, exc: BaseException, say: Callable[[str], None]
            ) -> NoReturn:
    message = str(exc) if isinstance(exc, AezooError) else summary(exc, limit=300)
    trial.set_user_attr(ATTR + "outcome", outcome)
    trial.set_user_attr(ATTR + "error", message)
    say(f"trial {trial.number} {outcome}: {message}")
    raise TrialFailed(message) from None


def run_sweep(spec: SweepSpec, out: str | Path, *, study_name: str | None = None,
              shared: bool = False, say: Callable[[str], None] = lambda _: None,
              callbacks: Callable[[], Sequence[Any]] = tuple) -> SweepResult:
    """Run trials of ``spec``'s study until it holds ``spec.trials`` (counted over every
    process sharing it: finished and running trials, not interrupted ones) or
    ``spec.timeout`` seconds have passed in this process.

    Every param's bounds and choices are checked against the spec first: an unknown path
    or a refused value fails before any trial (and before anything is written).
    """
    from aezoo.config import run_spec_from
    from aezoo.run import resume, train
    from aezoo.training import TrainingError

    optuna = import_optuna()
    out = Path(out)
    check_space(spec, lambda sets: run_spec_from(spec.variant, spec.config, None,
                                                 [*spec.set, *sets]))
    study = open_study(spec, out, study_name, shared)
    url = storage_url(out, spec.storage)
    record = {"spec": spec.model_dump(mode="json"), "study": study.study_name, "storage": url}
    out.mkdir(parents=True, exist_ok=True)
    if not (out / SWEEP_FILE).exists():
        atomic_write(out / SWEEP_FILE, (json.dumps(record, indent=2) + "\n").encode())
    _resume_interrupted(study, out)
    result = SweepResult(out, study.study_name, url)

    def objective(trial: Any) -> float:
        result.ran.append(trial.number)
        values = {path: p.suggest(trial, path) for path, p in spec.params.items()}
        resumes = trial.user_attrs.get(ATTR + "resumes")
        run_dir = Path(trial.user_attrs.get(ATTR + "run_dir")
                       or out / f"trial-{trial.number:04d}")
        trial.set_user_attr(ATTR + "run_dir", str(run_dir.absolute()))
        reporter = TrialReporter(trial, spec.metric, spec.pruner)
        record = {"sweep": str(out.absolute()), "study": study.study_name,
                  "trial": trial.number, "params": values,
                  **({"resumes": resumes} if resumes is not None else {})}
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
        say(f"trial {trial.number}{f' (resuming {resumes})' if resumes is not None else ''}:"
            f" {shown}")
        run_dir.mkdir(parents=True, exist_ok=True)  # trial.json first: trackers read it
        atomic_write(run_dir / TRIAL_FILE, (json.dumps(record) + "\n").encode())
        extra = [reporter, *callbacks()]
        sets = [*spec.set, *param_sets(values)]
        if spec.callbacks:
            sets.append(f"train.callbacks={json.dumps(spec.callbacks)}")
        try:
            run = (resume(run_dir, callbacks=extra) if resumes is not None else
                   train(run_spec_from(spec.variant, spec.config, None, sets), run_dir,
                         callbacks=extra))
        except TrainingInterrupted:
            trial.set_user_attr(ATTR + "outcome", "interrupted")
            raise
        except MetricUnknown:
            raise
        except TrainingError as exc:  # the NaN guard
            _failed(trial, "diverged", exc, say)
        except Exception as exc:  # one trial's failure: recorded, the sweep goes on
            _failed(trial, "failed", exc, say)
        trial.set_user_attr(ATTR + "epochs", len(run.history))
        if reporter.pruned_at is not None:
            trial.set_user_attr(ATTR + "outcome", "pruned")
            say(f"trial {trial.number} pruned at epoch {reporter.pruned_at}")
            raise optuna.TrialPruned(run.stop_reason)
        value = reporter.last
        if value is None or not math.isfinite(value):
            _failed(trial, "failed", ValueError(f"{spec.metric} is {value}"), say)
        trial.set_user_attr(ATTR + "outcome", "completed")
        say(f"trial {trial.number}: {spec.metric} {value:.5g}")
        return value

    started = time.monotonic()
    budget = ("complete", "pruned", "failed", "diverged", "running")
    while sum(n for s, n in counts(study.get_trials(deepcopy=False)).items()
              if s in budget) < spec.trials:
        if spec.timeout is not None and time.monotonic() - started >= spec.timeout:
            say(f"timeout: {spec.timeout:g} s passed")
            break
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        except TrainingInterrupted as exc:
            error = TrainingInterrupted(
                f"{exc.problem}; the sweep stopped", f"run the same command again to resume "
                f"it (or `aezoo sweep --join {out}`)")
            error.exit_code = exc.exit_code
            raise error from None
    result.counts = counts(study.get_trials(deepcopy=False))
    return result
