"""``aezoo new-plugin NAME``: a ready-to-publish plugin project from aezoo's template
(the work is in ``aezoo.scaffold``)."""

from __future__ import annotations

from pathlib import Path

import typer

from aezoo.cli.common import console


def new_plugin_command(
    name: str = typer.Argument(..., help="Distribution name, e.g. aezoo-resnet."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create NAME/."),
) -> None:
    """Create a plugin project: a pip-installable distribution that adds a variant to aezoo.

    NAME is the distribution name (e.g. `aezoo-resnet`); the variant is named after it
    without the `aezoo-` prefix (`resnet`), with components `resnet-encoder`,
    `resnet-decoder` and `resnet-loss`. The project holds `pyproject.toml` with the
    entry points, `src/PACKAGE/` (torch-free `variants.py` and `components.py`, torch modules
    in `layers.py`), tests that run aezoo's conformance kit, a CI workflow and a README.
    A NAME whose package would collide with a standard-library module, a package aezoo
    ships, an installed distribution or any importable module is refused.

    Then:

        cd NAME && pip install -e ".[test]" && pytest -q && aezoo list
    """
    from aezoo.scaffold import generate

    project = generate(name, directory)
    values = project.values
    console.print(f"created {project.path} (variant [bold]{values['variant']}[/], package "
                  f"{values['package']})", highlight=False)
    console.print(f"next: cd {project.path} && pip install -e \".[test]\" && pytest -q && "
                  "aezoo list", highlight=False, soft_wrap=True, markup=False)  # [test]: text


def register(app: typer.Typer) -> None:
    app.command("new-plugin")(new_plugin_command)
