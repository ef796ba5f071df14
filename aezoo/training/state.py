"""Training state (for ``--resume``) as one safetensors file: tensors plus JSON, no pickle.

Writing a trainer's state and restoring one, so that resume is exact: weights, optimiser,
AMP scaler, RNG states, the epoch's shuffling and loss accumulators.

Tensor names: ``model.<key>`` (weights), ``optim.<param>.<key>`` (per-parameter optimiser
state), ``rng.torch``, ``rng.cuda.<i>``, ``rng.generator`` (uint8 RNG states),
``acc.loss_sum`` (the epoch's loss accumulator), ``acc.logged.<i>`` (the device sum of
the epoch's ``trainer.log`` values). The header metadata ``aezoo.state`` holds everything
else as JSON: position, optimiser groups, AMP scaler, history, callback states, the
logged values' names, host sums and counts. One file, written atomically, so it is always
self-consistent.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from aezoo._safetensors import load_tensors, read_metadata, save_tensors
from aezoo.errors import CheckpointError, summary
from aezoo.rundir import RUN_FILE, STATE_FILE
from aezoo.specs import short_repr
from aezoo.training.hooks import EpochResult
from aezoo.training.validation import logged_sums

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
    except (ValueError, RecursionError):  # bad JSON, or a 5,000-digit integer
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
    logged = []  # trainer.log's sums so far: the resumed epoch's means take them in
    for i, (name, (device_sum, host_sum, count)) in enumerate(logged_sums(trainer).items()):
        tensors[f"acc.logged.{i}"] = device_sum.float()
        logged.append([name, host_sum, count])
    info = {
        "epoch": epoch, "step": step, "global_step": trainer.global_step,
        "steps_per_epoch": trainer.steps_per_epoch, "world_size": trainer.dist.world_size,
        "loss_count": trainer._loss_count if step else 0,
        "epoch_seconds": trainer._epoch_seconds if step else 0.0,
        "logged": logged,
        "optimizer": opt_meta, "scaler": trainer.scaler.state_dict(),
        "scheduler": trainer.spec.scheduler, "stopped": trainer.stop_reason,
        "history": [r.as_dict() for r in trainer.history],
        "callbacks": {cb.state_key: cb.state_dict() for cb in trainer.callbacks
                      if getattr(cb, "state_key", None)},
        "exactness": exactness(trainer),
        "sampler": trainer.reader.state(trainer),  # the order is rng.generator's permutation
    }
    write_state(path, tensors, info)


def exactness(trainer: Trainer) -> dict[str, Any]:
    """What a bit-exact resume depends on besides the state itself: kernels and their
    reduction order change with these (the CPU thread count splits sums differently)."""
    cpu = trainer.device.type == "cpu"
    return {
        "torch": torch.__version__,
        "device": trainer.device.type,
        **({"threads": torch.get_num_threads()} if cpu else {}),
        "precision": trainer.precision,
        "memory_format": "channels_last" if trainer.memory_format == torch.channels_last
        else "NCHW",
        "compile": bool(trainer.spec.compile),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        **({} if cpu else {"cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                           "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}),
    }


def exactness_warnings(saved: Any, now: dict[str, Any]) -> list[str]:
    """One line naming every difference between the state's ``exactness`` and this run's
    (none for a state that did not record it)."""
    if not isinstance(saved, dict):
        return []
    changed = [f"{key} {saved[key]} -> {value}" for key, value in now.items()
               if key in saved and saved[key] != value]
    if not changed:
        return []
    return [f"resuming with {', '.join(changed)} (the state was saved with the former): "
            "training goes on, but no longer bit-exact with an uninterrupted run"]


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


def _corrupt(path: str | Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{path} holds a corrupt training state ({detail})",
                           "resume from an earlier copy or start the run again")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _same_kind(fresh: Any, saved: Any) -> bool:
    """Whether ``saved`` (from JSON) can stand where the optimiser has ``fresh``."""
    if isinstance(fresh, bool):  # None: a flag left unset where the state was saved
        return isinstance(saved, bool) or saved is None
    if isinstance(fresh, (int, float)):
        return _is_number(saved)
    if isinstance(fresh, (tuple, list)):
        return (isinstance(saved, (tuple, list)) and len(saved) == len(fresh)
                and all(_same_kind(a, b) for a, b in zip(fresh, saved, strict=True)))
    if fresh is None:  # e.g. foreach/fused: unset here, chosen where the state was saved
        return saved is None or isinstance(saved, bool)
    if isinstance(fresh, str):
        return isinstance(saved, str)
    return True


def check_info(trainer: Trainer, path: str | Path, info: dict[str, Any]) -> None:
    """Refuse a state whose JSON was edited into values the loop cannot use: the position,
    the optimiser's settings, the history. Before anything is restored."""
    spe = trainer.steps_per_epoch
    epoch: Any = info.get("epoch")
    step: Any = info.get("step")
    global_step: Any = info.get("global_step")
    if not (_is_int(epoch) and epoch >= 1):
        raise _corrupt(path, f"epoch is {epoch!r}, not a whole number from 1")
    if not (_is_int(step) and 0 <= step <= spe):
        raise _corrupt(path, f"step is {step!r}, not a whole number from 0 to the epoch's "
                       f"{spe} steps")
    if not (_is_int(global_step) and global_step == (epoch - 1) * spe + step):
        raise _corrupt(path, f"global_step is {global_step!r}, but epoch {epoch}, step "
                       f"{step} of {spe} per epoch is step {(epoch - 1) * spe + step}")
    if not (_is_int(info.get("loss_count")) and info["loss_count"] >= 0):
        raise _corrupt(path, f"loss_count is {info.get('loss_count')!r}")
    if not (_is_number(info.get("epoch_seconds")) and info["epoch_seconds"] >= 0):
        raise _corrupt(path, f"epoch_seconds is {info.get('epoch_seconds')!r}")
    if not (info.get("stopped") is None or isinstance(info["stopped"], str)):
        raise _corrupt(path, f"stopped is {info['stopped']!r}")
    logged = info.get("logged", [])
    if not (isinstance(logged, list) and all(
            isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
            and _is_number(row[1]) and _is_int(row[2]) and row[2] >= 0 for row in logged)):
        raise _corrupt(path, "logged is not a list of [name, sum, count]")
    if "optimizer" not in info:
        raise _corrupt(path, "no optimizer key")
    opt = _mapping(info["optimizer"], "optimizer")
    groups, fresh_groups = opt.get("param_groups"), trainer.optimizer.state_dict()["param_groups"]
    if not (isinstance(groups, list) and len(groups) == len(fresh_groups)):
        raise _corrupt(path, f"optimizer.param_groups is not a list of {len(fresh_groups)}")
    for i, (group, fresh) in enumerate(zip(groups, fresh_groups, strict=True)):
        group = _mapping(group, f"optimizer.param_groups[{i}]")
        for key, value in fresh.items():
            where = f"optimizer.param_groups[{i}].{key}"
            if key not in group:
                raise _corrupt(path, f"{where} is missing")
            if key == "params" and group[key] != value:
                raise _corrupt(path, f"{where} is {group[key]!r}, this model's are {value!r}")
            if not _same_kind(value, group[key]):
                raise _corrupt(path, f"{where} is {group[key]!r}, not like {value!r}")
    history = info.get("history")
    if not isinstance(history, list):
        raise _corrupt(path, f"history is a {type(history).__name__}, not a list")
    names = [f.name for f in fields(EpochResult)]
    numbers = [n for n in names if n != "terms"]
    for i, row in enumerate(history):
        terms = row.get("terms", {}) if isinstance(row, dict) else None
        if not (isinstance(row, dict) and set(row) <= set(names)
                and all(_is_number(row.get(n, 0.0)) for n in numbers)
                and isinstance(terms, dict)
                and all(isinstance(k, str) and _is_number(v) for k, v in terms.items())
                and _is_int(row.get("epoch"))):
            raise _corrupt(path, f"history[{i}] is not an epoch's numbers ({', '.join(names)})")


def check_tensors(trainer: Trainer, path: str | Path, tensors: dict[str, torch.Tensor],
                  info: dict[str, Any]) -> None:
    """Tensors of the wrong dtype would be cast silently by ``load_state_dict``: refuse them,
    as ``aezoo.load`` refuses them in a model file."""
    mine = trainer.model.state_dict()
    for key, value in tensors.items():
        name = key[len("model."):]
        if key.startswith("model.") and name in mine and value.dtype != mine[name].dtype:
            raise CheckpointError(
                f"{path} does not match this model ({key} is {value.dtype}, the model "
                f"expects {mine[name].dtype})", f"resume with the run directory's own {RUN_FILE}")
    for i in range(len(info.get("logged", []))):
        logged = tensors.get(f"acc.logged.{i}")
        if logged is None or logged.dim() != 0 or not logged.is_floating_point():
            raise _corrupt(path, f"acc.logged.{i} is missing or not a float scalar")
    loss_sum = tensors.get("acc.loss_sum")
    want = list(trainer._loss_sum.shape)  # [total, terms...]; a scalar: saved before terms
    if loss_sum is not None and (list(loss_sum.shape) not in (want, [] if want == [1] else want)
                                 or not loss_sum.is_floating_point()):
        raise _corrupt(path, f"acc.loss_sum is {loss_sum.dtype} {list(loss_sum.shape)}, not "
                       f"float {want}")


def _restore(trainer: Trainer, path: str | Path, tensors: dict[str, torch.Tensor],
             info: dict[str, Any]) -> None:
    for key, mine in (("world_size", trainer.dist.world_size),
                      ("steps_per_epoch", trainer.steps_per_epoch)):
        if not _is_int(info.get(key)):  # "1" would read "saved with world_size=1, has 1"
            raise _corrupt(path, f"{key} is {short_repr(info.get(key))}, not a whole number")
        if info.get(key) != mine:
            raise CheckpointError(
                f"{path} was saved with {key}={info.get(key)}, this run has {mine}",
                "resume with the same data, batch size and number of processes")
    sampler = info.get("sampler")
    images = sampler.get("images") if isinstance(sampler, dict) else None
    if images is not None and images != len(trainer.train_images):
        raise CheckpointError(f"{path} was saved training on {images} images per process, "
                              f"this run has {len(trainer.train_images)}",
                              "resume with the same data, --limit and number of processes")
    check_info(trainer, path, info)
    check_tensors(trainer, path, tensors, info)
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer = trainer.optimizer
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():  # load_state_dict checks no shapes: the step would
        if key.startswith("optim.") and key.endswith(".step") and value.dim() != 0:
            raise _corrupt(path, f"{key} has shape {list(value.shape)}, not a scalar")
        if key.startswith("optim.") and value.dim() > 0:
            param = params[int(key.split(".")[1])]
            if value.shape != param.shape:
                raise CheckpointError(
                    f"{path} does not match this model ({key} has shape "
                    f"{list(value.shape)}, the parameter {list(param.shape)})",
                    f"resume with the run directory's own {RUN_FILE}")
            if value.dtype != param.dtype:
                raise CheckpointError(
                    f"{path} does not match this model ({key} is {value.dtype}, the "
                    f"parameter {param.dtype})", f"resume with the run directory's own {RUN_FILE}")
    opt_meta = _mapping(info["optimizer"], "optimizer")
    for index, values in _mapping(opt_meta.get("scalars", {}), "optimizer.scalars").items():
        for field, value in _mapping(values, f"optimizer.scalars.{index}").items():
            if not (_is_number(value) or value is None or isinstance(value, bool)):
                raise _corrupt(path, f"optimizer.scalars.{index}.{field} is "
                               f"{short_repr(value)}, not a number")
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
    trainer._logged = {}
    trainer._logged_carry = {
        name: (tensors[f"acc.logged.{i}"].to(trainer.device), float(host_sum), int(count))
        for i, (name, host_sum, count) in enumerate(info.get("logged", []))}
    trainer.history = [EpochResult(**r) for r in info["history"]]
    states = _mapping(info.get("callbacks", {}), "callbacks")
    for cb in trainer.callbacks:
        name = getattr(cb, "state_key", None)
        if name is not None and name in states:
            cb.load_state_dict(_mapping(states[name], f"callbacks.{name}"))
    for group in optimizer.param_groups:  # flags given on resume win
        group.update(lr=trainer.schedule(trainer.global_step),
                     weight_decay=trainer.spec.weight_decay)
    trainer.resume_warnings = exactness_warnings(info.get("exactness"), exactness(trainer))
    trainer.resumed = True
