"""Every kind of plugin part, in one table: its entry-point group, what an entry must be,
and where users see what is installed.

This is aezoo's ``hookspecs``: to add a kind of extension point, add one row here (and the
descriptor type, if the kind has one); discovery, conflicts, ``AEZOO_PLUGINS``, failure
reports and ``aezoo plugins`` then work for it with no other change. First-party parts of
every kind are registered through these same groups in aezoo's ``pyproject.toml``.

Torch-free and cheap: listings read this table without importing plugin code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aezoo.data.source import DatasetSource
from aezoo.protocols import (
    CallbackComponent,
    DecoderComponent,
    EncoderComponent,
    LossComponent,
    MetricComponent,
    OptimizerComponent,
    RegularizerComponent,
    ScheduleComponent,
    TransformComponent,
    Variant,
)

GROUP_PREFIX = "aezoo."
FIRST_PARTY = "aezoo"


@dataclass(frozen=True)
class Kind:
    """One kind of plugin part.

    ``descriptor``: the type an entry point must resolve to, or None when the entry is a
    callable (``factory``: callbacks take the run directory, commands the typer app). A
    kind with both (callbacks) takes either; ``check`` then applies to the descriptor.
    ``check``: field checks of a descriptor beyond its type (None: none).
    ``listing``: the command that shows what is installed, quoted in "unknown name" errors.
    """

    name: str
    group: str
    descriptor: type | None
    listing: str
    description: str
    factory: bool = False
    check: Callable[[Any], str | None] | None = None


def _component_problem(obj: Any) -> str | None:
    from pydantic import BaseModel

    if not (isinstance(obj.params, type) and issubclass(obj.params, BaseModel)):
        return f"params is {obj.params!r}, not a pydantic BaseModel subclass"
    if not callable(obj.build):
        return f"build is {obj.build!r}, not callable"
    if not isinstance(obj.description, str):
        return "description is not a string"
    requires = getattr(obj, "requires", ())
    if not isinstance(requires, tuple) or not all(  # KIND:NAME, or KIND:DIST:NAME
            isinstance(r, str) and r.split(":")[0] in REQUIRABLE and 2 <= len(r.split(":")) <= 3
            and all(r.split(":")) for r in requires):
        return (f"requires must be a tuple of 'KIND:NAME' (or 'KIND:DIST:NAME') strings, KIND "
                f"one of {', '.join(REQUIRABLE)}; got {requires!r}")
    return None


def _dataset_problem(obj: Any) -> str | None:
    from pydantic import BaseModel

    if obj.params is not None and not (isinstance(obj.params, type)
                                       and issubclass(obj.params, BaseModel)):
        return f"params is {obj.params!r}, not None or a pydantic BaseModel subclass"
    return None


def _metric_problem(obj: Any) -> str | None:
    if not callable(obj.compute):
        return f"compute is {obj.compute!r}, not callable"
    if not isinstance(obj.description, str):
        return "description is not a string"
    return None


def _is_shape(value: Any) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value))


def _variant_problem(v: Variant) -> str | None:
    for kind in COMPONENT_KINDS:
        if not isinstance(getattr(v, kind), str) or not getattr(v, kind):
            return f"{kind} must be a component name, got {getattr(v, kind)!r}"
        if not isinstance(getattr(v, f"{kind}_params"), Mapping):
            return f"{kind}_params must be a mapping"
    if not _is_shape(v.input_shape):
        return f"input_shape must be (C, H, W) positive ints, got {v.input_shape!r}"
    for shape in getattr(v, "example_shapes", ()):
        if not _is_shape(shape):
            return f"example_shapes must hold (C, H, W) positive ints, got {shape!r}"
    if not isinstance(v.train, Mapping):
        return "train must be a mapping of TrainSpec values"
    if v.param_count is not None and (not isinstance(v.param_count, int) or v.param_count < 0):
        return f"param_count must be a non-negative int or None, got {v.param_count!r}"
    if not isinstance(v.init, str) or not isinstance(v.description, str):
        return "init and description must be strings"
    if not all(isinstance(r, Mapping) and isinstance(r.get("name"), str)
               for r in getattr(v, "regularizers", ())):
        return "regularizers must be mappings with a 'name'"
    return None


def _weight_set_problem(obj: Any) -> str | None:
    from aezoo.weightset import WeightSet  # pydantic: imported when a weight set is used

    if not isinstance(obj, WeightSet):
        return f"it is a {type(obj).__name__}, not an aezoo.weightset.WeightSet"
    return None


KINDS: tuple[Kind, ...] = (
    Kind("encoder", "aezoo.encoders", EncoderComponent, "aezoo list --components",
         "maps images to latents", check=_component_problem),
    Kind("decoder", "aezoo.decoders", DecoderComponent, "aezoo list --components",
         "maps latents to image logits", check=_component_problem),
    Kind("loss", "aezoo.losses", LossComponent, "aezoo list --components",
         "the training objective", check=_component_problem),
    Kind("variant", "aezoo.variants", Variant, "aezoo list",
         "a named preset of parts and training defaults", check=_variant_problem),
    Kind("regularizer", "aezoo.regularizers", RegularizerComponent, "aezoo list --components",
         "a weighted latent penalty (model.regularizers)", check=_component_problem),
    Kind("transform", "aezoo.transforms", TransformComponent, "aezoo list --components",
         "a training-time input corruption (train.corrupt)", check=_component_problem),
    Kind("optimizer", "aezoo.optimizers", OptimizerComponent, "aezoo list --components",
         "an optimiser (train.optimizer)", check=_component_problem),
    Kind("schedule", "aezoo.schedules", ScheduleComponent, "aezoo list --components",
         "a learning-rate schedule (train.scheduler)", check=_component_problem),
    Kind("metric", "aezoo.metrics", MetricComponent, "aezoo list --components",
         "a reconstruction metric (aezoo eval; train.metrics)", check=_metric_problem),
    Kind("dataset", "aezoo.datasets", DatasetSource, "aezoo data list",
         "a dataset source (--data NAME)", check=_dataset_problem),
    Kind("weights", "aezoo.weights", None, "aezoo list --pretrained",
         "trained weights of a variant, named VARIANT.TAG (aezoo.load, train --init)",
         check=_weight_set_problem),
    Kind("callback", "aezoo.callbacks", CallbackComponent, "aezoo plugins",
         "a training callback (--callback NAME)", factory=True, check=_component_problem),
    Kind("command", "aezoo.commands", None, "aezoo --help",
         "CLI commands, register(app) adds them to `aezoo`", factory=True),
)
COMPONENT_KINDS = ("encoder", "decoder", "loss")  # the parts a model is built from
# What `aezoo list --components` and `aezoo info NAME` show: every interchangeable part.
PART_KINDS = (*COMPONENT_KINDS, "regularizer", "transform", "optimizer", "schedule", "metric")
# The kinds of part a run spec names, so a part's ``requires`` can name them.
REQUIRABLE = (*PART_KINDS, "callback")
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
BY_GROUP: dict[str, Kind] = {k.group: k for k in KINDS}


def kind(name: str) -> Kind | None:
    """The row for a kind name (``"encoder"``) or group (``"aezoo.encoders"``), if known."""
    return BY_NAME.get(name) or BY_GROUP.get(name)
