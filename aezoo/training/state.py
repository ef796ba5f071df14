"""Training state (for ``--resume``) as one safetensors file: tensors plus JSON, no pickle.

Writing a trainer's state and restoring one, so that resume is exact: weights, optimiser,
AMP scaler, RNG states, the epoch's shuffling and loss accumulators.

Tensor names: ``model.<key>`` (weights), ``optim.<param>.<key>`` (per-parameter optimiser
state), ``rng.torch``, ``rng.cuda.<i>``, ``rng.generator`` (uint8 RNG states),
``acc.loss_sum`` (the epoch's loss accumulator). The header metadata ``aezoo.state``
holds everything else as JSON: position, optimiser groups, AMP scaler, history,
callback states. One file, written atomically, so it is always self-consistent.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aezoo._safetensors import load_tensors, read_metadata, save_tensors
from aezoo.errors import CheckpointError, summary
from aezoo.rundir import RUN_FILE, STATE_FILE
from aezoo.training.hooks import EpochResult

if TYPE_CHECKING:
    from aezoo.training.loop import Trainer

STATE_VERSION = 1
META_KEY = "aezoo.state"


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def write_state(path: str | Path, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and ``info`` (JSON) to ``path``."""
    info = {"version": STATE_VERSION, **info}
    save_tensors(tensors, path, {"format": "pt", META_KEY: json.dumps(info)})


def read_info(path: str | Path) -> dict[str, Any]:
    """The JSON part of a state file (header only: cheap)."""
    meta = read_metadata(path)
    if META_KEY not in meta:
        raise CheckpointError(f"{path} is not an aezoo training state",
                              f"give the run directory that holds {STATE_FILE}")
    info: Any
    try:
        info = json.loads(meta[META_KEY])
    except (json.JSONDecodeError, RecursionError):
        info = None
    if not isinstance(info, dict) or not isinstance(info.get("epoch"), int):
        raise CheckpointError(f"{path} holds a corrupt training state",
                              "resume from an earlier copy or start the run again")
    if info.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path} has training-state version {info.get('version')}, "
                              f"this aezoo reads version {STATE_VERSION}",
                              "resume with the aezoo version that wrote it")
    return info


def read_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, info) of a state file written by :func:`write_state`."""
    info = read_info(path)
    tensors = load_tensors(path, "resume from an earlier copy or start the run again")
    return tensors, info


# What using the values of a state file edited or damaged inside a valid container raises:
# a missing key, a wrong type or value, an index or shape that does not fit. Anything else
# (AttributeError, NameError, ...) is a bug of aezoo's and surfaces as one.
DAMAGED = (KeyError, TypeError, ValueError, IndexError, RuntimeError)


def position(trainer: Trainer) -> tuple[int, int]:
    """(epoch, steps done in it), an epoch that is complete counted as the next one's 0."""
    if trainer.step >= trainer.steps_per_epoch:
        return trainer.epoch + 1, 0
    return trainer.epoch, trainer.step


def save_state(trainer: Trainer, path: str | Path) -> None:
    """Everything needed to continue exactly where ``trainer`` is now."""
    epoch, step = position(trainer)
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v
                                        for k, v in trainer.model.state_dict().items()}
    opt_tensors, opt_meta = flatten_optimizer(trainer.optimizer.state_dict())
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    # Mid-epoch: the generator as it was when the epoch drew its permutation.
    tensors["rng.generator"] = (trainer._epoch_gen_state if step
                                else trainer.generator.get_state())
    tensors["rng.noise"] = trainer.noise.get_state()  # input corruption: as it is now
    if trainer.ema is not None:
        tensors.update(trainer.ema.tensors())
    tensors["acc.loss_sum"] = trainer._loss_sum
    info = {
        "epoch": epoch, "step": step, "global_step": trainer.global_step,
        "steps_per_epoch": trainer.steps_per_epoch, "world_size": trainer.dist.world_size,
        "loss_count": trainer._loss_count if step else 0,
        "epoch_seconds": trainer._epoch_seconds if step else 0.0,
        "optimizer": opt_meta, "scaler": trainer.scaler.state_dict(),
        "scheduler": trainer.spec.scheduler, "stopped": trainer.stop_reason,
        "history": [asdict(r) for r in trainer.history],
        "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks
                      if getattr(cb, "state_key", None)},
    }
    write_state(path, tensors, info)


def load_state(trainer: Trainer, path: str | Path) -> None:
    """Continue ``trainer`` from a state file written by :func:`save_state`."""
    tensors, info = read_state(path)
    try:
        _restore(trainer, path, tensors, info)
    except DAMAGED as exc:
        # A state file edited or damaged inside a valid container: name it, no traceback.
        raise CheckpointError(f"{path} holds a corrupt training state ({summary(exc, limit=160)})",
                              "resume from an earlier copy or start the run again") from None


def _mapping(value: Any, what: str) -> dict[str, Any]:
    """``value`` if it is a JSON object: a damaged state is a TypeError, as elsewhere."""
    if not isinstance(value, dict):
        raise TypeError(f"{what} is a {type(value).__name__}, not an object")
    return value


def _restore(trainer: Trainer, path: str | Path, tensors: dict[str, torch.Tensor],
             info: dict[str, Any]) -> None:
    for key, mine in (("world_size", trainer.dist.world_size),
                      ("steps_per_epoch", trainer.steps_per_epoch)):
        if info.get(key) != mine:
            raise CheckpointError(
                f"{path} was saved with {key}={info.get(key)}, this run has {mine}",
                "resume with the same data, batch size and number of processes")
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer = trainer.optimizer
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():  # load_state_dict checks no shapes: the step would
        if key.startswith("optim.") and value.dim() > 0:
            shape = params[int(key.split(".")[1])].shape
            if value.shape != shape:
                raise CheckpointError(
                    f"{path} does not match this model ({key} has shape "
                    f"{list(value.shape)}, the parameter {list(shape)})",
                    f"resume with the run directory's own {RUN_FILE}")
    opt_meta = _mapping(info["optimizer"], "optimizer")
    _mapping(opt_meta.get("scalars", {}), "optimizer.scalars")
    try:
        trainer.model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(unflatten_optimizer(tensors, opt_meta))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path} does not match this model "
                              f"({summary(exc, with_type=False)})",
                              f"resume with the run directory's own {RUN_FILE}") from None
    if trainer.scaler.is_enabled() and info.get("scaler"):
        trainer.scaler.load_state_dict(info["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"rng.cuda.{i}" in tensors:
                torch.cuda.set_rng_state(tensors[f"rng.cuda.{i}"], i)
    trainer.generator.set_state(tensors["rng.generator"])
    trainer._epoch_gen_state = tensors["rng.generator"]
    if "rng.noise" in tensors:  # absent in states saved before input corruptions existed
        trainer.noise.set_state(tensors["rng.noise"])
    if trainer.ema is not None:
        trainer.ema.load(tensors)
    trainer.epoch, trainer.step = int(info["epoch"]), int(info["step"])
    trainer.global_step = int(info["global_step"])
    trainer._loss_sum.copy_(tensors["acc.loss_sum"])
    trainer._loss_count = int(info["loss_count"])
    trainer._epoch_seconds = float(info["epoch_seconds"])
    trainer.history = [EpochResult(**r) for r in info["history"]]
    states = _mapping(info.get("callbacks", {}), "callbacks")
    for cb in trainer.callbacks:
        name = getattr(cb, "state_key", None)
        if name is not None and name in states:
            cb.load_state_dict(_mapping(states[name], f"callbacks.{name}"))
    for group in optimizer.param_groups:  # flags given on resume win
        group.update(lr=trainer.schedule(trainer.global_step),
                     weight_decay=trainer.spec.weight_decay)
    trainer.resumed = True
