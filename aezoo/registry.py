"""Entry-point discovery of encoders, decoders, losses and variants.

Listing reads entry-point metadata only; a component's module is imported when it is
first used. A plugin that fails to import is recorded as a failure and never breaks
the others. Two distributions claiming one name are both kept: ``DIST:NAME`` picks
one, a bare ambiguous name is an error that lists the choices.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any

from aezoo.errors import PluginError, UnknownNameError, UsageError
from aezoo.protocols import (
    DecoderComponent,
    EncoderComponent,
    LossComponent,
    Variant,
)

GROUPS = {
    "encoder": "aezoo.encoders",
    "decoder": "aezoo.decoders",
    "loss": "aezoo.losses",
    "variant": "aezoo.variants",
}
KINDS = tuple(GROUPS)
_EXPECTED: dict[str, type] = {
    "encoder": EncoderComponent,
    "decoder": DecoderComponent,
    "loss": LossComponent,
    "variant": Variant,
}
FIRST_PARTY = "aezoo"


def canonical(dist: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", dist).lower()


@dataclass(frozen=True)
class Entry:
    """One entry point: a name some distribution provides for a kind."""

    kind: str
    name: str
    value: str
    dist: str
    version: str

    @property
    def qualified(self) -> str:
        return f"{canonical(self.dist)}:{self.name}"


@dataclass(frozen=True)
class Failure:
    """A plugin entry that could not be loaded, with the reason."""

    entry: Entry
    message: str


def _allowed_dists() -> set[str] | None:
    raw = os.environ.get("AEZOO_PLUGINS")
    if raw is None:
        return None
    return {canonical(d) for d in raw.split(",") if d.strip()} | {FIRST_PARTY}


@cache
def entries(kind: str) -> tuple[Entry, ...]:
    """Every entry point of ``kind`` in installed distributions, sorted, deduplicated."""
    allowed = _allowed_dists()
    seen: dict[tuple[str, str, str], Entry] = {}
    for ep in metadata.entry_points(group=GROUPS[kind]):
        dist = ep.dist.metadata["Name"] if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "unknown"
        if allowed is not None and canonical(dist) not in allowed:
            continue
        entry = Entry(kind, ep.name, ep.value, dist, version)
        # The same distribution can be visible twice (editable + regular install).
        seen.setdefault((ep.name, ep.value, canonical(dist)), entry)
    return tuple(sorted(seen.values(), key=lambda e: (e.name, canonical(e.dist))))


def names(kind: str, pattern: str | None = None) -> list[str]:
    """Public names of ``kind``, optionally filtered by an fnmatch pattern."""
    found = sorted({e.name for e in entries(kind)})
    return [n for n in found if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def find(kind: str, name: str) -> Entry:
    """The entry ``name`` (or ``DIST:NAME``) resolves to, without importing it."""
    dist, _, bare = name.rpartition(":")
    matches = [e for e in entries(kind) if e.name == bare]
    if dist:
        matches = [e for e in matches if canonical(e.dist) == canonical(dist)]
    if not matches:
        raise UnknownNameError(f"unknown {kind} '{name}'", _suggest(kind, bare))
    if len(matches) > 1:
        choices = ", ".join(e.qualified for e in matches)
        raise UsageError(
            f"{kind} '{name}' is provided by {len(matches)} distributions",
            f"pick one with DIST:NAME ({choices})",
        )
    return matches[0]


def _suggest(kind: str, name: str) -> str:
    known = names(kind)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    listing = "aezoo list" if kind == "variant" else "aezoo list --components"
    return f"{hint}see `{listing}` for what is installed"


_failures: dict[Entry, Failure] = {}


@cache
def _load(entry: Entry) -> Any:
    try:
        obj = metadata.EntryPoint(entry.name, entry.value, GROUPS[entry.kind]).load()
    except Exception as exc:  # any import-time error of a plugin is the plugin's fault
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _failures[entry] = Failure(entry, message)
        raise PluginError(
            f"plugin {entry.dist} {entry.version} failed to load {entry.kind} "
            f"'{entry.name}' ({message})",
            f"reinstall or uninstall {entry.dist}; `aezoo plugins` lists plugin failures",
        ) from exc
    expected = _EXPECTED[entry.kind]
    if not isinstance(obj, expected):
        message = f"{entry.value} is a {type(obj).__name__}, not a {expected.__name__}"
        _failures[entry] = Failure(entry, message)
        raise PluginError(
            f"plugin {entry.dist} {entry.version} provides a broken {entry.kind} "
            f"'{entry.name}': {message}",
            f"report it to the authors of {entry.dist}",
        )
    return obj


def load(kind: str, name: str) -> Any:
    """The descriptor behind ``name``; imports the providing module on first use."""
    return _load(find(kind, name))


def encoder(name: str) -> EncoderComponent:
    obj: EncoderComponent = load("encoder", name)
    return obj


def decoder(name: str) -> DecoderComponent:
    obj: DecoderComponent = load("decoder", name)
    return obj


def loss(name: str) -> LossComponent:
    obj: LossComponent = load("loss", name)
    return obj


def variant(name: str) -> Variant:
    obj: Variant = load("variant", name)
    return obj


def failures() -> list[Failure]:
    """Plugin entries that failed to load so far in this process."""
    return list(_failures.values())


def strict() -> bool:
    """``AEZOO_STRICT_PLUGINS=1`` turns a broken plugin into a fatal error."""
    return os.environ.get("AEZOO_STRICT_PLUGINS", "") not in ("", "0")


def clear_cache() -> None:
    """Forget discovered and loaded entries (after installing a plugin in-process)."""
    entries.cache_clear()
    _load.cache_clear()
    _failures.clear()
