"""A plugin project from aezoo's template (``aezoo new-plugin``): the names a distribution
name gives (``names_for``, refusing ones that collide with an existing module) and the
files (``generate``)."""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

from aezoo._version import __version__
from aezoo.errors import OutputExistsError, UsageError

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = ["Project", "check_collisions", "first_party_packages", "generate", "names_for"]

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
# Template paths -> project paths: dot-files and the package directory.
_RENAMES = {"gitignore": ".gitignore", "github": ".github"}



def names_for(dist: str) -> dict[str, str]:
    """The template's placeholders for distribution ``dist``; a name whose package would
    shadow (or be shadowed by) another one is refused (``check_collisions``)."""
    if not _NAME.match(dist):
        raise UsageError(f"'{dist}' is not a valid distribution name",
                         "use letters, digits, '-', '_' and '.', e.g. aezoo-resnet")
    canonical = re.sub(r"[-_.]+", "-", dist).lower()
    package = canonical.replace("-", "_")
    variant = canonical.removeprefix("aezoo-") or canonical
    if not package.isidentifier() or keyword.iskeyword(package) or package == "aezoo":
        raise UsageError(f"'{dist}' does not give a usable Python package name ({package})",
                         "start the name with a letter, e.g. aezoo-resnet")
    check_collisions(dist, canonical, package)
    return {"dist": dist, "dist_canonical": canonical, "package": package,
            "variant": variant, "variant_attr": variant.replace("-", "_"),
            "aezoo_version": __version__}


def first_party_packages() -> set[str]:
    """The top-level packages the installed aezoo distribution ships (aezoo and its
    first-party plugins, e.g. aezoo_cae), from its entry points."""
    try:
        eps = metadata.distribution("aezoo").entry_points
    except metadata.PackageNotFoundError:  # pragma: no cover - aezoo not installed
        return {"aezoo"}
    return {"aezoo", *(ep.value.split(":")[0].split(".")[0].strip() for ep in eps)}


def check_collisions(dist: str, canonical: str, package: str) -> None:
    """Refuse a name whose package is a standard-library module, one aezoo ships, an
    installed distribution's, or any module Python can already import."""
    fix = "choose another NAME, e.g. aezoo-resnet"
    if package in sys.stdlib_module_names:
        raise UsageError(f"'{dist}' would make package {package}, which is a Python "
                         "standard-library module", fix)
    if package in first_party_packages():
        raise UsageError(f"'{dist}' would make package {package}, which aezoo itself ships",
                         fix)
    for name in dict.fromkeys([dist, canonical, package]):
        try:
            found = metadata.distribution(name)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        raise UsageError(f"'{dist}' is already an installed distribution "
                         f"({found.metadata['Name']} {found.version})", fix)
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        where = spec.origin or ", ".join(spec.submodule_search_locations or []) or "?"
        raise UsageError(f"'{dist}' would make package {package}, which is already "
                         f"importable ({where})", fix)


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


@dataclass(frozen=True)
class Project:
    """A generated plugin project: its directory and the template's values."""

    path: Path
    values: dict[str, str]


def generate(dist: str, parent: Path) -> Project:
    """Write the project for ``dist`` into ``parent/dist``."""
    values = names_for(dist)
    target = parent / dist
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputExistsError(f"{target} already exists and is not empty",
                                "choose another NAME or --dir")
    rendered = []
    for parts, item in _files(resources.files("aezoo") / "templates" / "plugin"):
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
    return Project(target, values)
