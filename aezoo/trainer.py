"""The generic training loop: any Autoencoder, any in-memory uint8 dataset.

The whole dataset lives on the training device as uint8; each batch is gathered with a
device-side permutation and scaled to [0, 1] there. Losses accumulate on the device.
On CPU (one process) the NaN guard and the stop flag are checked every step, which is
free there; on an accelerator or under DDP they are checked every ``check_every``
steps, at step checkpoints and at epoch ends, so a step never waits for the host.

Everything the loop does not need to train (progress, files, early stopping) is a
callback (aezoo.callbacks). ``save_state``/``load_state`` make resume exact: weights,
optimiser, AMP scaler, RNG states, the epoch's shuffling and loss accumulators.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aezoo import distributed
from aezoo.callbacks import Callback, EpochResult
from aezoo.data.base import ArrayDataset
from aezoo.errors import AezooError, ShapeError, UsageError
from aezoo.model import Autoencoder
from aezoo.schedules import Schedule
from aezoo.specs import TrainSpec
from aezoo.state import flatten_optimizer, read_state, unflatten_optimizer, write_state
from aezoo.tensors import preferred_memory_format, to_unit

HOOKS = ("on_train_start", "on_epoch_start", "on_step_start", "on_step_end",
         "on_epoch_end", "on_train_end")
SIGNAL_CODES = {"SIGINT": 130, "SIGTERM": 143}
_STOP_CODES = {"stop": 1, "SIGINT": 2, "SIGTERM": 3}  # agreed across ranks: highest wins
_NO_BAD_STEP = 2**62


class TrainingError(AezooError):
    """Training cannot go on (e.g. the loss diverged)."""


class TrainingInterrupted(AezooError):
    """Stopped by SIGINT/SIGTERM after a step; the run directory can be resumed."""

    exit_code = 130


class _Diverged(Exception):
    def __init__(self, step: int) -> None:
        self.step = step


def make_optimizer(model: nn.Module, spec: TrainSpec, fused: bool = False
                   ) -> torch.optim.Optimizer:
    """``fused`` (CUDA): one kernel per step, and fp16's GradScaler then needs no host sync."""
    params = model.parameters()
    extra = {"fused": True} if fused else {}
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                weight_decay=spec.weight_decay, **extra)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                 weight_decay=spec.weight_decay, **extra)
    return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                           weight_decay=spec.weight_decay)


def flush_denormals() -> None:
    """Flush denormal floats to zero on CPU, as TensorFlow does by default.

    A model whose activations die or whose gradients get tiny produces denormals, and x86
    computes on them up to 4x slower (measured: a cae-strided run that fell from 6,000 to
    1,600 img/s in its second epoch). Threads inherit the setting when they are created,
    so call this before the first parallel torch op of the process; the trainer calls it
    too, which covers its own thread at least.
    """
    torch.set_flush_denormal(True)


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16): there bf16 autocast
    trains these models ~2.4x faster than fp32 to the same loss (docs/benchmarks.md);
    elsewhere bf16 is emulated and slower."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> the fastest precision that trains as well as fp32 on ``device``."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and native_cpu_bf16() else "32"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or a clear UsageError."""
    precision = resolve_precision(precision, device)
    if precision == "32":
        return None
    if precision == "16":
        if device.type == "cpu":
            raise UsageError("--precision 16 is not supported on CPU (float16 autocast there "
                             "is slower than float32)", "use --precision bf16 or 32 on CPU")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"{torch.cuda.get_device_name(device)} does not support bfloat16",
                         "use --precision 16 or 32")
    return torch.bfloat16


def _defines(callback: Any, hook: str) -> bool:
    """Whether ``callback`` has ``hook``, other than Callback's no-op (skipped: the hot loop
    then calls only hooks that do something)."""
    if not hasattr(callback, hook):
        return False
    own = getattr(type(callback), hook, None)
    return own is None or own is not getattr(Callback, hook)


class _LossStep(nn.Module):
    """``model.loss`` as a forward, so DDP and torch.compile see one module call."""

    def __init__(self, model: Autoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x)


class Trainer:
    """Fits ``model`` on ``data`` as ``spec`` says; callbacks observe, the loop only trains."""

    def __init__(self, model: Autoencoder, data: ArrayDataset, spec: TrainSpec,
                 callbacks: Iterable[Any] = (), *,
                 dist: distributed.Dist | None = None) -> None:
        if data.shape != tuple(model.input_shape):
            raise ShapeError(
                f"dataset {data.name} has {'x'.join(map(str, data.shape))} images but the model "
                f"expects {'x'.join(map(str, model.input_shape))}",
                "set model.input_shape to the data's shape",
            )
        flush_denormals()
        self.dist = dist or distributed.Dist()
        if len(data.train) < self.dist.world_size or len(data.val) == 0:
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
        self.train_images = self._to_device(self._shard(data.train, equal=True))
        self.val_images = self._to_device(self._shard(data.val, equal=False))
        self.optimizer = make_optimizer(self.model, spec, fused=self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "16")
        self.steps_per_epoch = math.ceil(len(self.train_images) / spec.batch_size)
        self.schedule = Schedule(spec, self.steps_per_epoch)
        self.step_module = self._wrap(_LossStep(self.model))
        self.callbacks = [cb for cb in callbacks
                          if self.dist.is_main or getattr(cb, "all_ranks", False)]
        self._hooks = {h: [getattr(cb, h) for cb in self.callbacks if _defines(cb, h)]
                       for h in HOOKS}
        self.history: list[EpochResult] = []
        self.generator = torch.Generator(device=self.device).manual_seed(spec.seed)
        self._epoch_gen_state = self.generator.get_state()
        # Position: ``step`` optimiser steps of ``epoch`` are done (step == steps_per_epoch:
        # the epoch is complete); ``global_step`` counts all steps of the run.
        self.epoch, self.step, self.global_step = 1, 0, 0
        self.outcome = "new"
        self.stop_reason: str | None = None
        self._stop: str | None = None
        self._signal: str | None = None
        self.resumed = False
        self._loss_sum = torch.zeros((), device=self.device)
        self._acc_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self._loss_count = 0
        self._epoch_seconds = 0.0
        # Check NaN per step on one CPU process (free); elsewhere keep the losses of the
        # last steps on the device and look at them at the next sync point.
        self._eager_guard = self.device.type == "cpu" and not self.dist.enabled
        self._window = torch.zeros(spec.check_every, device=self.device)
        self._since_check = 0
        self._compiled = False  # set after the first step: compile errors surface there

    # -- data ------------------------------------------------------------------------
    def _shard(self, array: np.ndarray, equal: bool) -> np.ndarray:
        """This rank's part; training shards are cut to equal length so ranks stay in step."""
        if not self.dist.enabled:
            return array
        part = array[self.dist.rank::self.dist.world_size]
        return part[: len(array) // self.dist.world_size] if equal else part

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

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

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # -- what callbacks may use ---------------------------------------------------------
    def running_loss(self) -> float:
        """Mean training loss of the epoch so far. Syncs with the device: call sparingly."""
        return float(self._loss_sum.item()) / max(self._loss_count, 1)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def request_stop(self, reason: str) -> None:
        """End training after the current epoch (e.g. early stopping)."""
        self.stop_reason = self.stop_reason or reason
        self._stop = self._stop or "stop"

    def weights_finite(self) -> bool:
        """Whether every parameter is finite (one sync; for checkpoint writers)."""
        flags = [torch.isfinite(p).all() for p in self.model.parameters()]
        return bool(torch.stack(flags).all()) if flags else True

    # -- the loop ----------------------------------------------------------------------
    def _call(self, hook: str, *args: Any) -> None:
        for fn in self._hooks[hook]:
            fn(self, *args)

    def fit(self) -> list[EpochResult]:
        """Train to ``spec.epochs`` (from where a loaded state left off); the history."""
        self._stop = self._signal = None
        self.outcome = "running"
        outcome = "failed"
        try:
            self._call("on_train_start")
            with self._signals():
                while self.epoch <= self.spec.epochs and self._stop is None:
                    if self.step >= self.steps_per_epoch:
                        self.epoch, self.step = self.epoch + 1, 0
                        continue
                    self._train_epoch()
                if self.step >= self.steps_per_epoch:
                    self.epoch, self.step = self.epoch + 1, 0
            outcome = {None: "completed", "stop": "stopped"}.get(self._stop, "interrupted")
        except _Diverged as exc:
            outcome = "diverged"
            raise self._diverged_error(exc.step) from None
        finally:
            self.outcome = outcome
            self._call("on_train_end")
        if outcome == "interrupted":
            assert self._stop is not None
            error = TrainingInterrupted(
                f"{self._stop}: training stopped after step {self.global_step} "
                f"(epoch {self.epoch}, step {self.step}/{self.steps_per_epoch})",
                "the state is saved; continue with `aezoo train --resume RUN_DIR`")
            error.exit_code = SIGNAL_CODES.get(self._stop, 130)
            raise error
        return self.history

    def _diverged_error(self, step: int) -> TrainingError:
        epoch = (step - 1) // self.steps_per_epoch + 1
        return TrainingError(
            f"the loss became NaN/inf at step {step} (epoch {epoch}); training stopped and "
            "the last good checkpoint is kept",
            "lower --lr, add --grad-clip 1.0, use --precision 32 (or bf16 instead of 16), "
            "or check the data; then --resume RUN_DIR with those flags")

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: finish the current step, then stop (a second SIGINT aborts)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._signal = signal.Signals(signum).name
            if not self.dist.enabled:  # under DDP the ranks agree at the next sync point
                self._stop = self._signal

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _train_epoch(self) -> None:
        if self.step == 0:  # a fresh epoch (otherwise load_state restored the partial one)
            self._epoch_gen_state = self.generator.get_state()
            self._loss_sum.zero_()
            self._loss_count = 0
            self._epoch_seconds = 0.0
        self._call("on_epoch_start", self.epoch)
        perm = torch.randperm(len(self.train_images), device=self.device,
                              generator=self.generator)
        start = time.perf_counter()
        try:
            self._steps(perm)
        except _Diverged:
            raise
        except Exception as exc:
            if self.spec.compile and not self._compiled:
                detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                raise TrainingError(f"torch.compile failed on {self.device} ({detail})",
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
        model.train()
        params = [p for g in opt.param_groups for p in g["params"]]
        scaled, clip = self.scaler.is_enabled(), spec.grad_clip
        set_lr = not self.schedule.constant
        sync_every = spec.checkpoint_every or 0
        step_start, step_end = self._hooks["on_step_start"], self._hooks["on_step_end"]
        for i in range(self.step, self.steps_per_epoch):
            xb = self.batch(self.train_images, perm[i * bs:(i + 1) * bs])
            if set_lr:
                lr = self.schedule(self.global_step)
                for group in opt.param_groups:
                    group["lr"] = lr
            for fn in step_start:
                fn(self, i + 1)
            with self._autocast():
                loss = model(xb)
            opt.zero_grad(set_to_none=True)
            if scaled:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
            if clip is not None:
                if scaled:
                    self.scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(params, clip)
            loss = loss.detach().float()
            if self._eager_guard:
                if not math.isfinite(loss.item()):  # before the step: weights stay good
                    raise _Diverged(self.global_step + 1)
            else:
                self._window[self._since_check] = loss
                self._since_check += 1
            if scaled:
                self.scaler.step(opt)
                self.scaler.update()
            else:
                opt.step()
            self._loss_sum += loss * len(xb)
            self._loss_count += len(xb)
            self.step, self.global_step = i + 1, self.global_step + 1
            self._compiled = True
            if not self._eager_guard and (
                    self._since_check == spec.check_every
                    or (sync_every and self.global_step % sync_every == 0)):
                self._sync_point()
            for fn in step_end:
                fn(self, i + 1, self._loss_count)
            if self._stop is not None and self._stop != "stop":
                break

    def _sync_point(self) -> None:
        """Look at the recent losses (and, under DDP, agree on stopping). Syncs."""
        recent = self._window[: self._since_check]
        first = self.global_step - self._since_check + 1
        self._since_check = 0
        bad = torch.nonzero(~torch.isfinite(recent))
        local_bad = first + int(bad[0, 0]) if len(bad) else _NO_BAD_STEP
        if not self.dist.enabled:
            if local_bad != _NO_BAD_STEP:
                raise _Diverged(local_bad)
            return
        code = _STOP_CODES.get(self._signal or "", 0)
        agreed = distributed.all_reduce(
            torch.tensor([local_bad, -code], dtype=torch.int64, device=self.device), "min")
        bad_step, code = int(agreed[0]), -int(agreed[1])
        if bad_step != _NO_BAD_STEP:
            raise _Diverged(bad_step)
        if code:
            self._stop = {v: k for k, v in _STOP_CODES.items()}[code]

    def _end_epoch(self) -> None:
        if not self._eager_guard and self._since_check:
            self._sync_point()
        totals = torch.stack([self._loss_sum.to(self._acc_dtype),
                              torch.tensor(float(self._loss_count), dtype=self._acc_dtype,
                                           device=self.device)])
        summed: list[float] = distributed.all_reduce(totals).tolist()  # the epoch's one sync
        train_loss, images = summed[0] / max(summed[1], 1.0), summed[1]
        val_loss = self.evaluate()
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise _Diverged(self.global_step)
        seconds = self._epoch_seconds
        result = EpochResult(self.epoch, train_loss, val_loss, seconds,
                             images / max(seconds, 1e-9), self.lr)
        self.history.append(result)
        self._call("on_epoch_end", result)

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor | None = None) -> float:
        """Mean loss over ``images`` (default: the validation split, across all ranks)."""
        shared = images is None
        images = self.val_images if images is None else images
        self.model.eval()
        total = torch.zeros(2, dtype=self._acc_dtype, device=self.device)
        bs = max(self.spec.batch_size, 1024)
        for s in range(0, len(images), bs):
            xb = self.batch(images, slice(s, s + bs))
            loss = self.model.loss(xb)  # full precision: val_loss comparable across --precision
            total[0] += loss.to(self._acc_dtype) * len(xb)
            total[1] += len(xb)
        self.model.train()
        if shared:
            distributed.all_reduce(total)
        return float(total[0]) / max(float(total[1]), 1.0)

    # -- state ------------------------------------------------------------------------
    def _position(self) -> tuple[int, int]:
        """(epoch, steps done in it), an epoch that is complete counted as the next one's 0."""
        if self.step >= self.steps_per_epoch:
            return self.epoch + 1, 0
        return self.epoch, self.step

    def save_state(self, path: str | Path) -> None:
        """Everything needed to continue exactly where training is now (safetensors)."""
        epoch, step = self._position()
        tensors: dict[str, torch.Tensor] = {f"model.{k}": v
                                            for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = flatten_optimizer(self.optimizer.state_dict())
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i}"] = s
        # Mid-epoch: the generator as it was when the epoch drew its permutation.
        tensors["rng.generator"] = self._epoch_gen_state if step else self.generator.get_state()
        tensors["acc.loss_sum"] = self._loss_sum
        info = {
            "epoch": epoch, "step": step, "global_step": self.global_step,
            "steps_per_epoch": self.steps_per_epoch, "world_size": self.dist.world_size,
            "loss_count": self._loss_count if step else 0,
            "epoch_seconds": self._epoch_seconds if step else 0.0,
            "optimizer": opt_meta, "scaler": self.scaler.state_dict(),
            "scheduler": self.spec.scheduler, "stopped": self.stop_reason,
            "history": [asdict(r) for r in self.history],
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks
                          if getattr(cb, "state_key", None)},
        }
        write_state(path, tensors, info)

    def load_state(self, path: str | Path) -> None:
        """Continue from a state file written by :meth:`save_state`."""
        from aezoo.errors import CheckpointError

        tensors, info = read_state(path)
        try:
            self._restore(path, tensors, info)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            # A state file edited or damaged inside a valid container: name it, no traceback.
            raise CheckpointError(f"{path} holds a corrupt training state ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:120] if str(exc) else ''})",
                                  "resume from an earlier copy or start the run again") from None

    def _restore(self, path: str | Path, tensors: dict[str, torch.Tensor],
                 info: dict[str, Any]) -> None:
        from aezoo.errors import CheckpointError

        for key, mine in (("world_size", self.dist.world_size),
                          ("steps_per_epoch", self.steps_per_epoch)):
            if info.get(key) != mine:
                raise CheckpointError(
                    f"{path} was saved with {key}={info.get(key)}, this run has {mine}",
                    "resume with the same data, batch size and number of processes")
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        for key, value in tensors.items():  # load_state_dict checks no shapes: the step would
            if key.startswith("optim.") and value.dim() > 0:
                shape = params[int(key.split(".")[1])].shape
                if value.shape != shape:
                    raise CheckpointError(
                        f"{path} does not match this model ({key} has shape "
                        f"{list(value.shape)}, the parameter {list(shape)})",
                        "resume with the run directory's own run.json")
        try:
            self.model.load_state_dict(weights, strict=True)
            self.optimizer.load_state_dict(unflatten_optimizer(tensors, info["optimizer"]))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} does not match this model "
                                  f"({str(exc).splitlines()[0]})",
                                  "resume with the run directory's own run.json") from None
        if self.scaler.is_enabled() and info.get("scaler"):
            self.scaler.load_state_dict(info["scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                if f"rng.cuda.{i}" in tensors:
                    torch.cuda.set_rng_state(tensors[f"rng.cuda.{i}"], i)
        self.generator.set_state(tensors["rng.generator"])
        self._epoch_gen_state = tensors["rng.generator"]
        self.epoch, self.step = int(info["epoch"]), int(info["step"])
        self.global_step = int(info["global_step"])
        self._loss_sum.copy_(tensors["acc.loss_sum"])
        self._loss_count = int(info["loss_count"])
        self._epoch_seconds = float(info["epoch_seconds"])
        self.history = [EpochResult(**r) for r in info["history"]]
        states = info.get("callbacks", {})
        for cb in self.callbacks:
            name = getattr(cb, "state_key", None)
            if name is not None and name in states:
                cb.load_state_dict(states[name])
        for group in self.optimizer.param_groups:  # flags given on resume win
            group.update(lr=self.schedule(self.global_step), weight_decay=self.spec.weight_decay)
        self.resumed = True

