"""A trained model with the images of one split of a dataset: what ``aezoo eval``,
``aezoo encode``, ``aezoo reconstruct`` and a plugin's command that uses a model load
(``load_split``, also ``aezoo.evaluation.load_split``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aezoo.errors import ShapeError, SpecError, UsageError
from aezoo.protocols import format_shape
from aezoo.specs import ComponentSpec, DataSpec

SPLITS = ("test", "val", "train")


@dataclass
class Loaded:
    """A model on its device and the uint8 images of one split."""

    model: Any
    path: Path
    data_name: str
    split: str
    images: Any  # torch.Tensor (N, C, H, W) uint8 on the model's device
    labels: Any  # numpy array or None
    memory_format: Any
    class_names: list[str] | None = None  # class_names[k] names label k, where known


def check_request(split: str | None, limit: int | None) -> None:
    """An unknown split or a limit below 1 is refused before anything loads."""
    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split '{split}'", "use test, val or train")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be positive (got {limit})", "pass --limit 1 or more")


def load_split(target: str | Path, data: str | None = None, split: str | None = None,
               limit: int | None = None, device: str = "auto") -> Loaded:
    """The model (a file, a run directory, a weight set or ``hf://`` repo: see
    ``aezoo.pretrained.locate``) and the images it should see, checked for a matching
    shape. ``data`` defaults to the run's (or weight set's) dataset, ``split`` to test
    (else val). What ``aezoo eval`` uses; a plugin's command uses it the same way."""
    from aezoo.checkpoint import load
    from aezoo.device import resolve_device
    from aezoo.pretrained import locate
    from aezoo.rundir import data_spec_beside

    check_request(split, limit)
    dev = resolve_device(device)
    # A path that is not there is a usage error (exit code 2), as for `train --resume`; a
    # file that is there but broken stays a CheckpointError.
    located = locate(target)
    path = located.path
    model = load(path, device=dev)
    data_spec = data_spec_beside(path, data)
    if data is None and located.weight_set is not None:  # the data its recipe names
        data_spec = _recipe_data(located.weight_set.recipe, located.weight_set.dataset)
    return model_split(model, path, data_spec, split, limit, dev)


def model_split(model: Any, path: Path, data_spec: Any, split: str | None,
                limit: int | None, dev: torch.device) -> Loaded:
    """``model`` (on ``dev``, known as ``path``) with the images of one split of
    ``data_spec``, checked for a matching shape."""
    from aezoo.data import load_dataset
    from aezoo.data.streamed import as_array
    from aezoo.tensors import preferred_memory_format

    check_request(split, limit)
    dataset = load_dataset(data_spec)
    test = getattr(dataset, "test", None)
    split = split or ("test" if test is not None else "val")
    if split == "test" and test is None:
        raise UsageError(f"dataset {dataset.name} has no test split", "use --split val")
    images, labels = getattr(dataset, split), getattr(dataset, f"{split}_labels", None)
    images = as_array(images, limit)  # mapped or streamed splits are read here, once
    if limit is not None:
        labels = None if labels is None else labels[:limit]
    shape = tuple(images.shape[1:])
    if shape != tuple(model.input_shape):
        raise ShapeError(f"{path} expects {format_shape(model.input_shape)} images, "
                         f"dataset {dataset.name} has {format_shape(shape)}",
                         "pass the --data the model was trained on")
    memory_format = preferred_memory_format(dev)
    model.to(memory_format=memory_format)  # type: ignore[call-overload]
    tensor = torch.from_numpy(images.copy()).to(dev)
    return Loaded(model, path, dataset.name, split, tensor, labels, memory_format,
                  getattr(dataset, "class_names", None))


def _recipe_data(recipe: dict[str, Any], dataset: str) -> Any:
    try:
        return DataSpec.model_validate(recipe.get("data") or {"name": dataset})
    except ValueError:  # pydantic's ValidationError: a card from another aezoo version
        return DataSpec(name=dataset)


def corruption(name: str, model_file: Path) -> ComponentSpec:
    """The transform ``name`` with the params the run beside ``model_file`` trained with
    (when it trained with that transform), else its defaults; resolved and validated."""
    from aezoo.config import part_params
    from aezoo.rundir import RUN_FILE, read_run_spec

    run_file = model_file.parent / RUN_FILE
    trained = None
    if run_file.exists():
        try:
            trained = read_run_spec(model_file.parent).train.corrupt
        except UsageError:
            pass
    if trained is None or trained.name != name:
        typed = part_params("transform", name, {}, "--corrupt")
    else:  # a bad value came from the run, not from the flag: name where it is
        try:
            typed = part_params("transform", name, dict(trained.params), "train.corrupt.params")
        except SpecError as exc:
            raise UsageError(f"{run_file} holds {exc.problem}",
                             f"fix train.corrupt in {run_file}") from None
    return ComponentSpec(name=name, params=typed.model_dump(mode="json"))

