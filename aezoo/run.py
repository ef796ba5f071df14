"""A training run end to end: output dir, data, model, trainer, files. No printing.

The files of a run directory are described (and named) in ``aezoo.rundir``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aezoo import _interrupts, distributed, registry
from aezoo.callbacks import load_callback
from aezoo.checkpoint import load_matching, save
from aezoo.config import callback_params, edit_callbacks, merge, resolve_model
from aezoo.data import ArrayDataset, declared_shape, load_dataset
from aezoo.data.streamed import StreamedDataset
from aezoo.errors import AezooError, AezooWarning, ShapeError, UsageError
from aezoo.model import Autoencoder, from_spec, on_meta, probe
from aezoo.objective import check_requires
from aezoo.protocols import format_shape
from aezoo.registry import FIRST_PARTY
from aezoo.rundir import (
    MODEL_FILE,
    STATE_FILE,
    RunLock,
    check_writable,
    claim_new_dir,
    default_out_dir,
    drop_set_aside,
    prepare_out_dir,
    read_run_spec,
    set_aside,
    write_run_spec,
)
from aezoo.specs import RunSpec, TrainSpec, validate
from aezoo.training import EpochResult, Trainer, TrainingError, TrainingInterrupted
from aezoo.training.precision import autocast_dtype
from aezoo.training.state import read_info

# Settings that may change on --resume: they leave the data order and model untouched.
RESUMABLE = ("epochs", "device", "lr", "grad_clip", "patience", "min_delta", "precision",
             "compile", "channels_last", "checkpoint_every", "check_every", "images",
             "callbacks", "callback_params", "reader", "workers", "memory_budget")


@dataclass
class RunResult:
    spec: RunSpec
    out_dir: Path
    model: Autoencoder
    history: list[EpochResult]
    rank: int = 0
    stop_reason: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. a resume that may not be exact
    resumed: bool = False  # continued from a state: ``history`` holds earlier sessions' epochs

    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE


def fit_spec(spec: RunSpec, data: ArrayDataset | StreamedDataset, follow_data: bool = True
             ) -> RunSpec:
    """The model's input shape follows the data, unless the user fixed it (``follow_data``
    False): then a mismatch is an error, not a silent change."""
    if tuple(spec.model.input_shape) == data.shape:
        return spec
    if not follow_data:
        want, got = (format_shape(s) for s in (spec.model.input_shape, data.shape))
        raise ShapeError(f"model.input_shape is {want} but dataset {data.name} has {got} images",
                         "drop model.input_shape (it follows the data), or convert the data "
                         "with --channels / --image-size")
    model = resolve_model(spec.model.model_copy(update={"input_shape": data.shape}))
    return spec.model_copy(update={"model": model})


def run_callbacks(spec: TrainSpec, out: Path, extra: Iterable[Any] = ()) -> list[Any]:
    """The standard callbacks of a run dir, then ``extra`` (e.g. progress), checkpointer last
    (so the state it saves includes the other callbacks' state for this epoch).

    aezoo's own come through the ``aezoo.callbacks`` entry points like a plugin's, by their
    qualified names, so a plugin's same-named callback cannot stand in for them.
    """
    def own(name: str) -> Any:
        return load_callback(f"{FIRST_PARTY}:{name}", out)

    builtins = ["metrics", "status", *(["images", "curves"] if spec.images else []),
                *(["early-stopping"] if spec.patience is not None else [])]
    callbacks: list[Any] = [own(name) for name in builtins]
    callbacks.extend(load_callback(name, out, spec.callback_params.get(name))
                     for name in spec.callbacks)
    callbacks.extend(extra)
    callbacks.append(own("checkpoint"))
    return callbacks


def train(spec: RunSpec, out: str | os.PathLike[str] | None = None, *, force: bool = False,
          callbacks: Iterable[Any] = (), follow_data: bool = True) -> RunResult:
    """Train ``spec`` from scratch into ``out`` (see ``aezoo.rundir`` for the files).

    Without ``out``, a new ``runs/VARIANT-TIME[-N]`` directory that no other run uses. The
    directory is locked while this process writes it. With ``force``, a previous run's
    files are set aside only once training starts, and deleted once the new run has
    finished: a run that fails before then leaves the old one exactly as it was.
    The model's input shape follows the data unless ``follow_data`` is False.

    Under torchrun every rank calls this; rank 0 alone writes files.
    """
    dist, device = distributed.setup(spec.train.device)
    lock: RunLock | None = None
    created: list[Path] = []

    def open_dir() -> str:
        nonlocal lock, created
        target = Path(out) if out is not None else None
        if target is None:
            target, created = claim_new_dir(default_out_dir(spec))
        lock = RunLock(target)
        created = prepare_out_dir(target, force, lock) + created
        return str(target)

    try:
        check_switches(spec.train, device)
        run_dir = Path(distributed.broadcast_text(
            distributed.on_main(open_dir, dist, device) or "", dist, device))
        try:
            return _execute(spec, run_dir, callbacks, dist, state=None,
                            follow_data=follow_data, replacing=force)
        except BaseException:
            if lock is not None:
                lock.release()
            for p in created:  # a run that failed before writing anything leaves no trace
                with contextlib.suppress(OSError):  # release() removed our lock file; one
                    p.rmdir()  # there now is another process's: rmdir fails, as it should
            raise
    finally:
        if lock is not None:
            lock.release()
        distributed.shutdown(dist)


def resume(run_dir: Path, overrides: Mapping[str, Any] | None = None, *,
           callbacks: Iterable[Any] = (), drop_callbacks: Iterable[str] = ()) -> RunResult:
    """Continue the run in ``run_dir`` from its ``state.safetensors``.

    ``overrides`` may change the train settings in ``RESUMABLE`` (e.g. more ``epochs``,
    a lower ``lr`` after a divergence); with none, the result equals an uninterrupted run.
    ``overrides["callbacks"]`` are added to the run's own; ``drop_callbacks`` are taken out.
    ``overrides["callback_params"]`` is merged into the run's own (``{"NAME": {"KEY":
    VALUE}}`` changes that one value); a callback added now gets its params from it, else
    its defaults.
    """
    run_dir = Path(run_dir)
    spec = read_run_spec(run_dir)
    overrides = dict(overrides or {})
    drop_callbacks = list(drop_callbacks)
    if "callbacks" in overrides or drop_callbacks:  # added to (taken from) the run's own
        overrides["callbacks"] = edit_callbacks(spec.train.callbacks,
                                                overrides.get("callbacks", ()), drop_callbacks)
    if "callback_params" in overrides:  # key by key into the run's own, like --set
        overrides["callback_params"] = merge(spec.train.callback_params,
                                             overrides["callback_params"])
    fixed = sorted(set(overrides) - set(RESUMABLE))
    if fixed:
        raise UsageError(f"{', '.join(fixed)} cannot change when resuming",
                         f"resume as is, or start a new run; changeable: {', '.join(RESUMABLE)}")
    train_spec = validate(TrainSpec, {**spec.train.model_dump(), **overrides}, "train")
    if {"callbacks", "callback_params"} & set(overrides):  # validated as a new run's are:
        # a dropped callback's params go, an added one's defaults come
        dropped = set(spec.train.callbacks) - set(train_spec.callbacks)
        kept = {k: v for k, v in train_spec.callback_params.items() if k not in dropped}
        train_spec = train_spec.model_copy(update={"callback_params": callback_params(
            train_spec.model_copy(update={"callback_params": kept}))})
    spec = spec.model_copy(update={"train": train_spec})
    state = run_dir / STATE_FILE
    if not state.exists():
        raise UsageError(f"{run_dir} has no {STATE_FILE}: the run stopped before its "
                         "first checkpoint", "start it again (with --force)")
    info = read_info(state)
    # A run stopped after its last step but before its final save is finished, not refused.
    if info["epoch"] > spec.train.epochs and (run_dir / MODEL_FILE).exists():
        raise UsageError(f"{run_dir} has already finished all {spec.train.epochs} epochs",
                         f"pass --epochs N (N > {spec.train.epochs}) to train further")
    if info.get("stopped") and not {"epochs", "patience"} & set(overrides):
        raise UsageError(f"{run_dir} has finished: {info['stopped']}",
                         "pass a larger --patience (or --epochs) to train it further")
    dist, device = distributed.setup(spec.train.device)
    lock = RunLock(run_dir, resuming=True)
    try:
        check_switches(spec.train, device)
        # Lock and probe now (before data loads); run.json is rewritten once the state has
        # loaded, so a resume refused for a bad state leaves the run dir exactly as it was.
        def open_dir() -> None:
            lock.acquire()
            check_writable(run_dir)

        distributed.on_main(open_dir, dist, device)
        return _execute(spec, run_dir, callbacks, dist, state=state)
    finally:
        lock.release()
        distributed.shutdown(dist)


def start_from(model: Autoencoder, init: str, strict: bool) -> None:
    """Load ``init``'s weights into ``model`` (``train.init``); what did not fit is warned."""
    from aezoo.pretrained import locate

    located = locate(init)
    report = load_matching(model, located.path, located.source, strict)
    if report.skipped:
        more = f" (and {len(report.skipped) - 5} more)" if len(report.skipped) > 5 else ""
        warnings.warn(AezooWarning(
            f"--init {located.source}: loaded {report.loaded} tensors; not loaded: "
            f"{'; '.join(report.skipped[:5])}{more}"), stacklevel=2)


def check_switches(spec: TrainSpec, device: torch.device) -> None:
    """Fail on a precision the device cannot run before any file or data is touched."""
    autocast_dtype(spec.precision, device)


def check_parts(spec: RunSpec, follow_data: bool = True) -> None:
    """Declared dependencies between parts, before any data loads: each part's companions
    (``requires``) and, where the input shape is known without the data, the encoder
    outputs the regularisers read (``needs``, on a meta-device twin: nothing allocated)."""
    check_requires(spec)
    if not any(registry.load("regularizer", r.name).needs for r in spec.model.regularizers):
        return
    shape = declared_shape(spec.data) if follow_data else spec.model.input_shape
    if shape is None:  # a folder's shape: known once it loads, when the model is built
        return
    try:
        probe(on_meta(resolve_model(spec.model.model_copy(update={"input_shape": shape}))))
    except AezooError:
        raise
    except Exception:  # noqa: S110 - an op without a meta kernel: the real build checks
        pass


def _execute(spec: RunSpec, out: Path, callbacks: Iterable[Any], dist: distributed.Dist,
             state: Path | None, follow_data: bool = True, replacing: bool = False
             ) -> RunResult:
    try:
        return _run(spec, out, callbacks, dist, state, follow_data, replacing)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop: say what is kept
        raise aborted(out, spec.train.epochs) from None


def aborted(out: Path, epochs: int) -> TrainingInterrupted:
    """What a run directory holds after a KeyboardInterrupt, and how to go on from it."""
    info: dict[str, Any] | None = None
    with contextlib.suppress(AezooError, OSError):
        info = read_info(out / STATE_FILE) if (out / STATE_FILE).exists() else None
    if info is None:
        return TrainingInterrupted("SIGINT: training aborted before its first checkpoint; "
                                   "nothing to resume was saved",
                                   f"train again (with --force to reuse {out})")
    epoch, step = info.get("epoch"), info.get("step")
    if isinstance(epoch, int) and epoch > epochs and not (out / MODEL_FILE).exists():
        return TrainingInterrupted(
            f"SIGINT: training aborted after its last epoch, before the final save; the "
            f"last checkpoint ({out / STATE_FILE}, all {epochs} epochs) is kept",
            f"finish it with `aezoo train --resume {out}`")
    where = (f"after epoch {epoch - 1}" if step == 0 and isinstance(epoch, int)
             else f"epoch {epoch}, step {step}")
    return TrainingInterrupted(f"SIGINT: training aborted; the last checkpoint "
                               f"({out / STATE_FILE}, {where}) is kept",
                               f"continue with `aezoo train --resume {out}`")


def _run(spec: RunSpec, out: Path, callbacks: Iterable[Any], dist: distributed.Dist,
         state: Path | None, follow_data: bool, replacing: bool) -> RunResult:
    check_parts(spec, follow_data)
    if dist.enabled:  # rank 0 alone downloads and verifies; the others wait for it
        from aezoo.data.info import prefetch

        distributed.on_main(lambda: prefetch(spec.data.name), dist,
                            distributed.device_for(spec.train.device, dist))
    reader = spec.train.reader  # folder: streams under reader stream, or when too big
    data = load_dataset(spec.data, offline=not dist.is_main,
                        stream=None if reader == "auto" else reader == "stream")
    spec = fit_spec(spec, data, follow_data)
    torch.manual_seed(spec.train.seed)  # the init is part of the run: seed it
    model = from_spec(spec.model)
    if state is None and spec.train.init:  # fine-tuning: start from those weights
        start_from(model, spec.train.init, spec.train.init_strict)
    trainer = Trainer(model, data, spec.train, run_callbacks(spec.train, out, callbacks),
                      dist=dist)
    if state is not None:
        trainer.load_state(state)
    if dist.is_main:
        if replacing:  # everything that can fail before training has passed: now it may go
            set_aside(out)
        write_run_spec(spec, out)
    try:
        history = trainer.fit()
    except (TrainingError, TrainingInterrupted) as exc:  # name the real run directory
        error = type(exc)(exc.problem, (exc.fix or "").replace("RUN_DIR", str(out)))
        error.exit_code = exc.exit_code
        raise error from None
    if dist.is_main:
        with _interrupts.Deferred():  # one Ctrl-C now waits for the save: the run is done
            with trainer.averaged():  # with train.ema, the final model is the average
                save(trainer.model, out / MODEL_FILE)
            drop_set_aside(out)  # the replaced run's files: their replacements all exist now
    return RunResult(spec, out, trainer.model, history, dist.rank, trainer.stop_reason,
                     list(trainer.resume_warnings), trainer.resumed)
