"""``aezoo new-plugin NAME``: a ready-to-publish plugin project from aezoo's template."""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from aezoo.cli._common import console
from aezoo.errors import OutputExistsError, UsageError

if TYPE_CHECKING:
    from importlib.abc import Traversable

TEMPLATE = ("templates", "plugin")
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# Template paths -> project paths: dot-files and the package directory.
_RENAMES = {"gitignore": ".gitignore", "github": ".github"}

HELP = """Create a plugin project: a pip-installable distribution that adds a variant to aezoo.

NAME is the distribution name (e.g. `aezoo-resnet`); the variant is named after it
without the `aezoo-` prefix (`resnet`), with components `resnet-encoder`,
`resnet-decoder` and `resnet-loss`. The project holds `pyproject.toml` with the
entry points, `src/PACKAGE/` (torch-free `variants.py` and `components.py`, torch modules
in `layers.py`), tests that run aezoo's conformance kit, a CI workflow and a README.

Then:

    cd NAME && pip install -e ".[test]" && pytest -q && aezoo list
"""


def names_for(dist: str) -> dict[str, str]:
    """The template's placeholders for distribution ``dist``."""
    if not _NAME.match(dist):
        raise UsageError(f"'{dist}' is not a valid distribution name",
                         "use letters, digits, '-', '_' and '.', e.g. aezoo-resnet")
    canonical = re.sub(r"[-_.]+", "-", dist).lower()
    package = canonical.replace("-", "_")
    variant = canonical.removeprefix("aezoo-") or canonical
    if not package.isidentifier() or keyword.iskeyword(package) or package == "aezoo":
        raise UsageError(f"'{dist}' does not give a usable Python package name ({package})",
                         "start the name with a letter, e.g. aezoo-resnet")
    from aezoo._version import __version__

    return {"dist": dist, "dist_canonical": canonical, "package": package,
            "variant": variant, "variant_attr": variant.replace("-", "_"),
            "aezoo_version": __version__}


def _render(text: str, values: dict[str, str], source: str) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise RuntimeError(f"template {source} uses unknown placeholder {key}")
        return values[key]

    return _PLACEHOLDER.sub(sub, text)


def _files(root: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                         Traversable]]:
    out = []
    for item in sorted(root.iterdir(), key=lambda t: t.name):
        if item.is_dir():
            out += _files(item, (*prefix, item.name))
        elif item.name.endswith(".tmpl"):
            out.append(((*prefix, item.name), item))
    return out


def generate(dist: str, parent: Path) -> Path:
    """Write the project for ``dist`` into ``parent/dist``; returns that directory."""
    values = names_for(dist)
    target = parent / dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputExistsError(f"{target} already exists and is not empty",
                                "choose another NAME or --dir")
    template = resources.files("aezoo")
    for part in TEMPLATE:
        template = template / part
    rendered = []
    for parts, item in _files(template):
        name = parts[-1].removesuffix(".tmpl")
        path_parts = [_RENAMES.get(p, p) for p in parts[:-1]] + [_RENAMES.get(name, name)]
        path_parts = [values["package"] if p == "__package__" else p for p in path_parts]
        source = "/".join(parts)
        rendered.append((target.joinpath(*path_parts),
                         _render(item.read_text(encoding="utf-8"), values, source)))
    if not rendered:
        raise RuntimeError("aezoo's plugin template is missing from the installation")
    try:
        for path, text in rendered:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target} ({exc.strerror or exc})",
                         "choose a writable --dir") from None
    return target


def new_plugin_command(
    name: str = typer.Argument(..., help="Distribution name, e.g. aezoo-resnet."),
    directory: Path = typer.Option(Path("."), "--dir", help="Where to create NAME/."),
) -> None:
    target = generate(name, directory)
    values = names_for(name)
    console.print(f"created {target} (variant [bold]{values['variant']}[/], package "
                  f"{values['package']})", highlight=False)
    console.print(f"next: cd {target} && pip install -e \".[test]\" && pytest -q && aezoo list",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("new-plugin", help=HELP)(new_plugin_command)
