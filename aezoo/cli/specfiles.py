"""``aezoo config NAME`` writes a complete run spec, ``aezoo schema`` prints its JSON
Schema (with the components' params) for editor completion; the work is in
``aezoo.schema`` and ``aezoo.specfile``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from aezoo.cli import complete
from aezoo.cli.common import plugin_problem, warn
from aezoo.errors import UsageError
from aezoo.specfile import FORMATS


def config_command(
    name: str | None = typer.Argument(None, help="Variant (see `aezoo list`).",
                                      autocompletion=complete.variants),
    fmt: str = typer.Option("toml", "--format", "-f", help="toml, yaml or json."),
    config: Path | None = typer.Option(None, help="Start from this spec file."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Override any spec value, e.g. train.lr=0.01."),
) -> None:
    """Print a variant's complete, resolved run spec: every model, train and data value.

    TOML has no null: an unset value is written as a comment (`# patience = null  (unset)`).

    Edit the file and train from it; the run is the same as training NAME with the same
    overrides:

        aezoo config cae-upsample > run.toml

        aezoo train --config run.toml

    `--set KEY=VALUE` and `--config FILE` work as in `aezoo train`. `aezoo schema NAME`
    prints the JSON Schema for editor completion of this file.
    """
    from aezoo.schema import resolved_spec, spec_text

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    spec = resolved_spec(name, config, set_)
    sys.stdout.write(spec_text(spec, fmt))


def schema_command(
    name: str | None = typer.Argument(None, help="Variant whose components to describe."),
) -> None:
    """Print the JSON Schema of run spec files, for editor completion and validation.

    Without NAME, `model.encoder`, `model.decoder`, `model.loss`, `model.regularizers`,
    `train.corrupt`, `train.callback_params` and `data.params` accept any installed part,
    each with its own params. With NAME, the schema describes that variant's
    components and uses its values as defaults.

        aezoo schema cae-upsample > aezoo-schema.json

    Then point your editor at it: `#:schema ./aezoo-schema.json` as the first line of a
    TOML file (Taplo / Even Better TOML), `# yaml-language-server: $schema=./aezoo-schema.json`
    in YAML, or a top-level `"$schema": "./aezoo-schema.json"` key in a JSON (or YAML) spec
    file, which aezoo ignores when it reads the file.
    """
    from aezoo.registry import Failure
    from aezoo.schema import schema

    left_out: list[Failure] = []
    document = schema(name, left_out)
    for failure in left_out:
        warn(f"{plugin_problem(failure)}; left out of the schema")
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    app.command("config")(config_command)
    app.command("schema")(schema_command)
