"""Run specs as documents: the resolved spec ``aezoo config`` writes (round-trip checked)
and the JSON Schema ``aezoo schema`` prints, with every component's params typed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from aezoo import registry
from aezoo.config import build_run_spec, run_spec_from
from aezoo.errors import UsageError
from aezoo.protocols import CallbackComponent
from aezoo.registry import Failure
from aezoo.specfile import FORMATS, SCHEMA_KEY, parse, render
from aezoo.specs import (
    MAX_ITEMS,
    ComponentSpec,
    DataSpec,
    ModelSpec,
    RegularizerSpec,
    RunSpec,
    TrainSpec,
)

__all__ = ["resolved_spec", "schema", "spec_text", "typed_run_spec"]


# --- aezoo config -------------------------------------------------------------------


def resolved_spec(name: str | None, config: Path | None, sets: list[str]) -> RunSpec:
    """Variant ``name``, then spec file ``config``, then each ``KEY=VALUE`` of ``sets``."""
    return run_spec_from(name, config, None, sets)


def spec_text(spec: RunSpec, fmt: str) -> str:
    """The file that makes ``aezoo train --config FILE`` resolve to exactly ``spec``."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    name = spec.model.variant or "custom"
    comment = (f"aezoo run spec ({name}), complete and resolved.\n"
               "Train it: aezoo train --config THIS_FILE\n"
               f"Editor completion: aezoo schema {spec.model.variant or ''}".rstrip())
    try:
        text = render(spec.model_dump(mode="json"), fmt, comment)
    except ValueError as exc:
        raise UsageError(f"this spec cannot be written as {fmt.upper()} ({exc})",
                         "use --format yaml or --format json") from None
    # Prove the file round-trips: a null left out of TOML could let a variant default in.
    again = build_run_spec(None, [parse(text, fmt)])
    if again != spec:
        raise UsageError(f"this spec cannot be written as {fmt.upper()} exactly (a null "
                         "value TOML cannot express)", "use --format yaml or --format json")
    return text


# --- aezoo schema -------------------------------------------------------------------


def _camel(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", text) if p)


def _choices(kind: str, left_out: list[Failure] | None) -> list[tuple[str, str, Any]]:
    """(name, qualified name, descriptor) of each usable ``kind``; ambiguous names qualified.

    A broken entry is left out (strict mode: raises); its failure goes to ``left_out``.
    """
    loaded = registry.load_all(kind)
    if left_out is not None:
        usable = {entry for entry, _ in loaded}
        failed = {f.entry: f for f in registry.failures()}
        left_out.extend(failed[e] for e in registry.entries(kind)
                        if e not in usable and e in failed)
    return [(registry.display_name(entry), entry.qualified, desc) for entry, desc in loaded]


def _component_model(kind: str, name: str, desc: Any, default: Any = None,
                     qualified: str | None = None, base: Any = None) -> type[BaseModel]:
    required = any(f.is_required() for f in desc.params.model_fields.values())
    params_field: Any
    if default is not None:
        params_field = Field(default=desc.params.model_validate(default))
    elif required:
        params_field = Field(...)
    else:
        params_field = Field(default_factory=desc.params)
    spellings = tuple(dict.fromkeys([name, qualified or name]))
    name_type: Any = Literal[spellings]  # NAME and DIST:NAME both select it
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{kind.title()}{_camel(name)}",
        __base__=base or ComponentSpec,
        __doc__=f"{kind} '{name}': {desc.description}".strip(": "),
        name=(name_type, Field(name) if default is not None else Field(...)),
        params=(desc.params, params_field),
    )
    return model


def typed_run_spec(name: str | None = None, left_out: list[Failure] | None = None
                   ) -> type[RunSpec]:
    """RunSpec with each component's params typed: every installed component (a union on
    ``name``) or, for variant ``name``, its components with its values as defaults.

    Without ``name``, components that fail to load are left out of it (in strict mode they
    raise); their failures are appended to ``left_out`` when it is given.
    """
    resolved = resolved_spec(name, None, []) if name else None
    fields: dict[str, Any] = {}
    for kind in registry.COMPONENT_KINDS:
        if resolved is not None:
            comp = getattr(resolved.model, kind)
            desc = registry.load(kind, comp.name)
            model = _component_model(kind, comp.name, desc, comp.params)
            fields[kind] = (model, Field(default=model.model_validate(comp.model_dump())))
            continue
        union = _union(kind, left_out)
        if union is not None:
            fields[kind] = (union, Field(...))
    regularizers = _union("regularizer", left_out, RegularizerSpec)
    if regularizers is not None:
        fields["regularizers"] = (list[regularizers], Field(  # type: ignore[valid-type]
            default_factory=list, max_length=MAX_ITEMS,
            description=ModelSpec.model_fields["regularizers"].description))
    title = f"aezoo run spec for {name}" if name else "aezoo run spec"
    model_spec: Any = create_model("ModelSpec", __base__=ModelSpec, __doc__=ModelSpec.__doc__,
                                   **fields)
    train_spec: Any = create_model("TrainSpec", __base__=TrainSpec, __doc__=TrainSpec.__doc__,
                                   **_train_fields(left_out))
    data_spec: Any = create_model("DataSpec", __base__=DataSpec, __doc__=DataSpec.__doc__,
                                  **_data_fields(left_out))
    if resolved is not None:
        run_fields: dict[str, Any] = {
            part: (typed, Field(default=typed.model_validate(
                getattr(resolved, part).model_dump(mode="json"))))
            for part, typed in (("model", model_spec), ("train", train_spec),
                                ("data", data_spec))}
    else:
        run_fields = {"model": (model_spec, Field(...)),
                      "train": (train_spec, Field(default_factory=train_spec)),
                      "data": (data_spec, Field(default_factory=data_spec))}
    run_spec: type[RunSpec] = create_model(  # type: ignore[call-overload]
        "RunSpec", __base__=RunSpec, __doc__=title, **run_fields)
    return run_spec


def _union(kind: str, left_out: list[Failure] | None, base: Any = None) -> Any:
    """Every installed ``kind`` as one type, told apart by ``name`` (None: none installed)."""
    models = [_component_model(kind, n, d, qualified=q, base=base)
              for n, q, d in _choices(kind, left_out)]
    if len(models) < 2:
        return models[0] if models else None
    return Annotated[Union[tuple(models)], Field(discriminator="name")]  # noqa: UP007


# (train key naming a part, its kind): the part's params go in train.KEY_params
_NAMED_PARAMS = (("optimizer", "optimizer"), ("scheduler", "schedule"))


def _params_models(kind: str, left_out: list[Failure] | None) -> list[type[BaseModel]]:
    """The distinct params models of the installed ``kind``, in ``_choices`` order."""
    return list(dict.fromkeys(d.params for _, _, d in _choices(kind, left_out)))


def _train_fields(left_out: list[Failure] | None) -> dict[str, Any]:
    """train.corrupt typed by the installed transforms, train.callback_params by the
    callbacks that declare params (a key each, the callback's name), optimizer_params and
    scheduler_params by the optimisers' and schedules' models (``schema`` ties each to its
    name)."""
    fields: dict[str, Any] = {}
    for key, kind in _NAMED_PARAMS:
        models = _params_models(kind, left_out)
        if models:
            fields[f"{key}_params"] = (Union[tuple(models)], Field(  # noqa: UP007
                default_factory=dict,
                description=TrainSpec.model_fields[f"{key}_params"].description))
    transforms = _union("transform", left_out)
    if transforms is not None:
        fields["corrupt"] = (transforms | None, Field(
            None, description=TrainSpec.model_fields["corrupt"].description))
    described = [(n, d) for n, _, d in _choices("callback", left_out)
                 if isinstance(d, CallbackComponent)]
    params: Any = create_model(  # type: ignore[call-overload]
        "CallbackParams", __config__=ConfigDict(extra="allow"),
        **{f"callback_{i}": (d.params | None, Field(None, alias=n, description=d.description))
           for i, (n, d) in enumerate(described)})
    fields["callback_params"] = (params, Field(
        default_factory=params, description=TrainSpec.model_fields["callback_params"].description))
    return fields


def _data_fields(left_out: list[Failure] | None) -> dict[str, Any]:
    """data.params: one of the installed datasets' params models, or none at all."""
    models = [d.params for _, _, d in _choices("dataset", left_out) if d.params is not None]
    empty = Annotated[dict[str, Any], Field(max_length=0, title="no params")]
    union: Any = Union[tuple([*dict.fromkeys(models), empty])]  # noqa: UP007
    return {"params": (union, Field(default_factory=dict,
                                    description=DataSpec.model_fields["params"].description))}


def schema(name: str | None = None, left_out: list[Failure] | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a run spec file; ``left_out`` as in
    ``typed_run_spec``."""
    model = typed_run_spec(name, left_out)
    out: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    out.update(model.model_json_schema())
    default = model.model_fields["train"].get_default(call_default_factory=True)
    _tie_params_to_names(out["$defs"]["TrainSpec"], default)
    out["title"] = f"aezoo run spec for {name}" if name else "aezoo run spec"
    # A spec file may point at this schema; aezoo ignores the key when it reads the file.
    out["properties"] = {SCHEMA_KEY: {"type": "string", "description": "the JSON Schema "
                                      "this file follows (ignored by aezoo)"},
                         **out.get("properties", {})}
    return out


def _tie_params_to_names(train: dict[str, Any], default: Any) -> None:
    """``optimizer_params`` (``scheduler_params``) as the params model of the optimiser
    (schedule) that ``optimizer`` (``scheduler``) names: one ``if``/``then`` per part; the
    default part's also applies when the name is left out. ``default``: the train spec
    that applies when a file gives none (for its default names)."""
    rules = []
    for key, kind in _NAMED_PARAMS:
        prop = train["properties"].get(f"{key}_params", {})
        refs = prop.get("anyOf", [{"$ref": prop["$ref"]}] if "$ref" in prop else [])
        models = _params_models(kind, None)
        if len(refs) < 2 or len(refs) != len(models):  # one model for all: nothing to tie
            continue
        ref_of = dict(zip(models, refs, strict=True))
        chosen = getattr(default, key)
        for n, q, d in _choices(kind, None):
            spellings = list(dict.fromkeys([n, q]))
            named: dict[str, Any] = {"properties": {key: {"enum": spellings}}}
            if chosen not in spellings:  # the default's rule holds with the key left out
                named["required"] = [key]
            rules.append({"if": named, "then": {"properties": {f"{key}_params": ref_of[
                d.params]}}})
    if rules:
        train["allOf"] = rules
