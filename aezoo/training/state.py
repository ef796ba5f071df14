"""Training state (for ``--resume``) as one safetensors file: tensors plus JSON, no pickle.

The file of a trainer's ``state_dict()`` (weights, optimiser, AMP scaler, RNG states, the
epoch's shuffling and loss accumulators: what makes resume exact), and reading one back
into ``load_state_dict()`` once it is known to fit: the JSON as a pydantic model
(:class:`StateInfo`), the tensors and settings against the trainer's own.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import ValidationError

from aezoo._safetensors import load_tensors, read_metadata, save_tensors
from aezoo.epochs import finite
from aezoo.errors import CheckpointError, summary
from aezoo.rundir import RUN_FILE, STATE_FILE
from aezoo.training.stateinfo import StateInfo, describe_error

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
    return load_tensors(path, "resume from an earlier copy or start the run again"), info


# What using the values of a state file edited or damaged inside a valid container raises:
# a missing key, a wrong type or value, an index or shape that does not fit. Anything else
# (AttributeError, NameError, ...) is a bug of aezoo's and surfaces as one.
DAMAGED = (KeyError, TypeError, ValueError, IndexError, RuntimeError)


def save_state(trainer: Trainer, path: str | Path) -> None:
    """Write ``trainer.state_dict()``: tensors by name, the rest as the JSON info."""
    state = trainer.state_dict()
    tensors: dict[str, torch.Tensor] = {f"model.{k}": v for k, v in state["model"].items()}
    opt_tensors, opt_meta = flatten_optimizer(state["optimizer"])
    tensors.update(opt_tensors)
    rng = state["rng"]
    tensors["rng.torch"] = rng["torch"]
    tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(rng["cuda"])})
    tensors["rng.generator"], tensors["rng.noise"] = rng["generator"], rng["noise"]
    tensors.update(state["ema"])
    sums = state["sums"]
    tensors["acc.loss_sum"] = sums["loss"]
    logged = []  # trainer.log's sums so far: the resumed epoch's means take them in
    for i, (name, (device_sum, host_sum, count)) in enumerate(sums["logged"].items()):
        tensors[f"acc.logged.{i}"] = device_sum.float()
        logged.append([name, host_sum, count])
    info = {
        "epoch": state["epoch"], "step": state["step"], "global_step": state["global_step"],
        # the run's shape, which a resume must match (check_fit)
        "steps_per_epoch": trainer.steps_per_epoch, "world_size": trainer.dist.world_size,
        "loss_count": sums["images"], "epoch_seconds": sums["seconds"], "logged": logged,
        "optimizer": opt_meta, "scaler": state["scaler"], "scheduler": trainer.spec.scheduler,
        "stopped": state["stopped"], "history": state["history"],
        "callbacks": state["callbacks"], "exactness": exactness(trainer),
        "sampler": trainer.reader.state(trainer),
    }
    write_state(path, tensors, info)


def exactness(trainer: Trainer) -> dict[str, Any]:
    """What a bit-exact resume depends on besides the state itself: kernels and their
    reduction order change with these (the CPU thread count splits sums differently), a
    streamed reader's order with its worker count (by default the host's cores)."""
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
        # a streamed split's order and workers' seeds follow the DataLoader worker count
        **({"loader_workers": trainer.reader.train.workers}
           if trainer.reader.kind == "stream" else {}),
        **({} if cpu else {"cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                           "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}),
    }


def exactness_warnings(saved: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """One line naming every difference between the state's ``exactness`` and this run's
    (none for a state that did not record it)."""
    changed = [f"{key} {saved[key]} -> {value}" for key, value in now.items()
               if saved and key in saved and saved[key] != value]
    if not changed:
        return []
    return [f"resuming with {', '.join(changed)} (the state was saved with the former): "
            "training goes on, but no longer bit-exact with an uninterrupted run"]


def _corrupt(path: str | Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{path} holds a corrupt training state ({detail})",
                           "resume from an earlier copy or start the run again")


def _mismatch(path: str | Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{path} does not match this model ({detail})",
                           f"resume with the run directory's own {RUN_FILE}")


def load_state(trainer: Trainer, path: str | Path) -> list[str]:
    """Continue ``trainer`` from a state file written by :func:`save_state`, once the file
    is known to fit it; what may keep the resume from being bit-exact, as warnings."""
    tensors, raw = read_state(path)
    try:
        info = StateInfo.model_validate(raw)
    except ValidationError as exc:
        raise _corrupt(path, describe_error(exc.errors(include_url=False)[0])) from None
    try:
        check_fit(trainer, path, tensors, info)
        trainer.load_state_dict(_state_dict(tensors, info))
    except DAMAGED as exc:
        # A state file edited or damaged inside a valid container: name it, no traceback.
        raise _corrupt(path, summary(exc, limit=160)) from None
    return exactness_warnings(info.exactness, exactness(trainer))


def _same_kind(fresh: Any, saved: Any) -> bool:
    """Whether ``saved`` (from JSON) can stand where the optimiser has ``fresh``."""
    # A flag or None: unset on one side, set on the other (e.g. foreach/fused) is alike.
    if isinstance(fresh, bool) or fresh is None:
        return isinstance(saved, bool) or saved is None
    if isinstance(fresh, (int, float)):
        return finite(saved)
    if isinstance(fresh, (tuple, list)):
        return (isinstance(saved, (tuple, list)) and len(saved) == len(fresh)
                and all(_same_kind(a, b) for a, b in zip(fresh, saved, strict=True)))
    if isinstance(fresh, str):
        return isinstance(saved, str)
    return True


def check_fit(trainer: Trainer, path: str | Path, tensors: dict[str, torch.Tensor],
              info: StateInfo) -> None:
    """Refuse a state that does not fit ``trainer``: other data or processes, an optimiser
    group or tensor the model does not have. Tensors of the wrong dtype would be cast
    silently by ``load_state_dict``: refused, as ``aezoo.load`` refuses them."""
    for key, mine in (("world_size", trainer.dist.world_size),
                      ("steps_per_epoch", trainer.steps_per_epoch)):
        if getattr(info, key) != mine:
            raise CheckpointError(
                f"{path} was saved with {key}={getattr(info, key)}, this run has {mine}",
                "resume with the same data, batch size and number of processes")
    images = (info.sampler or {}).get("images")
    if images is not None and images != len(trainer.train_images):
        raise CheckpointError(f"{path} was saved training on {images} images per process, "
                              f"this run has {len(trainer.train_images)}",
                              "resume with the same data, --limit and number of processes")
    groups, fresh_groups = info.optimizer.param_groups, trainer.optimizer.state_dict()[
        "param_groups"]
    if len(groups) != len(fresh_groups):
        raise _corrupt(path, f"optimizer.param_groups is not a list of {len(fresh_groups)}")
    for i, (group, fresh) in enumerate(zip(groups, fresh_groups, strict=True)):
        for key, value in fresh.items():
            where = f"optimizer.param_groups[{i}].{key}"
            if key not in group:
                raise _corrupt(path, f"{where} is missing")
            if key == "params" and group[key] != value:
                raise _corrupt(path, f"{where} is {group[key]!r}, this model's are {value!r}")
            if not _same_kind(value, group[key]):
                raise _corrupt(path, f"{where} is {group[key]!r}, not like {value!r}")
    own = trainer.model.state_dict()
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    odd = sorted(set(own) ^ set(weights))
    if odd:
        raise _mismatch(path, f"model.{odd[0]} is "
                        f"{'missing' if odd[0] in own else 'not one of its tensors'}")
    for name, value in weights.items():
        if value.dtype != own[name].dtype:
            raise _mismatch(path, f"model.{name} is {value.dtype}, the model expects "
                            f"{own[name].dtype}")
        if value.shape != own[name].shape:
            raise _mismatch(path, f"model.{name} has shape {list(value.shape)}, the model "
                            f"{list(own[name].shape)}")
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    for key, value in tensors.items():  # load_state_dict checks no shapes: the step would
        if key.startswith("optim.") and key.endswith(".step") and value.dim() != 0:
            raise _corrupt(path, f"{key} has shape {list(value.shape)}, not a scalar")
        if key.startswith("optim.") and value.dim() > 0:
            param = params[int(key.split(".")[1])]
            if value.shape != param.shape:
                raise _mismatch(path, f"{key} has shape {list(value.shape)}, the parameter "
                                f"{list(param.shape)}")
            if value.dtype != param.dtype:
                raise _mismatch(path, f"{key} is {value.dtype}, the parameter {param.dtype}")
        if key.startswith("rng.") and value.dtype != torch.uint8:
            raise _corrupt(path, f"{key} is {value.dtype}, not torch.uint8")
    for i in range(len(info.logged)):
        logged = tensors.get(f"acc.logged.{i}")
        if logged is None or logged.dim() != 0 or not logged.is_floating_point():
            raise _corrupt(path, f"acc.logged.{i} is missing or not a float scalar")
    loss_sum = tensors.get("acc.loss_sum")
    want = [1 + len(trainer.term_names)]  # [total, terms...]; a scalar: saved before terms
    if loss_sum is not None and (list(loss_sum.shape) not in (want, [] if want == [1] else want)
                                 or not loss_sum.is_floating_point()):
        raise _corrupt(path, f"acc.loss_sum is {loss_sum.dtype} {list(loss_sum.shape)}, not "
                       f"float {want}")


def _state_dict(tensors: dict[str, torch.Tensor], info: StateInfo) -> dict[str, Any]:
    """The inverse of :func:`save_state`: a trainer's ``state_dict()`` from the file."""
    cuda = {k: v for k, v in tensors.items() if k.startswith("rng.cuda.")}
    return {
        "epoch": info.epoch, "step": info.step, "global_step": info.global_step,
        "model": {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
        "optimizer": unflatten_optimizer(tensors, info.optimizer.model_dump()),
        "scaler": info.scaler,
        "ema": {k: v for k, v in tensors.items() if k.startswith("ema.")},
        "rng": {"torch": tensors["rng.torch"],
                "cuda": [cuda[f"rng.cuda.{i}"] for i in range(len(cuda))],
                "generator": tensors["rng.generator"], "noise": tensors.get("rng.noise")},
        "sums": {"loss": tensors["acc.loss_sum"], "images": info.loss_count,
                 "seconds": info.epoch_seconds,
                 "logged": {name: (tensors[f"acc.logged.{i}"], host_sum, count)
                            for i, (name, host_sum, count) in enumerate(info.logged)}},
        "stopped": info.stopped, "history": [row.model_dump() for row in info.history],
        "callbacks": info.callbacks,
    }
