"""``aezoo list`` and ``aezoo info``: what is installed, read from entry-point metadata."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import typer
from rich import box
from rich.markup import escape

from aezoo import registry
from aezoo.cli import complete
from aezoo.cli.common import console, warn_unavailable
from aezoo.cli.tables import ID, NUMBER, TEXT, print_params, show, table
from aezoo.errors import PluginError, UnknownNameError
from aezoo.kinds import COMPONENT_KINDS, PART_KINDS
from aezoo.protocols import format_shape


def _quietly(load: Callable[..., Any], *args: Any) -> Any | None:
    """``load(*args)``: a descriptor or a model; None where a plugin fails (the failure is
    recorded and warned about once)."""
    try:
        return load(*args)
    except PluginError:
        if registry.strict():
            raise
        return None


def _variant_rows(pattern: str | None, count_params: bool) -> list[dict[str, Any]]:
    rows = []
    for entry in registry.entries("variant"):
        if pattern and not registry.fnmatch.fnmatchcase(entry.name, pattern):
            continue
        v = _quietly(registry.load, "variant", entry.qualified)
        if v is None:
            continue
        params = v.param_count
        if count_params:
            import aezoo

            model = _quietly(aezoo.build, entry.qualified)  # broken: warned about below
            params = None if model is None else model.num_parameters()
        rows.append({"name": entry.name, "encoder": v.encoder, "decoder": v.decoder,
                     "loss": v.loss, "params": params,
                     "input_shape": list(v.input_shape), "dist": entry.dist,
                     "version": entry.version, "description": v.description})
    ambiguous = registry.conflicts("variant")
    for r in rows:  # a name two distributions claim is shown qualified, as it must be used
        if r["name"] in ambiguous:
            r["name"] = f"{registry.canonical(r['dist'])}:{r['name']}"
    return rows


def list_command(
    pattern: str | None = typer.Argument(None, help="fnmatch filter, e.g. 'cae-*'."),
    components: bool = typer.Option(False, "--components", "-c",
                                    help="List encoders, decoders and losses instead."),
    params: bool = typer.Option(False, "--params",
                                help="Build each variant to count its parameters (imports torch)."),
    pretrained: bool = typer.Option(False, "--pretrained", "-p", help="List weight sets "
                                    "VARIANT.TAG (trained weights) instead."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List installed variants: their components, parameter count and providing plugin.

    The parameter count is the one the plugin declares at the variant's default input
    shape; `--params` builds each model to count it. `--pretrained` lists the weight sets
    (dataset, metrics, size) that `aezoo.load("VARIANT.TAG")` and `--init` take.
    """
    if pretrained:
        from aezoo.cli.zoo import list_pretrained

        list_pretrained(pattern, as_json)
        return
    if components:
        _list_components(pattern, as_json)
        return
    rows = _variant_rows(pattern, params)
    if as_json:
        console.print_json(data=rows)
    else:
        # Names are what users type: never cut or fold them (aezoo.cli.tables).
        variants = table([("name", ID), ("encoder", ID), ("decoder", ID), ("loss", ID),
                          ("params", NUMBER), ("input", ID), ("plugin", ID)],
                         title="aezoo variants", title_justify="left", box=box.SIMPLE_HEAD,
                         show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
        for r in rows:
            count = f"{r['params']:,}" if r["params"] is not None else "?"
            cells = (r["name"], r["encoder"], r["decoder"], r["loss"], count,
                     format_shape(r["input_shape"]), f"{r['dist']} {r['version']}")
            variants.add_row(*(escape(c) for c in cells))
        show(variants, console)
        if not rows:
            console.print(f"no variant matches '{pattern}'" if pattern else "no variants installed")
    warn_unavailable()


def _used_by(pattern: str) -> dict[str, set[str]]:
    """kind -> the component names (bare and qualified) that variants matching
    ``pattern`` use."""
    used: dict[str, set[str]] = {kind: set() for kind in PART_KINDS}
    for entry in registry.entries("variant"):
        if not registry.fnmatch.fnmatchcase(entry.name, pattern):
            continue
        v = _quietly(registry.load, "variant", entry.qualified)
        if v is not None:
            for kind in COMPONENT_KINDS:
                used[kind].add(getattr(v, kind))
            used["regularizer"].update(str(r.get("name")) for r in v.regularizers)
            for key, kind in (("corrupt", "transform"), ("optimizer", "optimizer"),
                              ("scheduler", "schedule")):
                value = v.train.get(key)
                name = value.get("name") if isinstance(value, dict) else value
                if isinstance(name, str):
                    used[kind].add(name)
    return used


def _list_components(pattern: str | None, as_json: bool) -> None:
    """Components whose name matches ``pattern``, and those the variants matching it use
    (so `aezoo list 'cae-*' --components` shows the parts of the cae-* variants)."""
    rows = []
    used = _used_by(pattern) if pattern else {}
    for kind in PART_KINDS:
        for entry in registry.entries(kind):
            if pattern and not (registry.fnmatch.fnmatchcase(entry.name, pattern)
                                or {entry.name, entry.qualified} & used[kind]):
                continue
            desc = _quietly(registry.load, kind, entry.qualified)
            if desc is not None:
                ambiguous = entry.name in registry.conflicts(kind)
                rows.append({"kind": kind,
                             "name": entry.qualified if ambiguous else entry.name,
                             "dist": entry.dist,
                             "version": entry.version, "description": desc.description})
    if as_json:
        console.print_json(data=rows)
    else:
        components = table([("kind", ID), ("name", ID), ("plugin", ID), ("description", TEXT)],
                           title="aezoo components", title_justify="left")
        for r in rows:
            components.add_row(*(escape(c) for c in (r["kind"], r["name"],
                                                      f"{r['dist']} {r['version']}",
                                                      r["description"])))
        show(components, console)
        if not rows:
            console.print(f"no component matches '{pattern}'" if pattern
                          else "no components installed")
    warn_unavailable()


def info_command(
    name: str = typer.Argument(..., help="A variant (see `aezoo list`), a component name or "
                               "a weight set VARIANT.TAG.",
                               autocompletion=complete.components),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a variant: its components with every hyperparameter, shapes and parameter count;
    or a weight set's card: dataset, metrics, file, SHA-256, licence, recipe."""
    if "." in name and registry.names("weights", name.rpartition(":")[2]):
        from aezoo.cli.zoo import weight_info

        weight_info(name, as_json)
        return
    try:
        entry = registry.find("variant", name)
    except UnknownNameError:
        for kind in (*PART_KINDS, "callback", "dataset"):
            try:
                entry = registry.find(kind, name)
            except UnknownNameError:
                continue
            _component_info(kind, entry, as_json)
            return
        raise
    import aezoo

    model = aezoo.build(name)
    spec = model.spec
    v = registry.variant(name)
    data = {
        "name": entry.name, "plugin": f"{entry.dist} {entry.version}",
        "description": v.description,
        "input_shape": list(spec.input_shape), "latent_shape": list(model.latent_shape),
        "output_shape": list(spec.input_shape), "params": model.num_parameters(),
        "init": spec.init, "model": spec.model_dump(mode="json"), "train": dict(v.train),
    }
    if as_json:
        console.print_json(data=data)
        return
    console.print(f"[bold]{entry.name}[/] ({data['plugin']}): {v.description}")
    console.print(f"input {format_shape(spec.input_shape)} -> latent "
                  f"{format_shape(model.latent_shape)} -> output "
                  f"{format_shape(spec.input_shape)}; {model.num_parameters():,} parameters; "
                  f"init {spec.init}", highlight=False)
    for kind in ("encoder", "decoder", "loss"):
        comp = getattr(spec, kind)
        desc = registry.load(kind, comp.name)
        print_params(console, f"{kind}: {comp.name} — {desc.description}", desc.params,
                     comp.params)
    for i, reg in enumerate(spec.regularizers):
        desc = registry.load("regularizer", reg.name)
        print_params(console, f"regularizer {i}: {reg.name}, weight {reg.weight:g} — "
                     f"{desc.description}", desc.params, reg.params)
    corrupt = v.train.get("corrupt")
    if isinstance(corrupt, dict) and isinstance(corrupt.get("name"), str):
        from aezoo.config import part_params

        desc = registry.load("transform", corrupt["name"])
        values = part_params("transform", corrupt["name"], corrupt.get("params") or {},
                             "train.corrupt.params").model_dump(mode="json")
        print_params(console, f"transform (train.corrupt): {corrupt['name']} — "
                     f"{desc.description}", desc.params, values)
    console.print("training defaults (`aezoo config NAME` shows every key):", highlight=False,
                  markup=False)
    defaults = table([("train key", ID), ("default", TEXT)])  # a JSON value may wrap
    for key, value in v.train.items():
        defaults.add_row(escape(f"train.{key}"),
                         escape(value if isinstance(value, str) else json.dumps(value)))
    show(defaults, console)


def _component_info(kind: str, entry: registry.Entry, as_json: bool) -> None:
    from pydantic import BaseModel

    desc = registry.load(kind, entry.qualified)
    # A metric, a dataset without params or a callback's plain factory has none.
    params = getattr(desc, "params", None) or BaseModel
    description = getattr(desc, "description", None)
    if description is None:  # a callback's plain factory: its docstring's first line
        description = (getattr(desc, "__doc__", None) or "").strip().partition("\n")[0]
        description = description.replace("``", "")  # reST literals read plain here
    if as_json:
        console.print_json(data={"kind": kind, "name": entry.name,
                                 "plugin": f"{entry.dist} {entry.version}",
                                 "description": description,
                                 "params": params.model_json_schema()
                                 if params is not BaseModel else {}})
        return
    defaults = {k: f.get_default() for k, f in params.model_fields.items()
                if not f.is_required()}
    print_params(console, f"{kind}: {entry.name} ({entry.dist} {entry.version}) — "
                 f"{description}", params, defaults)
    where = {"dataset": "data.params", "callback": f"train.callback_params.{entry.name}"}
    if kind in where and params.model_fields:
        console.print(f"set them with --set {where[kind]}.PARAM=VALUE", highlight=False,
                      markup=False)


def register(app: typer.Typer) -> None:
    app.command("list")(list_command)
    app.command("info")(info_command)
