"""The generic training loop: any Autoencoder, any in-memory uint8 dataset.

The whole dataset lives on the training device as uint8; each batch is gathered with a
device-side permutation and scaled to [0, 1] there. Losses accumulate on the device.
When the loop looks at them (the NaN/inf guard, stopping) is ``aezoo.training.control``'s
business, so a step on an accelerator never waits for the host.

Everything the loop does not need to train (progress, files, early stopping) is a
callback (``aezoo.training.hooks``). ``save_state``/``load_state`` make resume exact
(``aezoo.training.state``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aezoo import distributed, registry
from aezoo.data.base import ArrayDataset
from aezoo.data.streamed import StreamedDataset
from aezoo.errors import AezooError, PluginError, ShapeError, SpecError, UsageError, summary
from aezoo.model import Autoencoder, probe
from aezoo.objective import RECON, build_transform, total
from aezoo.protocols import RESERVED_NAMES, format_shape
from aezoo.specs import TrainSpec
from aezoo.tensors import preferred_memory_format, to_unit
from aezoo.training import batches, state, validation
from aezoo.training.background import BackgroundWriter
from aezoo.training.control import SIGNAL_CODES, Control, Diverged, Stop, all_finite
from aezoo.training.ema import WeightAverage
from aezoo.training.hooks import HOOKS, EpochResult, Outcome, defines
from aezoo.training.optim import make_optimizer, make_schedule
from aezoo.training.precision import (
    autocast,
    autocast_dtype,
    flush_denormals,
    resolve_precision,
)


class TrainingError(AezooError):
    """Training cannot go on (e.g. the loss diverged)."""


class TrainingInterrupted(AezooError):
    """Stopped by SIGINT/SIGTERM after a step; the run directory can be resumed."""

    exit_code = 130


class _LossStep(nn.Module):
    """The objective as one forward, so DDP and torch.compile see one module call.

    Returns the total (0-d) when the objective has one term, else ``[total, term, ...]``
    in ``names`` order: one device tensor, so accumulating the terms costs no sync."""

    def __init__(self, model: Autoencoder, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = self.model.terms(x, target)
        if not self.names:
            return total(terms).float()
        if len(terms) != len(self.names) or any(n not in terms for n in self.names):
            raise PluginError(f"the objective's terms changed from {self.names} to "
                              f"{list(terms)}", "return the same named terms every step")
        return torch.stack([total(terms).float(), *(terms[n].float() for n in self.names)])


def monitor_sign(spec: TrainSpec) -> float:
    """1 when lower ``spec.monitor`` values are better, -1 when higher are (``mode`` max,
    or auto and a ``val_METRIC`` of a ``train.metrics`` metric that is higher_is_better)."""
    if spec.mode != "auto":
        return -1.0 if spec.mode == "max" else 1.0
    for name in spec.metrics:
        if spec.monitor == f"val_{name.rpartition(':')[2]}":
            return -1.0 if getattr(registry.load("metric", name), "higher_is_better",
                                   False) else 1.0
    return 1.0


class Trainer:
    """Fits ``model`` on ``data`` as ``spec`` says; callbacks observe, the loop only trains."""

    def __init__(self, model: Autoencoder, data: ArrayDataset | StreamedDataset, spec: TrainSpec,
                 callbacks: Iterable[Any] = (), *,
                 dist: distributed.Dist | None = None) -> None:
        if data.shape != tuple(model.input_shape):
            raise ShapeError(
                f"dataset {data.name} has {format_shape(data.shape)} images but the model "
                f"expects {format_shape(model.input_shape)}",
                "set model.input_shape to the data's shape",
            )
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
        if model.term_names == [RECON] and (model.spec.regularizers or getattr(
                model.loss_fn, "sees_forward", False)):  # built without the shape probe
            probe(model)
        names = list(model.term_names)
        self.term_names = names if len(names) > 1 else []
        unknown = [n for n in spec.anneal if n not in names]
        if unknown:
            raise SpecError(f"train.anneal names the term '{unknown[0]}', which this model's "
                            f"objective does not have", f"anneal one of its terms: "
                            f"{', '.join(names)}", key="train.anneal")
        self.step_module = self._wrap(_LossStep(self.model, self.term_names))
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
        self.monitor_sign = monitor_sign(spec)  # train.monitor: scores are value * sign
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
        self._loss_sum = torch.zeros(1 + len(self.term_names), device=self.device)
        self._acc_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._loss_count = 0
        self._epoch_seconds = 0.0
        self._compiled = False  # set after the first step: compile errors surface there
        self._logged: dict[str, list[Any]] = {}  # trainer.log: per-epoch values
        # trainer.log sums a resumed state carried into this epoch (validation.logged_sums)
        self._logged_carry: dict[str, tuple[torch.Tensor, float, int]] = {}
        self._val_head: tuple[int, torch.Tensor] | None = None  # (step, pictures): validation
        self.ema = WeightAverage(self.model, spec.ema) if spec.ema is not None else None

    # -- data ------------------------------------------------------------------------
    def batch(self, images: torch.Tensor, index: torch.Tensor | slice) -> torch.Tensor:
        """Gather a uint8 batch and scale it to float32 in [0, 1] on the device."""
        return to_unit(images[index], self.memory_format)

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids)
        if self.spec.compile:
            if not hasattr(torch, "compile"):
                raise UsageError("--compile needs torch >= 2.0", "drop --compile")
            module = torch.compile(module)  # type: ignore[assignment]
        return module

    # -- what callbacks may use ---------------------------------------------------------
    def running_loss(self) -> float:
        """Mean training loss of the epoch so far. Syncs with the device: call sparingly."""
        return float(self._loss_sum[0].item()) / max(self._loss_count, 1)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def log(self, name: str, value: float | torch.Tensor) -> None:
        """Add ``value`` to this epoch's ``name`` (mean over calls, across ranks; no sync:
        a number stays on the host, a tensor on its device until the epoch's end)."""
        if name in RESERVED_NAMES:
            raise UsageError(f"trainer.log('{name}', ...) would overwrite a standard column",
                             f"log under another name (not {', '.join(RESERVED_NAMES)})")
        value = value.detach().float().reshape(()) if isinstance(value, torch.Tensor) \
            else float(value)
        self._logged.setdefault(name, []).append(value)

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
        return self.monitor_sign * value if math.isfinite(value) else math.nan

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
                    if self.step >= self.steps_per_epoch:
                        self.epoch, self.step = self.epoch + 1, 0
                        continue
                    self._train_epoch()
                if self.step >= self.steps_per_epoch:
                    self.epoch, self.step = self.epoch + 1, 0
            outcome = (Outcome.COMPLETED if control.stop is None else
                       Outcome.STOPPED if control.stop == Stop.REQUESTED else
                       Outcome.INTERRUPTED)
        except Diverged as exc:
            outcome = Outcome.DIVERGED
            raise self._diverged_error(exc.step) from None
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
        if written is not None and outcome != Outcome.INTERRUPTED:
            raise written
        if outcome == Outcome.INTERRUPTED:
            assert control.stop is not None
            error = TrainingInterrupted(
                f"{control.stop}: training stopped after step {self.global_step} "
                f"(epoch {self.epoch}, step {self.step}/{self.steps_per_epoch})",
                "the state is saved; continue with `aezoo train --resume RUN_DIR`")
            error.exit_code = SIGNAL_CODES.get(control.stop, 130)
            raise error from written
        return self.history

    def _diverged_error(self, step: int) -> TrainingError:
        epoch = (step - 1) // self.steps_per_epoch + 1
        remedy = ("lower --lr, add --grad-clip 1.0, use --precision 32 (or bf16 instead of 16), "
                  "or check the data")
        if not (self.state_saved or self.resumed):  # say what is true: nothing to resume
            return TrainingError(
                f"the loss became NaN/inf at step {step} (epoch {epoch}), before the first "
                "checkpoint; training stopped and nothing was saved",
                f"{remedy}; then train again (with --force to reuse RUN_DIR)")
        return TrainingError(
            f"the loss became NaN/inf at step {step} (epoch {epoch}); training stopped and "
            "the last good checkpoint is kept", f"{remedy}; then --resume RUN_DIR with those flags")

    def _train_epoch(self) -> None:
        if self.step == 0:  # a fresh epoch (otherwise load_state restored the partial one)
            self._epoch_gen_state = self.generator.get_state()
            self._loss_sum.zero_()
            self._loss_count = 0
            self._epoch_seconds = 0.0
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
            self._epoch_seconds += time.perf_counter() - start
        if self.step < self.steps_per_epoch:
            return  # interrupted: no validation for a partial epoch
        self._end_epoch()

    def _steps(self, perm: torch.Tensor) -> None:
        """The hot loop: the epoch's remaining optimiser steps."""
        model, opt, bs, spec = self.step_module, self.optimizer, self.spec.batch_size, self.spec
        control, device, amp_dtype = self.control, self.device, self.amp_dtype
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
            values = self._accumulate(model, index, bs, scaled, device, amp_dtype)
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
            self._loss_sum += values
            self._loss_count += len(index)
            self.step, self.global_step = i + 1, self.global_step + 1
            self._compiled = True
            control.after_step(self.global_step, sync_every)
            for fn in step_end:
                fn(self, i + 1, self._loss_count)
            if control.interrupted:
                break

    def _accumulate(self, model: nn.Module, index: torch.Tensor, bs: int, scaled: bool,
                    device: torch.device, amp_dtype: torch.dtype | None) -> torch.Tensor:
        """Forward and backward over the step's batches (one, unless ``accumulate``); the
        summed total (or ``[total, terms...]``) times images. Each batch's loss is weighted
        by its share of the step's images, so k batches of n give the gradient of one batch
        of k*n."""
        chunks = list(index.split(bs))
        summed: torch.Tensor | None = None
        for j, chunk in enumerate(chunks):
            xb = self.batch(self.train_images, chunk)
            x_in = self.corrupt(xb, self.noise) if self.corrupt is not None else xb
            last = j == len(chunks) - 1
            sync = (model.no_sync() if self.dist.enabled and not last  # type: ignore[operator]
                    else contextlib.nullcontext())
            with sync:
                with autocast(device, amp_dtype):
                    values = model(x_in, xb)
                loss = values if values.dim() == 0 else values[0]
                if len(chunks) > 1:
                    loss = loss * (len(chunk) / len(index))
                (self.scaler.scale(loss) if scaled else loss).backward()
            part = values.detach() * len(chunk)  # a sum (its finiteness is the mean's)
            summed = part if summed is None else summed + part
        assert summed is not None
        return summed

    def _end_epoch(self) -> None:
        self.control.at_epoch_end(self.global_step)
        totals = torch.cat([self._loss_sum.to(self._acc_dtype),
                            torch.tensor([float(self._loss_count)], dtype=self._acc_dtype,
                                         device=self.device)])
        summed: list[float] = distributed.all_reduce(totals).tolist()  # the epoch's one sync
        images = summed[-1]
        train = [v / max(images, 1.0) for v in summed[:-1]]
        logged = validation.reduce_logged(self)
        self._call("on_validation_start")
        with self.averaged():
            val = self.evaluate_terms()
        self._call("on_validation_end", val)
        train_loss, val_loss = train[0], val["loss"]
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise Diverged(self.global_step)
        seconds = self._epoch_seconds
        result = EpochResult.measured(
            self.epoch, dict(zip(["loss", *self.term_names], train, strict=True)),
            {"loss": val_loss, **{n: val[n] for n in self.term_names},
             **{n: val[f"val_{n}"] for n, _ in self.metrics}}, logged, seconds, images, self.lr)
        self.history.append(result)
        self._call("on_epoch_end", result)

    def evaluate(self, images: torch.Tensor | None = None) -> float:
        """Mean loss over ``images`` (default: the validation split, across all ranks)."""
        return self.evaluate_terms(images)["loss"]

    def evaluate_terms(self, images: torch.Tensor | None = None) -> dict[str, float]:
        """Mean total (``loss``) and terms over ``images`` (default: the validation split,
        across all ranks); see ``aezoo.training.validation``."""
        return validation.evaluate_terms(self, images)

    # -- state (aezoo.training.state) -------------------------------------------------
    def save_state(self, path: str | Path) -> None:
        """Everything needed to continue exactly where training is now (safetensors)."""
        state.save_state(self, path)
        self.state_saved = True

    def load_state(self, path: str | Path) -> None:
        """Continue from a state file written by :meth:`save_state`."""
        state.load_state(self, path)
