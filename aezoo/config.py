"""From a variant name, config files and ``--set`` overrides to one validated RunSpec."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from aezoo import registry
from aezoo.errors import AezooError, SpecError, UnknownNameError, UsageError
from aezoo.protocols import CallbackComponent
from aezoo.registry import COMPONENT_KINDS
from aezoo.specfile import read_config
from aezoo.specs import ComponentSpec, DataSpec, ModelSpec, RunSpec, TrainSpec, validate

__all__ = ["COMPONENT_KINDS", "absolute_data_name", "build_model_spec", "build_run_spec",
           "callback_params", "component_params", "fixes_input_shape", "layer", "merge",
           "parse_assignment", "resolve_data", "resolve_model", "run_spec_from", "section_sets",
           "variant_defaults", "with_callbacks"]


def variant_defaults(name: str) -> dict[str, Any]:
    """The RunSpec a variant stands for, as a plain dict."""
    v = registry.variant(name)
    return {
        "model": {
            "variant": name,
            "encoder": {"name": v.encoder, "params": dict(v.encoder_params)},
            "decoder": {"name": v.decoder, "params": dict(v.decoder_params)},
            "loss": {"name": v.loss, "params": dict(v.loss_params)},
            "input_shape": list(v.input_shape),
            "init": v.init,
            "regularizers": [dict(r) for r in v.regularizers],
        },
        "train": dict(v.train),
    }


def merge(base: Mapping[str, Any], override: Mapping[str, Any], path: str = ""
          ) -> dict[str, Any]:
    """Deep merge. Choosing another component drops the params meant for the old one. A
    mapping of indices onto a list sets those items (``--set model.regularizers.0.weight=``)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            if "name" in value and "params" in old and value["name"] != old.get("name"):
                old = {k: v for k, v in old.items() if k != "params"}
            out[key] = merge(old, value, f"{path}{key}.")
        elif isinstance(value, Mapping) and isinstance(old, list) and _indices(value):
            out[key] = _merge_items(f"{path}{key}", old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _indices(value: Mapping[str, Any]) -> bool:
    return bool(value) and all(isinstance(k, str) and k.isdigit() for k in value)


def _merge_items(key: str, old: list[Any], value: Mapping[str, Any]) -> list[Any]:
    items = copy.deepcopy(old)
    for index, item in value.items():
        i = int(index) if len(index) < 10 else len(items)
        if i >= len(items):
            raise SpecError(f"{key} has {len(items)} item(s): there is no item {index[:12]}",
                            f"index from 0 to {len(items) - 1}, or set the whole list "
                            f"(--set '{key}=[...]')" if items else
                            f"set the whole list (--set '{key}=[...]')", key=key)
        items[i] = merge(items[i], item, f"{key}.{i}.") if isinstance(
            items[i], Mapping) and isinstance(item, Mapping) else copy.deepcopy(item)
    return items


def parse_assignment(text: str) -> dict[str, Any]:
    """``a.b.c=VALUE`` -> ``{"a": {"b": {"c": VALUE}}}``; VALUE is JSON, else a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise SpecError(
            f"invalid --set '{shown}'", "write KEY=VALUE as one word with a dotted key, e.g. "
            "--set train.lr=0.01 (not --set train.lr 0.01)")
    try:
        value: Any = json.loads(raw, parse_int=_parse_int)
    except (ValueError, RecursionError):  # ValueError: JSONDecodeError is one
        value = raw
    for part in reversed(key.split(".")):
        value = {part: value}
    return dict(value)


def section_sets(section: str, sets: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """The ``KEY=VALUE`` items of ``sets`` under ``section.`` (``data``, ``train``) as one
    layer of that section, later winning; and the keys of those outside it."""
    layer: dict[str, Any] = {}
    outside = []
    for item in sets:
        parsed = parse_assignment(item)
        value = parsed.get(section) if set(parsed) == {section} else None
        if isinstance(value, dict):
            layer = merge(layer, value)
        else:
            outside.append(item.partition("=")[0].strip())
    return layer, outside


_MAX_DIGITS = 4000  # below Python's int <-> str limit (4300 digits by default)


def _parse_int(digits: str) -> int:
    """A JSON integer; one too long to convert (``train.seed=1000...0``) becomes a number of
    the same magnitude, so the spec's bound names the key and the range instead of
    Python's digit limit raising."""
    body = digits.lstrip("-")
    if len(body) <= _MAX_DIGITS:
        return int(digits)
    return (-1 if digits.startswith("-") else 1) * 10 ** (len(body) - 1)


def layer(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 0.1, "model.loss.name": "mse"}`` -> one nested layer; None values
    (a flag not given) are left out."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        *parents, last = key.split(".")
        table = out
        for part in parents:
            table = table.setdefault(part, {})
        table[last] = value
    return out


def edit_callbacks(current: Iterable[str], add: Iterable[str] = (),
                   drop: Iterable[str] = ()) -> list[str]:
    """``train.callbacks`` with ``add`` appended (once each) and ``drop`` taken out: how
    ``--callback`` and ``--no-callback`` change a variant's (or a resumed run's) own, which
    stay on otherwise. ``drop`` matches a name bare or ``DIST:NAME``; one not on is an error."""
    names = list(dict.fromkeys([*current, *add]))
    for name in drop:
        found = [n for n in names if name in (n, n.rpartition(":")[2])]
        if not found:
            raise UsageError(f"--no-callback {name}: no callback '{name}' is on "
                             f"(on: {', '.join(names) or 'none'})",
                             "name one of those; aezoo's own (metrics, checkpoint, ...) "
                             "always run")
        names = [n for n in names if n not in found]
    return names


def run_spec_from(name: str | None, config_path: str | Path | None = None,
                  flags: Mapping[str, Any] | None = None, sets: Iterable[str] = (),
                  callbacks: tuple[Iterable[str], Iterable[str]] = ((), ())) -> RunSpec:
    """What ``aezoo train`` resolves, later winning: variant ``name``'s defaults, the spec
    file ``config_path``, the ``flags`` layer (see ``layer``), then each ``KEY=VALUE``;
    then ``callbacks``: (added, dropped) train callbacks (see ``edit_callbacks``)."""
    layers: list[Mapping[str, Any]] = []
    if config_path is not None:
        layers.append(_data_paths_from(read_config(config_path), Path(config_path).parent))
    if flags:
        layers.append(flags)
    layers.extend(parse_assignment(item) for item in sets)
    try:
        spec = build_run_spec(name, layers, callbacks)
    except SpecError as exc:
        if config_path is None or not exc.key or not _sets(layers[0], exc.key) \
                or any(_sets(later, exc.key) for later in layers[1:]):
            raise
        # The invalid value (or unknown key) came from the file: say which file.
        problem = exc.problem.replace(f"invalid {exc.key}:",
                                      f"invalid {exc.key} in {config_path}:", 1)
        raise SpecError(problem, exc.fix, key=exc.key) from None
    # Stored absolute (run.json), so --resume, eval, reconstruct and encode work from any
    # directory; a path from the command line is relative to the current one.
    name_now = absolute_data_name(spec.data.name, Path.cwd())
    if name_now == spec.data.name:
        return spec
    return spec.model_copy(update={"data": spec.data.model_copy(update={"name": name_now})})


def absolute_data_name(name: str, base: Path) -> str:
    """``npz:data.npz`` -> ``npz:BASE/data.npz`` (absolute) for a dataset source that takes
    a path (folder:, npz:, npy:, a plugin's); other names, and absolute paths, as given."""
    from aezoo.data.catalog import resolve

    try:
        resolved = resolve(name)
    except AezooError:  # reported where the data is loaded, with its own message
        return name
    argument = resolved.argument
    if not resolved.source.takes_path or not argument or "://" in argument:
        return name  # a URL (wds:http://...) is not a path to anchor
    path = Path(argument).expanduser()
    if path.is_absolute():
        return name
    head = name.strip()[: len(name.strip()) - len(argument)]
    return head + str(Path(base).absolute() / path)


def _data_paths_from(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A spec file's layer with its data path made relative to the file's directory."""
    section = data.get("data")
    if isinstance(section, Mapping) and isinstance(section.get("name"), str):
        data = {**data, "data": {**section, "name": absolute_data_name(section["name"],
                                                                        base)}}
    return data


def _sets(data: Mapping[str, Any], key: str) -> bool:
    """Whether the nested ``data`` holds dotted ``key`` (or a value above it: a list
    holding ``model.input_shape.0``)."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping):
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def fixes_input_shape(sets: Iterable[str]) -> bool:
    """Whether one of ``sets`` (``KEY=VALUE``) sets ``model.input_shape`` itself."""
    return any(item.split("=", 1)[0].strip() == "model.input_shape" for item in sets)


def resolve_model(spec: ModelSpec) -> ModelSpec:
    """Validate each component's params with its own model; fill in every default."""
    updates: dict[str, Any] = {
        kind: ComponentSpec(name=getattr(spec, kind).name,
                            params=component_params(spec, kind).model_dump(mode="json"))
        for kind in COMPONENT_KINDS}
    updates["regularizers"] = [
        reg.model_copy(update={"params": part_params("regularizer", reg.name, reg.params,
                                                     f"model.regularizers.{i}.params")
                               .model_dump(mode="json")})
        for i, reg in enumerate(spec.regularizers)]
    return spec.model_copy(update=updates)


def resolve_train(spec: TrainSpec) -> TrainSpec:
    """The optimiser, schedule and input corruption resolved: names known, their params
    validated by their own models, defaults filled in."""
    updates: dict[str, Any] = {}
    for kind, key in (("optimizer", "optimizer"), ("schedule", "scheduler")):
        name = getattr(spec, key)
        try:
            params = part_params(kind, name, getattr(spec, f"{key}_params"),
                                 f"train.{key}_params")
        except UnknownNameError as exc:  # say which key: the name alone is not enough
            raise SpecError(f"invalid train.{key}: {exc.problem}", exc.fix) from None
        updates[f"{key}_params"] = params.model_dump(mode="json")
    if spec.corrupt is not None:
        params = part_params("transform", spec.corrupt.name, spec.corrupt.params,
                             "train.corrupt.params")
        updates["corrupt"] = spec.corrupt.model_copy(
            update={"params": params.model_dump(mode="json")})
    updates["callback_params"] = callback_params(spec)
    return spec.model_copy(update=updates)


def callback_params(spec: TrainSpec) -> dict[str, dict[str, Any]]:
    """``train.callback_params`` resolved: each key a callback the run turns on, its params
    validated by that callback's model, defaults filled in for each callback that has one."""
    for key in spec.callback_params:
        if key not in spec.callbacks:
            where = f"train.callback_params.{key}"
            raise SpecError(f"invalid {where}: no callback '{key}' is on (on: "
                            f"{', '.join(spec.callbacks) or 'none'})",
                            f"turn it on (--callback {key}), or drop {where}", key=where)
    out = {}
    for name in spec.callbacks:
        where = f"train.callback_params.{name}"
        given = spec.callback_params.get(name, {})
        descriptor = registry.load("callback", name)
        if isinstance(descriptor, CallbackComponent):
            out[name] = validate(descriptor.params, dict(given), where).model_dump(mode="json")
        elif given:  # a plain factory(run_dir): the earlier API, without params
            raise SpecError(f"invalid {where}: callback '{name}' takes no params",
                            f"drop {where}", key=where)
    return out


def resolve_data(spec: DataSpec) -> DataSpec:
    """``data.params`` validated by the dataset's own model, defaults filled in. A name
    that does not resolve now is left as it is: loading the data reports it."""
    from aezoo.data.catalog import resolve, source_params

    try:
        found = resolve(spec.name)
    except AezooError:
        return spec
    typed = source_params(found, spec.params)
    return spec.model_copy(update={
        "params": {} if typed is None else typed.model_dump(mode="json")})


def part_params(kind: str, name: str, params: Mapping[str, Any], where: str) -> BaseModel:
    """``params`` validated by the params model of the ``kind`` named ``name``."""
    return validate(registry.load(kind, name).params, dict(params), where)


def component_params(spec: ModelSpec, kind: str) -> BaseModel:
    """The typed params object of one component of a (resolved) spec."""
    comp: ComponentSpec = getattr(spec, kind)
    return part_params(kind, comp.name, comp.params, f"model.{kind}.params")


def build_run_spec(
    variant: str | None, layers: Iterable[Mapping[str, Any]] = (),
    callbacks: tuple[Iterable[str], Iterable[str]] = ((), ()),
) -> RunSpec:
    """Variant defaults, then each layer (config file, flags, --set) in order, then
    ``callbacks``: (added, dropped) train callbacks (see ``edit_callbacks``).

    The variant may be named by ``variant`` or by any layer's ``model.variant``; two
    different names are an error (mixing one's label with the other's parts would lie).
    """
    layers = list(layers)
    named = {variant} if variant else set()
    for layer in layers:
        model_layer = layer.get("model")
        if isinstance(model_layer, Mapping) and model_layer.get("variant"):
            named.add(str(model_layer["variant"]))
    if len(named) > 1:
        raise UsageError(f"conflicting variants {', '.join(sorted(named))}",
                         "name one variant: NAME, or model.variant in --config or --set")
    data: dict[str, Any] = variant_defaults(named.pop()) if named else {}
    for layer in layers:
        data = merge(data, layer)
    if "model" not in data:
        raise UsageError("no model given", "name a variant (see `aezoo list`) or pass --config")
    spec: RunSpec = validate(RunSpec, data)
    return spec.model_copy(update={"model": resolve_model(spec.model),
                                   "train": resolve_train(with_callbacks(spec.train,
                                                                         *callbacks)),
                                   "data": resolve_data(spec.data)})


def with_callbacks(spec: TrainSpec, add: Iterable[str] = (), drop: Iterable[str] = ()
                   ) -> TrainSpec:
    """``spec`` with its callbacks edited (``edit_callbacks``); a dropped one's params go."""
    add = list(add)
    edited = edit_callbacks(spec.callbacks, add, drop)
    dropped = {*spec.callbacks, *add} - set(edited)
    if edited == spec.callbacks and not dropped:
        return spec
    return spec.model_copy(update={"callbacks": edited, "callback_params": {
        k: v for k, v in spec.callback_params.items() if k not in dropped}})


def build_model_spec(name_or_spec: str | ModelSpec | Mapping[str, Any],
                     overrides: Mapping[str, Any]) -> ModelSpec:
    """What ``aezoo.build`` accepts: a variant name, a spec or a dict, plus overrides.

    An override of ``encoder``/``decoder``/``loss`` may be a name or a dict;
    ``encoder_params`` etc. update that component's params.
    """
    if isinstance(name_or_spec, str):
        base = variant_defaults(name_or_spec)["model"]
    elif isinstance(name_or_spec, ModelSpec):
        base = name_or_spec.model_dump(mode="json")
    elif isinstance(name_or_spec, Mapping):
        base = dict(name_or_spec)
    else:
        raise SpecError(f"cannot build a model from {name_or_spec!r:.40} "
                        f"({type(name_or_spec).__name__})",
                        "give a variant name, a ModelSpec or a dict (see `aezoo list`)")
    layer: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in COMPONENT_KINDS and isinstance(value, str):
            layer.setdefault(key, {})["name"] = value
        elif key.endswith("_params") and key[: -len("_params")] in COMPONENT_KINDS:
            if not isinstance(value, Mapping):
                raise SpecError(f"{key} must be a dict (got {value!r})",
                                f"e.g. {key}={{'channels': [32, 16, 8]}}")
            layer.setdefault(key[: -len("_params")], {})["params"] = dict(value)
        else:
            layer[key] = value
    spec: ModelSpec = validate(ModelSpec, merge(base, layer), "model")
    return resolve_model(spec)
