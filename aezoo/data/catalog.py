"""The dataset registry: the ``aezoo.datasets`` entry-point group, and the cache.

Built-in sources are registered through the same group as a plugin's. Listing reads
entry-point metadata and the (light) descriptors only: no numpy, torch or PIL.
Names: ``NAME``, ``NAME:PATH`` for sources that take a path (``folder:``, ``npz:``,
``npy:``), and ``DIST:NAME`` to pick one of two distributions claiming a name.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aezoo import registry
from aezoo.data.source import DatasetSource
from aezoo.errors import PluginError, SpecError, UnknownNameError, UsageError
from aezoo.registry import Entry

KIND = "dataset"  # the entry-point group aezoo.datasets


def data_root() -> Path:
    """``$AEZOO_DATA``, else ``$XDG_CACHE_HOME/aezoo``, else ``~/.cache/aezoo``."""
    if explicit := os.environ.get("AEZOO_DATA"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative paths
        return Path(xdg) / "aezoo"
    return Path.home() / ".cache" / "aezoo"


def source_dir(source: DatasetSource) -> Path:
    """``data_root()/NAME``: each downloadable source keeps its files in its own folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", source.name).lstrip(".") or "_"
    return data_root() / safe


@dataclass(frozen=True)
class Resolved:
    """A dataset name resolved to its source and, for ``NAME:PATH``, the path."""

    entry: Entry
    source: DatasetSource
    argument: str | None


def _split(name: str) -> tuple[str, str | None]:
    """``NAME[:PATH]`` or ``DIST:NAME[:PATH]`` -> (what the registry looks up, PATH)."""
    head, sep, rest = name.partition(":")
    if not sep:
        return name, None
    if any(e.name == head for e in registry.entries(KIND)):
        return head, rest
    bare, sep2, argument = rest.partition(":")
    return f"{head}:{bare}", argument if sep2 else None


def resolve(name: str) -> Resolved:
    """``name`` -> its source. Unknown names get a did-you-mean and a pointer to the list."""
    name = name.strip()
    lookup, argument = _split(name)
    try:  # DIST:NAME, conflicts and AEZOO_PLUGINS work as for every other plugin part
        entry = registry.find(KIND, lookup)
    except UnknownNameError as exc:
        if not exc.problem.startswith("unknown "):
            raise
        raise UnknownNameError(f"unknown dataset '{name}'", _suggest(name)) from None
    source = registry.load_entry(entry)
    if source.takes_path and not argument:
        raise UsageError(f"dataset '{entry.name}' needs a path", f"write {entry.name}:PATH")
    if not source.takes_path and argument is not None:
        raise UsageError(f"dataset '{entry.name}' takes no path (got '{name}')",
                         f"write just {entry.name}")
    return Resolved(entry, source, argument)


def source_params(found: Resolved, params: Mapping[str, Any], where: str = "data.params"
                  ) -> Any:
    """``params`` validated by the source's params model (its instance, defaults filled
    in); None for a source that declares none, which must then be given none."""
    from aezoo.specs import validate

    model = found.source.params
    if model is None:
        if params:
            raise SpecError(f"invalid {where}: dataset '{found.entry.name}' takes no params",
                            f"drop {where}", key=where)
        return None
    return validate(model, dict(params), where)


def _suggest(name: str) -> str:
    candidate = Path(name).expanduser()

    def there(test: Callable[[], bool]) -> bool:  # a name too long for a path is not one
        try:
            return test()
        except (OSError, ValueError):
            return False

    for prefix, fits in (("packed", there((candidate / "manifest.json").is_file)),
                         ("folder", there(candidate.is_dir)), ("npz", name.endswith(".npz")),
                         ("npy", name.endswith(".npy"))):
        if fits:
            return f"did you mean '{prefix}:{name}'?"
    head, sep, rest = name.partition(":")
    close = difflib.get_close_matches(head, registry.names(KIND), n=1)
    hint = ""
    if close:
        takes_path = any(e.name == close[0] and _takes_path(e) for e in registry.entries(KIND))
        hint = f"did you mean '{close[0]}:{rest}'? " if sep and takes_path else \
            f"did you mean '{close[0]}'? "
    return (f"{hint}see `aezoo data list`; for your own images use folder:PATH, "
            "npz:PATH or npy:PATH")


def _takes_path(entry: Entry) -> bool:
    try:
        return registry.load_entry(entry).takes_path
    except PluginError:
        return False


@dataclass(frozen=True)
class CacheStatus:
    """What of a downloadable source is on disk (sizes checked; digests on use)."""

    present: int  # declared files present with their declared size
    total: int
    bytes: int  # everything in the directory

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.present == self.total


def cache_status(source: DatasetSource) -> CacheStatus:
    directory = source_dir(source)
    present = 0
    for file in source.files:
        try:
            size = (directory / file.name).stat().st_size
        except OSError:
            continue
        present += file.size is None or size == file.size
    used = 0
    for path in directory.rglob("*"):  # nothing when the directory is not there
        try:
            used += path.stat().st_size if path.is_file() else 0
        except OSError:
            pass
    return CacheStatus(present, len(source.files), used)
