"""Hyperparameter sweeps: Optuna searches, prunes, stores and shares; aezoo translates each
trial's params into ``--set`` overrides and trains an ordinary run directory.

Layout of a sweep directory ``OUT``: ``sweep.json`` (the sweep spec, the study name and
storage: ``--join OUT`` reads it), ``study.journal`` (Optuna's journal file, the default
storage), ``trial-NNNN/`` (one run directory per trial, with ``trial.json``), and what
``aezoo sweep show`` writes (``best.toml``, ``history.png``, ``importances.png``).

Ctrl-C stops after the running trial's checkpoint; the trial is marked failed with
``aezoo.outcome = interrupted`` and the same command enqueues it again, resuming its run
directory. A trial that diverges or fails is recorded as failed; the sweep goes on.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from aezoo.callbacks.pruning import MetricUnknown, TrialReporter
from aezoo.errors import AezooError, UsageError, summary
from aezoo.fileio import atomic_write
from aezoo.rundir import MODEL_FILE, STATE_FILE, TRIAL_FILE, held_locks, is_running
from aezoo.sweepspec import SweepSpec, check_space, param_sets, space_of, validate_sweep
from aezoo.training import TrainingInterrupted

SWEEP_FILE = "sweep.json"
JOURNAL_FILE = "study.journal"
ATTR = "aezoo."  # prefix of aezoo's user attributes on studies and trials


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


def trial_dir(out: Path, number: int) -> Path:
    return out / f"trial-{number:04d}"


def storage_url(out: Path, storage: str | None) -> str:
    return storage or f"journal:{(out / JOURNAL_FILE).absolute()}"


def open_storage(url: str) -> Any:
    """``journal:PATH`` (a journal file) or any URL Optuna takes (``sqlite:///x.db``)."""
    optuna = import_optuna()
    try:
        if url.startswith("journal:"):
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            path = Path(url.removeprefix("journal:"))
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        return optuna.storages.get_storage(url)
    except Exception as exc:  # each backend and driver raises its own
        raise AezooError(f"cannot open the study storage {url} ({summary(exc, limit=200)})",
                         "check the URL, its database driver and that the server is up"
                         ) from None


def identity(spec: SweepSpec) -> dict[str, Any]:
    """What makes two sweeps one study: the space, the metric and the trials' base."""
    return {"space": space_of(spec.params), "metric": spec.metric, "direction": spec.goal,
            "variant": spec.variant, "config": spec.config, "set": list(spec.set)}


def _sampler(optuna: Any, spec: SweepSpec, seed: int | None) -> Any:
    samplers = optuna.samplers
    if spec.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    if spec.sampler == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    if spec.sampler == "qmc":
        return samplers.QMCSampler(seed=seed)
    return samplers.TPESampler(seed=seed)


def _seed(spec: SweepSpec, existing: int, shared: bool) -> int | None:
    """``spec.seed`` for the first process of a new study (the sweep is reproducible);
    another for a process that resumes or joins, so it does not draw the very values
    the first process drew (each process seeds its own sampler)."""
    if spec.seed is None or (existing == 0 and not shared):
        return spec.seed
    return (spec.seed + 7919 * existing + os.getpid()) % 2**31


def _pruner(optuna: Any, spec: SweepSpec) -> Any:
    pruners = optuna.pruners
    if spec.pruner == "hyperband":
        return pruners.HyperbandPruner(min_resource=1)
    if spec.pruner == "successive-halving":
        return pruners.SuccessiveHalvingPruner(min_resource=1)
    if spec.pruner == "none":
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
    pruner = _pruner(optuna, spec)
    try:
        try:  # loaded first: a refused join appends nothing to the storage
            study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
            existing = len(study.get_trials(deepcopy=False))
            study.sampler = _sampler(optuna, spec, _seed(spec, existing, shared))
        except KeyError:  # no such study yet
            sampler = _sampler(optuna, spec, _seed(spec, 0, shared))
            study = optuna.create_study(storage=storage, study_name=study_name,
                                        direction=spec.goal, sampler=sampler, pruner=pruner,
                                        load_if_exists=True)
    except Exception as exc:
        raise AezooError(f"cannot open study {study_name} in {url} "
                         f"({summary(exc, limit=200)})", "check --storage") from None
    if len(study.directions) != 1 or study.direction.name.lower() != spec.goal:
        raise UsageError(f"study {study_name} in {url} does not {spec.goal} one value",
                         "use another --study, or --direction as the study has it")
    mine = identity(spec)
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


def trial_state(trial: Any, resumed: set[Any]) -> str:
    """``complete``, ``pruned``, ``running``, ``waiting``, ``failed``, ``diverged`` or
    ``interrupted`` (failed by a Ctrl-C or a kill: resumed by a later trial)."""
    state = trial.state.name.lower()
    if state != "fail":
        return str(state)
    outcome = trial.user_attrs.get(ATTR + "outcome")
    if outcome == "interrupted" or trial.number in resumed:
        return "interrupted"
    return "diverged" if outcome == "diverged" else "failed"


def _counts(study: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    trials = study.get_trials(deepcopy=False)
    resumed = {t.user_attrs.get(ATTR + "resumes") for t in trials}
    for t in trials:
        state = trial_state(t, resumed)
        counts[state] = counts.get(state, 0) + 1
    return counts


def _budget_used(study: Any) -> int:
    """Trials that count towards ``trials``: finished ones (an interrupted one is resumed,
    not counted) and those running in this or another process."""
    c = _counts(study)
    return sum(c.get(s, 0) for s in ("complete", "pruned", "failed", "diverged", "running"))


def _resume_interrupted(study: Any, out: Path) -> None:
    """Enqueue each interrupted trial again, with its params and run directory (once)."""
    optuna = import_optuna()
    trials = study.get_trials(deepcopy=False)
    taken = {t.user_attrs.get(ATTR + "resumes") for t in trials}
    held = held_locks()
    for t in trials:
        run_dir = t.user_attrs.get(ATTR + "run_dir")
        if not run_dir or t.number in taken:
            continue
        if t.state == optuna.trial.TrialState.RUNNING:  # a process killed mid-trial?
            if is_running(Path(run_dir), held) or not (Path(run_dir) / STATE_FILE).exists():
                continue  # alive in another process (or too young to tell)
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        elif not (t.state == optuna.trial.TrialState.FAIL
                  and t.user_attrs.get(ATTR + "outcome") == "interrupted"):
            continue
        if (Path(run_dir) / MODEL_FILE).exists() or not (Path(run_dir) / STATE_FILE).exists():
            continue
        study.enqueue_trial(t.params, user_attrs={ATTR + "resumes": t.number,
                                                  ATTR + "run_dir": run_dir},
                            skip_if_exists=False)


class TrialFailed(Exception):
    """A trial that diverged or failed: recorded as failed, the sweep goes on."""


def _objective(spec: SweepSpec, out: Path, optuna: Any, say: Callable[[str], None],
               callbacks: Callable[[], Sequence[Any]], ran: list[int]
               ) -> Callable[[Any], float]:
    from aezoo.config import run_spec_from
    from aezoo.run import resume, train
    from aezoo.training import TrainingError

    def suggest(trial: Any) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for path, p in spec.params.items():
            if p.kind == "choice":
                texts = [json.dumps(c) for c in p.choices or []]
                values[path] = json.loads(trial.suggest_categorical(path, texts))
            elif p.kind in ("int", "logint"):
                values[path] = trial.suggest_int(path, int(p.low or 0), int(p.high or 0),
                                                 step=int(p.step or 1), log=p.kind == "logint")
            else:
                values[path] = trial.suggest_float(path, p.low, p.high, step=p.step,
                                                   log=p.kind == "log")
        return values

    def objective(trial: Any) -> float:
        ran.append(trial.number)
        values = suggest(trial)
        resumes = trial.user_attrs.get(ATTR + "resumes")
        run_dir = Path(trial.user_attrs.get(ATTR + "run_dir") or trial_dir(out, trial.number))
        trial.set_user_attr(ATTR + "run_dir", str(run_dir.absolute()))
        reporter = TrialReporter(trial, spec.metric, spec.pruner)
        record = {"sweep": str(out.absolute()), "study": trial.study.study_name,
                  "trial": trial.number, "params": values,
                  **({"resumes": resumes} if resumes is not None else {})}
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
        say(f"trial {trial.number}{f' (resuming {resumes})' if resumes is not None else ''}:"
            f" {shown}")
        run_dir.mkdir(parents=True, exist_ok=True)  # trial.json first: trackers read it
        atomic_write(run_dir / TRIAL_FILE, (json.dumps(record) + "\n").encode())
        extra = [reporter, *callbacks()]
        try:
            if resumes is not None:
                result = resume(run_dir, callbacks=extra)
            else:
                sets = [*spec.set, *param_sets(values)]
                if spec.callbacks:
                    sets.append(f"train.callbacks={json.dumps(spec.callbacks)}")
                result = train(run_spec_from(spec.variant, spec.config, None, sets), run_dir,
                               callbacks=extra)
        except TrainingInterrupted:
            trial.set_user_attr(ATTR + "outcome", "interrupted")
            raise
        except MetricUnknown:
            raise
        except TrainingError as exc:  # the NaN guard
            _failed(trial, "diverged", exc, say)
        except Exception as exc:  # one trial's failure: recorded, the sweep goes on
            _failed(trial, "failed", exc, say)
        trial.set_user_attr(ATTR + "epochs", len(result.history))
        if reporter.pruned_at is not None:
            trial.set_user_attr(ATTR + "outcome", "pruned")
            say(f"trial {trial.number} pruned at epoch {reporter.pruned_at}")
            raise optuna.TrialPruned(result.stop_reason)
        value = reporter.last
        if value is None or not math.isfinite(value):
            _failed(trial, "failed", ValueError(f"{spec.metric} is {value}"), say)
        trial.set_user_attr(ATTR + "outcome", "completed")
        say(f"trial {trial.number}: {spec.metric} {value:.5g}")
        return float(value)  # type: ignore[arg-type]

    return objective


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
    process sharing it) or ``spec.timeout`` seconds have passed in this process.

    Every param's bounds and choices are checked against the spec first: an unknown path
    or a refused value fails before any trial (and before anything is written).
    """
    from aezoo.config import run_spec_from

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
    objective = _objective(spec, out, optuna, say, callbacks, result.ran)
    started = time.monotonic()
    while _budget_used(study) < spec.trials:
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
    result.counts = _counts(study)
    return result
