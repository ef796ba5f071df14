"""``aezoo list`` and ``aezoo info``: what is installed, read from entry-point metadata."""

from __future__ import annotations

import json
from typing import Any, get_origin

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from aezoo import registry
from aezoo.cli._common import console, warn_unavailable
from aezoo.errors import PluginError, UnknownNameError
from aezoo.protocols import format_shape


def _load_quietly(kind: str, entry: registry.Entry) -> Any | None:
    """The descriptor, or None (the failure is recorded and warned about once)."""
    try:
        return registry.load(kind, entry.qualified)
    except PluginError:
        if registry.strict():
            raise
        return None


def _variant_rows(pattern: str | None, count_params: bool) -> list[dict[str, Any]]:
    rows = []
    for entry in registry.entries("variant"):
        if pattern and not registry.fnmatch.fnmatchcase(entry.name, pattern):
            continue
        v = _load_quietly("variant", entry)
        if v is None:
            continue
        params = v.param_count
        if count_params:
            import aezoo

            try:
                params = aezoo.build(entry.qualified).num_parameters()
            except PluginError:  # a broken component: recorded, warned about below
                if registry.strict():
                    raise
                params = None
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
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List installed variants: their components, parameter count and providing plugin.

    The parameter count is the one the plugin declares at the variant's default input
    shape; `--params` builds each model to count it.
    """
    if components:
        _list_components(pattern, as_json)
        return
    rows = _variant_rows(pattern, params)
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        table = Table(title="aezoo variants", title_justify="left", box=box.SIMPLE_HEAD,
                      show_edge=False, pad_edge=False)
        for col in ("name", "encoder", "decoder", "loss", "params", "input", "plugin"):
            # Names are what users type: never cut or fold them.
            table.add_column(col, justify="right" if col == "params" else "left",
                             no_wrap=True)
        for r in rows:
            count = f"{r['params']:,}" if r["params"] is not None else "?"
            cells = (r["name"], r["encoder"], r["decoder"], r["loss"], count,
                     format_shape(r["input_shape"]), f"{r['dist']} {r['version']}")
            table.add_row(*(escape(c) for c in cells))
        console.print(table)
        if not rows:
            console.print(f"no variant matches '{pattern}'" if pattern else "no variants installed")
    warn_unavailable()


def _list_components(pattern: str | None, as_json: bool) -> None:
    rows = []
    for kind in ("encoder", "decoder", "loss"):
        for entry in registry.entries(kind):
            if pattern and not registry.fnmatch.fnmatchcase(entry.name, pattern):
                continue
            desc = _load_quietly(kind, entry)
            if desc is not None:
                ambiguous = entry.name in registry.conflicts(kind)
                rows.append({"kind": kind,
                             "name": entry.qualified if ambiguous else entry.name,
                             "dist": entry.dist,
                             "version": entry.version, "description": desc.description})
    if as_json:
        console.print_json(json.dumps(rows))
    else:
        table = Table(title="aezoo components", title_justify="left")
        for col in ("kind", "name", "plugin", "description"):
            table.add_column(col, no_wrap=col in ("kind", "name"))
        for r in rows:
            table.add_row(*(escape(c) for c in (r["kind"], r["name"], f"{r['dist']} {r['version']}",
                                                 r["description"])))
        console.print(table)
    warn_unavailable()


def _type_name(annotation: Any) -> str:
    """``list[int]``, ``int``, ``Literal['a', 'b']``: as a user would write it."""
    plain = isinstance(annotation, type) and get_origin(annotation) is None
    text = annotation.__name__ if plain else str(annotation)
    return text.replace("typing.", "")


def _params_table(title: str, model: Any, values: dict[str, Any]) -> Table | str:
    if not model.model_fields:
        return f"{title} (no hyperparameters)"
    table = Table(title=title, title_justify="left")
    for col in ("param", "value", "default", "type", "description"):
        table.add_column(col)
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default())
        cells = (name, repr(values.get(name)), default, _type_name(field.annotation),
                 field.description or "")
        table.add_row(*(escape(c) for c in cells))  # list[int] is not rich markup
    return table


def info_command(
    name: str = typer.Argument(..., help="A variant (see `aezoo list`) or a component name."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show a variant: its components with every hyperparameter, shapes and parameter count."""
    try:
        registry.find("variant", name)
    except UnknownNameError:
        for kind in ("encoder", "decoder", "loss"):
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
    entry = registry.find("variant", name)
    v = registry.variant(name)
    data = {
        "name": entry.name, "plugin": f"{entry.dist} {entry.version}",
        "description": v.description,
        "input_shape": list(spec.input_shape), "latent_shape": list(model.latent_shape),
        "output_shape": list(spec.input_shape), "params": model.num_parameters(),
        "init": spec.init, "model": spec.model_dump(mode="json"), "train": dict(v.train),
    }
    if as_json:
        console.print_json(json.dumps(data))
        return
    console.print(f"[bold]{entry.name}[/] ({data['plugin']}): {v.description}")
    console.print(f"input {format_shape(spec.input_shape)} -> latent "
                  f"{format_shape(model.latent_shape)} -> output "
                  f"{format_shape(spec.input_shape)}; {model.num_parameters():,} parameters; "
                  f"init {spec.init}", highlight=False)
    for kind in ("encoder", "decoder", "loss"):
        comp = getattr(spec, kind)
        desc = registry.load(kind, comp.name)
        console.print(_params_table(f"{kind}: {comp.name} — {desc.description}",
                                    desc.params, comp.params))
    console.print(f"training defaults: {json.dumps(dict(v.train))}", highlight=False)


def _component_info(kind: str, entry: registry.Entry, as_json: bool) -> None:
    desc = registry.load(kind, entry.qualified)
    if as_json:
        console.print_json(json.dumps({"kind": kind, "name": entry.name,
                                       "plugin": f"{entry.dist} {entry.version}",
                                       "description": desc.description,
                                       "params": desc.params.model_json_schema()}))
        return
    defaults = {k: f.get_default() for k, f in desc.params.model_fields.items()
                if not f.is_required()}
    console.print(_params_table(f"{kind}: {entry.name} ({entry.dist} {entry.version}) — "
                                f"{desc.description}", desc.params, defaults))


def register(app: typer.Typer) -> None:
    app.command("list")(list_command)
    app.command("info")(info_command)
