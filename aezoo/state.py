"""Training state (for ``--resume``) as one safetensors file: tensors plus JSON, no pickle.

Tensor names: ``model.<key>`` (weights), ``optim.<param>.<key>`` (per-parameter optimiser
state), ``rng.torch``, ``rng.cuda.<i>``, ``rng.generator`` (uint8 RNG states),
``acc.loss_sum`` (the epoch's loss accumulator). The header metadata ``aezoo.state``
holds everything else as JSON: position, optimiser groups, AMP scaler, history,
callback states. One file, written atomically, so it is always self-consistent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo._safetensors import load_tensors, read_metadata, save_tensors
from aezoo.errors import CheckpointError

if TYPE_CHECKING:
    import torch

STATE_VERSION = 1
META_KEY = "aezoo.state"


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors, JSON-able rest)."""
    import torch

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
                              "give the run directory that holds state.safetensors")
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
