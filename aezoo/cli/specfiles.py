"""Specs as files: ``aezoo config NAME`` writes a complete run spec, ``aezoo schema``
prints its JSON Schema (with the components' params) for editor completion."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import typer

from aezoo.cli._common import warn
from aezoo.errors import PluginError, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from aezoo.specs import RunSpec

FORMATS = ("toml", "yaml", "json")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --- a small TOML writer (tomllib reads, nothing in the stdlib writes) ---------------


def to_toml(data: Mapping[str, Any]) -> str:
    """``data`` as a TOML document. None values are left out (TOML has no null); a None
    inside an array is a ValueError."""
    lines: list[str] = []
    _toml_table(lines, data, ())
    return "\n".join(lines).strip("\n") + "\n"


def _toml_table(lines: list[str], table: Mapping[str, Any], path: tuple[str, ...]) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping) and v is not None]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        lines += ["", f"[{'.'.join(_toml_key(p) for p in path)}]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars]
    for key, sub in tables:
        _toml_table(lines, sub, (*path, str(key)))


def _toml_key(key: Any) -> str:
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)  # $ would allow "k\n"


def _toml_string(text: str) -> str:
    # JSON's escapes are a subset of TOML basic strings'; TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()
                          if v is not None)
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, (list, tuple)):
        if any(v is None for v in value):
            raise ValueError("TOML arrays cannot hold null values")
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        raise ValueError("TOML has no null value")
    raise ValueError(f"cannot write a {type(value).__name__} to TOML")


def render(data: Mapping[str, Any], fmt: str, comment: str = "") -> str:
    """``data`` as TOML, YAML or JSON text (JSON has no comments)."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    if fmt == "toml":
        return header + to_toml(data)
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def short_lists(dumper: yaml.SafeDumper, value: list[Any]) -> Any:
        # [16, 8, 8] on one line; nested structures in block style.
        flow = all(not isinstance(v, (list, dict)) for v in value)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)

    Dumper.add_representer(list, short_lists)
    return header + yaml.dump(dict(data), Dumper=Dumper, sort_keys=False,
                              default_flow_style=False, allow_unicode=True, width=100)


def parse(text: str, fmt: str) -> dict[str, Any]:
    """The inverse of ``render``."""
    if fmt == "json":
        data = json.loads(text)
    elif fmt == "toml":
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10
            import tomli as tomllib
        data = tomllib.loads(text)
    else:
        import yaml

        data = yaml.safe_load(text)
    return dict(data)


# --- aezoo config -------------------------------------------------------------------


def resolved_spec(name: str | None, config: Path | None, sets: list[str]) -> RunSpec:
    from aezoo.config import build_run_spec, parse_assignment, read_config

    layers: list[dict[str, Any]] = []
    if config is not None:
        layers.append(read_config(config))
    layers.extend(parse_assignment(item) for item in sets)
    return build_run_spec(name, layers)


def spec_text(spec: RunSpec, fmt: str) -> str:
    """The file that makes ``aezoo train --config FILE`` resolve to exactly ``spec``."""
    from aezoo.config import build_run_spec

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


CONFIG_HELP = """Print a variant's complete, resolved run spec: every model, train and data value.

Edit the file and train from it; the run is the same as training NAME with the same
overrides:

    aezoo config cae-upsample > run.toml

    aezoo train --config run.toml

`--set KEY=VALUE` and `--config FILE` work as in `aezoo train`. `aezoo schema NAME`
prints the JSON Schema for editor completion of this file.
"""


def config_command(
    name: str | None = typer.Argument(None, help="Variant (see `aezoo list`)."),
    fmt: str = typer.Option("toml", "--format", "-f", help="toml, yaml or json."),
    config: Path | None = typer.Option(None, help="Start from this spec file."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Override any spec value, e.g. train.lr=0.01."),
) -> None:
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    spec = resolved_spec(name, config, set_)
    sys.stdout.write(spec_text(spec, fmt))


# --- aezoo schema -------------------------------------------------------------------


def _camel(text: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", text) if p)


def _choices(kind: str) -> list[tuple[str, str, Any]]:
    """(name, qualified name, descriptor) of each usable ``kind``; ambiguous names qualified."""
    from aezoo import registry

    out = []
    ambiguous = registry.conflicts(kind)
    for entry in registry.entries(kind):
        try:
            desc = registry.load_entry(entry)
        except PluginError as exc:
            if registry.strict():
                raise
            warn(f"{exc.problem}; left out of the schema")
            continue
        out.append((entry.qualified if entry.name in ambiguous else entry.name,
                    entry.qualified, desc))
    return out


def _component_model(kind: str, name: str, desc: Any, default: Any = None,
                     qualified: str | None = None) -> type[BaseModel]:
    from pydantic import Field, create_model

    from aezoo.specs import ComponentSpec

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
        __base__=ComponentSpec,
        __doc__=f"{kind} '{name}': {desc.description}".strip(": "),
        name=(name_type, Field(name) if default is not None else Field(...)),
        params=(desc.params, params_field),
    )
    return model


def typed_run_spec(name: str | None = None) -> type[RunSpec]:
    """RunSpec with each component's params typed: every installed component (a union on
    ``name``) or, for variant ``name``, its components with its values as defaults."""
    from typing import Annotated, Union

    from pydantic import Field, create_model

    from aezoo import registry
    from aezoo.specs import DataSpec, ModelSpec, RunSpec, TrainSpec

    resolved = resolved_spec(name, None, []) if name else None
    fields: dict[str, Any] = {}
    for kind in registry.COMPONENT_KINDS:
        if resolved is not None:
            comp = getattr(resolved.model, kind)
            desc = registry.load(kind, comp.name)
            model = _component_model(kind, comp.name, desc, comp.params)
            fields[kind] = (model, Field(default=model.model_validate(comp.model_dump())))
            continue
        models = [_component_model(kind, n, d, qualified=q) for n, q, d in _choices(kind)]
        if not models:
            continue
        union: Any = models[0] if len(models) == 1 else Annotated[
            Union[tuple(models)], Field(discriminator="name")]  # noqa: UP007
        fields[kind] = (union, Field(...))
    title = f"aezoo run spec for {name}" if name else "aezoo run spec"
    model_spec: Any = create_model("ModelSpec", __base__=ModelSpec, __doc__=ModelSpec.__doc__,
                                   **fields)
    if resolved is not None:
        run_fields: dict[str, Any] = {
            "model": (model_spec, Field(default=model_spec.model_validate(
                resolved.model.model_dump(mode="json")))),
            "train": (TrainSpec, Field(default=resolved.train)),
            "data": (DataSpec, Field(default=resolved.data)),
        }
    else:
        run_fields = {"model": (model_spec, Field(...))}
    run_spec: type[RunSpec] = create_model(  # type: ignore[call-overload]
        "RunSpec", __base__=RunSpec, __doc__=title, **run_fields)
    return run_spec


def schema(name: str | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a run spec file."""
    model = typed_run_spec(name)
    out: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    out.update(model.model_json_schema())
    out["title"] = f"aezoo run spec for {name}" if name else "aezoo run spec"
    return out


SCHEMA_HELP = """Print the JSON Schema of run spec files, for editor completion and validation.

Without NAME, `model.encoder`, `model.decoder` and `model.loss` accept any installed
component, each with its own params. With NAME, the schema describes that variant's
components and uses its values as defaults.

    aezoo schema cae-upsample > aezoo-schema.json

Then point your editor at it: `#:schema ./aezoo-schema.json` as the first line of a
TOML file (Taplo / Even Better TOML), `# yaml-language-server: $schema=./aezoo-schema.json`
in YAML, or `"$schema"` in JSON settings.
"""


def schema_command(
    name: str | None = typer.Argument(None, help="Variant whose components to describe."),
) -> None:
    sys.stdout.write(json.dumps(schema(name), indent=2) + "\n")


def register(app: typer.Typer) -> None:
    app.command("config", help=CONFIG_HELP)(config_command)
    app.command("schema", help=SCHEMA_HELP)(schema_command)
