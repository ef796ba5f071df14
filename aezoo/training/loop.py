"""The generic training loop: any Autoencoder, any in-memory uint8 dataset.

The whole dataset lives on the training device as uint8; each batch is gathered with a
device-side permutation and scaled to [0, 1] there. Losses accumulate on the device.
When the loop looks at them (the NaN/inf guard, stopping) is ``aezoo.training.control``'s
business, so a step on an accelerator never waits for the host.

Everything the loop does not need to train (progress, files, early stopping) is a
callback (``aezoo.training.hooks``). What one step computes is ``aezoo.training.forward``;
``state_dict``/``load_state_dict`` make resume exact (its file: ``aezoo.training.state``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from aezoo import distributed, registry
from aezoo.data.base import ArrayDataset
from aezoo.data.streamed import StreamedDataset
from aezoo.epochs import score
from aezoo.errors import AezooError, ShapeError, SpecError, UsageError, summary
from aezoo.model import Autoencoder
from aezoo.objective import build_transform
from aezoo.protocols import RESERVED_NAMES, format_shape
from aezoo.specs import TrainSpec
from aezoo.tensors import preferred_memory_format, to_unit
from aezoo.training import batches, forward, state, validation
from aezoo.training.background import BackgroundWriter
from aezoo.training.control import (
    Control,
    Diverged,
    Stop,
    TrainingError,
    all_finite,
    diverged,
    interrupted,
)
from aezoo.training.ema import WeightAverage
from aezoo.training.hooks import HOOKS, EpochResult, Outcome, defines
from aezoo.training.optim import make_optimizer, make_schedule
from aezoo.training.precision import autocast_dtype, flush_denormals, resolve_precision


def monitor_mode(spec: TrainSpec) -> Literal["min", "max"]:
    """Whether lower (``min``) or higher (``max``) ``spec.monitor`` values are better:
    ``mode``, or with auto, max for a ``val_METRIC`` of a higher_is_better metric."""
    if spec.mode != "auto":
        return spec.mode
    for name in spec.metrics:
        if spec.monitor == f"val_{name.rpartition(':')[2]}":
            metric = registry.load("metric", name)
            return "max" if getattr(metric, "higher_is_better", False) else "min"
    return "min"


class Trainer:
    """Fits ``model`` on ``data`` as ``spec`` says; callbacks observe, the loop only trains."""

    def __init__(self, model: Autoencoder, data: ArrayDataset | StreamedDataset, spec: TrainSpec,
                 callbacks: Iterable[Any] = (), *,
                 dist: distributed.Dist | None = None) -> None:
        if data.shape != tuple(model.input_shape):
            raise ShapeError(f"dataset {data.name} has {format_shape(data.shape)} images but the "
                             f"model expects {format_shape(model.input_shape)}",
                             "set model.input_shape to the data's shape")
        flush_denormals()
        self.dist = dist or distributed.Dist()
        if data.splits()["train"] < self.dist.world_size or len(data.val) == 0:
            raise TrainingError(f"dataset {data.name} has an empty train or validation split",
                                "use a larger dataset or --limit")
        self.spec = spec
        self.device = distributed.device_for(spec.device, self.dist)
        self.precision = resolve_precision(spec.precision, self.device)
        self.amp_dtype = autocast_dtype(self.precision, self.device)
        self.memory_format = preferred_memory_format(self.device, spec.channels_last)
        self.model = model.to(self.device)
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.data = data
        # memory, mapped or streamed (aezoo.training.batches): views the loop indexes alike
        self.reader = batches.choose(data, spec, self.device, self.dist)
        self.train_images, self.val_images = self.reader.train, self.reader.val
        self.optimizer = make_optimizer(self.model, spec, fused=self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "16")
        self.step_images = spec.batch_size * spec.accumulate  # images per optimiser step
        self.steps_per_epoch = math.ceil(len(self.train_images) / self.step_images)
        self.schedule = make_schedule(spec, self.steps_per_epoch)
        self.step_module, self.term_names = forward.build(self.model, spec, self.dist, self.device)
        self.callbacks = [cb for cb in callbacks
                          if self.dist.is_main or getattr(cb, "all_ranks", False)]
        self._hooks = {h: [getattr(cb, h) for cb in self.callbacks if defines(cb, h)]
                       for h in HOOKS}
        self.history: list[EpochResult] = []
        self.generator = torch.Generator(device=self.device).manual_seed(spec.seed)
        self._epoch_gen_state = self.generator.get_state()
        # Input corruption draws from its own generator, saved as it is at each checkpoint.
        self.corrupt = build_transform(spec.corrupt) if spec.corrupt is not None else None
        self.noise = torch.Generator(device=self.device).manual_seed((spec.seed + 1) % 2**64)
        self.metrics = [(name.rpartition(":")[2], registry.load("metric", name))
                        for name in spec.metrics]  # train.metrics: logged as val_NAME
        self.mode = monitor_mode(spec)  # train.mode, auto resolved: what picks the best epoch
        # Position: ``step`` optimiser steps of ``epoch`` are done (step == steps_per_epoch:
        # the epoch is complete); ``global_step`` counts all steps of the run.
        self.epoch, self.step, self.global_step = 1, 0, 0
        self.outcome = Outcome.NEW
        self.stop_reason: str | None = None
        self.control = Control(self.device, self.dist, spec.check_every)
        self.resumed = False
        self.resume_warnings: list[str] = []  # what may keep a resume from being bit-exact
        self.state_saved = False  # a state this run can --resume from exists (saved or loaded)
        self.files = BackgroundWriter()  # the run directory's writes, off the training thread
        self.acc_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._sums = validation.EpochSums(self.device, len(self.term_names), self.acc_dtype)
        self._compiled = False  # set after the first step: compile errors surface there
        # (global_step, uint8 reconstructions of the first validation images): the last
        # validation's, for the epoch's pictures (validation.reconstructions)
        self.val_head: tuple[int, torch.Tensor] | None = None
        self.ema = WeightAverage(self.model, spec.ema) if spec.ema is not None else None

    # -- data ------------------------------------------------------------------------
    def batch(self, images: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """Gather a uint8 batch and scale it to float32 in [0, 1] on the device."""
        return to_unit(images[index], self.memory_format)

    # -- what callbacks may use ---------------------------------------------------------
    def running_loss(self) -> float:
        """Mean training loss of the epoch so far. Syncs with the device: call sparingly."""
        return float(self._sums.loss[0].item()) / max(self._sums.images, 1)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def log(self, name: str, value: float | torch.Tensor) -> None:
        """Add ``value`` to this epoch's ``name`` (mean over calls, across ranks; no sync:
        a number stays on the host, a tensor on its device until the epoch's end)."""
        if name in RESERVED_NAMES:
            raise UsageError(f"trainer.log('{name}', ...) would overwrite a standard column",
                             f"log under another name (not {', '.join(RESERVED_NAMES)})")
        self._sums.log(name, value)

    def averaged(self) -> contextlib.AbstractContextManager[None]:
        """The model holds its EMA weights inside this block (a no-op without ``ema``)."""
        return self.ema.swapped_in() if self.ema is not None else contextlib.nullcontext()

    def score(self, result: EpochResult) -> float:
        """``train.monitor`` of ``result`` as a score, lower better (``train.mode``): what
        best.safetensors and early stopping compare. NaN when the value is not finite."""
        value = result.value(self.spec.monitor)
        if value is None:
            shown = ["train_loss", "val_loss", *result.terms]
            raise SpecError(f"train.monitor '{self.spec.monitor}' is not among the epoch's "
                            f"values ({', '.join(shown)})", "monitor one of those",
                            key="train.monitor")
        return score(value, self.mode)

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (e.g. early stopping)."""
        self.stop_reason = self.stop_reason or reason
        self.control.request_stop()

    def weights_finite(self) -> bool:
        """Whether every parameter is finite (one sync; for checkpoint writers)."""
        return all_finite(self.model.parameters())

    # -- the loop ----------------------------------------------------------------------
    def _call(self, hook: str, *args: Any) -> None:
        for fn in self._hooks[hook]:
            fn(self, *args)

    def fit(self) -> list[EpochResult]:
        """Train to ``spec.epochs`` (from where a loaded state left off); the history."""
        control = self.control
        control.reset()
        self.outcome = Outcome.RUNNING
        outcome = Outcome.FAILED
        try:
            self._call("on_train_start")
            with control.signals():
                while self.epoch <= self.spec.epochs and control.stop is None:
                    if self.step < self.steps_per_epoch:
                        self._train_epoch()
                    if self.step >= self.steps_per_epoch:
                        self.epoch, self.step = self.epoch + 1, 0
            outcome = (Outcome.COMPLETED if control.stop is None else
                       Outcome.STOPPED if control.stop == Stop.REQUESTED else
                       Outcome.INTERRUPTED)
        except Diverged as exc:
            outcome = Outcome.DIVERGED
            raise diverged(exc.step, self.steps_per_epoch,
                           self.state_saved or self.resumed) from None
        finally:
            self.outcome = outcome
            if self.spec.anneal:  # the model leaves with its full objective
                self.model.objective.scale({})
            self.files.hold()  # every end-of-run hook runs; a write's error waits
            try:
                self._call("on_train_end")
            finally:
                written = self.files.close()  # all handed over is in place before fit returns
        # Reached only when nothing else is raised: the run's own error comes first.
        if outcome == Outcome.INTERRUPTED:
            assert control.stop is not None
            raise interrupted(control.stop, self.global_step, self.epoch, self.step,
                              self.steps_per_epoch) from written
        if written is not None:
            raise written
        return self.history

    def _train_epoch(self) -> None:
        if self.step == 0:  # a fresh epoch (otherwise load_state restored the partial one)
            self._epoch_gen_state = self.generator.get_state()
            self._sums.start()
        self._call("on_epoch_start", self.epoch)
        perm = self.reader.start_epoch(
            torch.randperm(len(self.train_images), device=self.device, generator=self.generator),
            self.epoch, self.step, self.step_images, self.spec.batch_size)
        start = time.perf_counter()
        try:
            self._steps(perm)
        except (Diverged, AezooError):
            raise
        except Exception as exc:  # only the first compiled step's: that is where compile runs
            if self.spec.compile and not self._compiled:
                raise TrainingError(f"torch.compile failed on {self.device} ({summary(exc)})",
                                    "drop --compile (inductor on CPU needs a C++ compiler; "
                                    "on GPU, triton)") from exc
            raise
        finally:
            self._sums.seconds += time.perf_counter() - start
        if self.step < self.steps_per_epoch:
            return  # interrupted: no validation for a partial epoch
        self._end_epoch()

    def _steps(self, perm: torch.Tensor) -> None:
        """The hot loop: the epoch's remaining optimiser steps."""
        model, opt, bs, spec = self.step_module, self.optimizer, self.spec.batch_size, self.spec
        control, device, amp_dtype, sums = self.control, self.device, self.amp_dtype, self._sums
        model.train()
        params = [p for g in opt.param_groups for p in g["params"]]
        scaled, clip = self.scaler.is_enabled(), spec.grad_clip
        set_lr = not getattr(self.schedule, "constant", False)
        anneal, objective = self.spec.anneal, self.model.objective
        sync_every = spec.checkpoint_every or 0
        step_start, step_end = self._hooks["on_step_start"], self._hooks["on_step_end"]
        before_step = self._hooks["on_before_optimizer_step"]
        big = self.step_images
        for i in range(self.step, self.steps_per_epoch):
            index = perm[i * big:(i + 1) * big]
            if set_lr:
                lr = self.schedule(self.global_step)
                for group in opt.param_groups:
                    group["lr"] = lr
            if anneal:  # a pure function of the step: a resumed run gets the same factors
                objective.scale({n: a.factor(self.global_step, self.steps_per_epoch)
                                 for n, a in anneal.items()}, device)
            for fn in step_start:
                fn(self, i + 1)
            opt.zero_grad(set_to_none=True)
            values = forward.accumulate(self, model, index, bs, scaled, device, amp_dtype)
            if scaled and (clip is not None or before_step):  # hooks see true gradients
                self.scaler.unscale_(opt)
            if clip is not None:
                nn.utils.clip_grad_norm_(params, clip)
            control.check(values if values.dim() == 0 else values[0], self.global_step + 1)
            for fn in before_step:
                fn(self, opt)
            if scaled:
                self.scaler.step(opt)
                self.scaler.update()
            else:
                opt.step()
            if self.ema is not None:
                self.ema.update()
            sums.loss += values
            sums.images += len(index)
            self.step, self.global_step = i + 1, self.global_step + 1
            self._compiled = True
            control.after_step(self.global_step, sync_every)
            for fn in step_end:
                fn(self, i + 1, sums.images)
            if control.interrupted:
                break

    def _end_epoch(self) -> None:
        self.control.at_epoch_end(self.global_step)
        train, images, logged = self._sums.reduce(self.dist)
        self._call("on_validation_start")
        with self.averaged():
            val = self.evaluate_terms()
        self._call("on_validation_end", val)
        if not (math.isfinite(train[0]) and math.isfinite(val["loss"])):
            raise Diverged(self.global_step)
        result = EpochResult.measured(
            self.epoch, dict(zip(["loss", *self.term_names], train, strict=True)),
            {"loss": val["loss"], **{n: val[n] for n in self.term_names},
             **{n: val[f"val_{n}"] for n, _ in self.metrics}}, logged, self._sums.seconds,
            images, self.lr)
        self.history.append(result)
        self._call("on_epoch_end", result)

    def evaluate_terms(self, images: torch.Tensor | None = None) -> dict[str, float]:
        """Mean total (``loss``) and terms over ``images`` (default: the validation split,
        across all ranks); see ``aezoo.training.validation``."""
        values, head = validation.evaluate_terms(self, images)
        if head is not None:
            self.val_head = (self.global_step, head)
        return values

    # -- resume: the state (a file of it: aezoo.training.state) ----------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where training is now, as torch's
        ``state_dict``s are: tensors and plain values. A complete epoch counts as the next
        one's step 0."""
        epoch, step = ((self.epoch + 1, 0) if self.step >= self.steps_per_epoch
                       else (self.epoch, self.step))
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return {
            "epoch": epoch, "step": step, "global_step": self.global_step,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.tensors() if self.ema is not None else {},
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if cuda else [],
                    # mid-epoch: the generator as it was when the epoch drew its permutation
                    "generator": self._epoch_gen_state if step else self.generator.get_state(),
                    "noise": self.noise.get_state()},  # input corruption: as it is now
            "sums": self._sums.state_dict(partial=step > 0),
            "stopped": self.stop_reason,
            "history": [r.as_dict() for r in self.history],
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks
                          if getattr(cb, "state_key", None)},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` (``stopped`` is for ``aezoo.run`` to judge).
        Flags given on resume win: the lr follows the schedule, weight decay the spec."""
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        for i, cuda_state in enumerate(rng["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, i)
        self.generator.set_state(rng["generator"])
        self._epoch_gen_state = rng["generator"]
        if rng["noise"] is not None:  # absent in states saved before input corruptions
            self.noise.set_state(rng["noise"])
        if self.ema is not None:
            self.ema.load(state["ema"])
        self.epoch, self.step, self.global_step = (
            int(state["epoch"]), int(state["step"]), int(state["global_step"]))
        self._sums.load_state_dict(state["sums"])
        self.history = [EpochResult(**r) for r in state["history"]]
        for cb in self.callbacks:
            key = getattr(cb, "state_key", None)
            if key is not None and key in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][key])
        for group in self.optimizer.param_groups:
            group.update(lr=self.schedule(self.global_step), weight_decay=self.spec.weight_decay)
        self.resumed = True

    def save_state(self, path: str | Path) -> None:
        """Write :meth:`state_dict` to ``path`` (safetensors; ``aezoo.training.state``)."""
        state.save_state(self, path)
        self.state_saved = True

    def load_state(self, path: str | Path) -> None:
        """Continue from a state file written by :meth:`save_state`, checked first."""
        self.resume_warnings = state.load_state(self, path)
