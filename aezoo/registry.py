"""Entry-point discovery of encoders, decoders, losses, variants (and any ``aezoo.*`` group).

Listing reads entry-point metadata only; a component's module is imported when it is
first used. A plugin that fails to import, or provides something that is not a valid
descriptor, is recorded as a failure and never breaks the others. Two distributions
claiming one name are both kept: ``DIST:NAME`` picks one, a bare ambiguous name is an
error that lists the choices. Results never depend on import or ``sys.path`` order,
except that one distribution visible twice counts once (the copy Python would import).

Environment:
``AEZOO_PLUGINS=a,b``   load only these distributions (plus first-party ``aezoo``).
``AEZOO_STRICT_PLUGINS=1``   a broken plugin is a fatal error instead of a warning.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import metadata
from typing import Any

from aezoo import kinds
from aezoo._interrupts import UserInterrupts
from aezoo.errors import AezooError, PluginError, UnknownNameError, UsageError, summary
from aezoo.kinds import COMPONENT_KINDS, FIRST_PARTY, GROUP_PREFIX
from aezoo.protocols import (
    DecoderComponent,
    EncoderComponent,
    LossComponent,
    Variant,
)

__all__ = ["COMPONENT_KINDS", "FIRST_PARTY", "GROUPS", "GROUP_PREFIX", "Distribution", "Entry",
           "Failure", "canonical", "conflicts", "display_name", "distributions", "enabled",
           "entries", "failures", "find", "group_of", "groups", "kind_of", "load", "load_all",
           "load_entry", "names", "record_failure", "strict", "variant"]

GROUPS = {k.name: k.group for k in kinds.KINDS}  # kind -> entry-point group


def canonical(dist: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def group_of(kind: str) -> str:
    """``"encoder"`` -> ``"aezoo.encoders"``; a group name passes through."""
    row = kinds.kind(kind)
    return row.group if row else kind


def kind_of(group: str) -> str:
    """``"aezoo.encoders"`` -> ``"encoder"``; an unknown group is its own kind."""
    row = kinds.kind(group)
    return row.name if row else group


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

    @property
    def group(self) -> str:
        return group_of(self.kind)


@dataclass(frozen=True)
class Failure:
    """A plugin entry that could not be used, with the reason.

    ``reason``: ``import`` (raised on import), ``type`` (not the expected descriptor),
    ``protocol`` (a descriptor with invalid fields) or ``spec`` (a variant whose preset
    does not resolve to a valid run spec).
    """

    entry: Entry
    message: str
    reason: str = "import"

    @property
    def problem(self) -> str:
        """The failure in one line, as its PluginError says it."""
        e = self.entry
        who = f"plugin {e.dist} {e.version}"
        if self.reason == "import":
            return f"{who} failed to load {e.kind} '{e.name}' ({self.message})"
        return f"{who} provides a broken {e.kind} '{e.name}': {self.message}"


@dataclass(frozen=True)
class Distribution:
    """An installed distribution that provides aezoo entry points."""

    name: str
    version: str
    enabled: bool
    provides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> names


# --- discovery (metadata only, no plugin code runs) --------------------------------


def _allowed_dists() -> set[str] | None:
    raw = os.environ.get("AEZOO_PLUGINS")
    if raw is None:
        return None
    return {canonical(d.strip()) for d in raw.split(",") if d.strip()} | {FIRST_PARTY}


def enabled(dist: str) -> bool:
    """Whether ``AEZOO_PLUGINS`` lets ``dist`` load."""
    allowed = _allowed_dists()
    return allowed is None or canonical(dist) in allowed


@cache
def _scan() -> tuple[Entry, ...]:
    """Every ``aezoo.*`` entry point of every installed distribution, enabled or not."""
    found: dict[tuple[str, str, str], Entry] = {}
    seen: set[str] = set()
    for dist in metadata.distributions():
        text = dist.read_text("entry_points.txt")
        if not text or GROUP_PREFIX not in text:
            continue
        name = dist.metadata["Name"] or "unknown"
        # One distribution can be visible twice (e.g. two site dirs): the first is the
        # one Python imports from, so it is the one that counts.
        if canonical(name) in seen:
            continue
        seen.add(canonical(name))
        version = dist.version or "unknown"
        for ep in dist.entry_points:
            if ep.group.startswith(GROUP_PREFIX):
                entry = Entry(kind_of(ep.group), ep.name, ep.value, name, version)
                found.setdefault((entry.kind, entry.name, canonical(name)), entry)
    return tuple(sorted(found.values(), key=lambda e: (e.kind, e.name, canonical(e.dist))))


@cache
def entries(kind: str) -> tuple[Entry, ...]:
    """Entry points of ``kind`` from enabled distributions, sorted by name, then dist."""
    return tuple(e for e in _scan() if e.kind == kind_of(kind) and enabled(e.dist))


def groups() -> list[str]:
    """Every ``aezoo.*`` group installed distributions use, known ones first."""
    used = {e.group for e in _scan()}
    known = [g for g in GROUPS.values() if g in used]
    return known + sorted(used - set(known))


def distributions() -> list[Distribution]:
    """Installed distributions with aezoo entry points, first-party first, then by name."""
    by_dist: dict[str, list[Entry]] = {}
    for e in _scan():
        by_dist.setdefault(canonical(e.dist), []).append(e)
    out = []
    order = groups()
    for key in sorted(by_dist, key=lambda d: (d != FIRST_PARTY, d)):
        dist_entries = by_dist[key]
        provides: dict[str, list[str]] = {}
        for e in sorted(dist_entries, key=lambda e: order.index(e.group)):
            provides.setdefault(e.group, []).append(e.name)
        first = dist_entries[0]
        out.append(Distribution(first.dist, first.version, enabled(first.dist),
                                {g: tuple(n) for g, n in provides.items()}))
    return out


def unknown_allowed() -> list[str]:
    """Names in ``AEZOO_PLUGINS`` that no installed distribution with aezoo entries has."""
    allowed = _allowed_dists() or set()
    present = {canonical(e.dist) for e in _scan()}
    return sorted(allowed - present - {FIRST_PARTY})


def names(kind: str, pattern: str | None = None) -> list[str]:
    """Public names of ``kind``, optionally filtered by an fnmatch pattern."""
    found = sorted({e.name for e in entries(kind)})
    return [n for n in found if pattern is None or fnmatch.fnmatchcase(n, pattern)]


def conflicts(kind: str) -> dict[str, list[Entry]]:
    """Names of ``kind`` that more than one enabled distribution provides."""
    by_name: dict[str, list[Entry]] = {}
    for e in entries(kind):
        by_name.setdefault(e.name, []).append(e)
    return {n: es for n, es in by_name.items() if len(es) > 1}


def find(kind: str, name: str) -> Entry:
    """The entry ``name`` (or ``DIST:NAME``) resolves to, without importing it."""
    dist, _, bare = name.rpartition(":")
    matches = [e for e in entries(kind) if e.name == bare]
    if dist:
        others = [e for e in matches if canonical(e.dist) != canonical(dist)]
        matches = [e for e in matches if canonical(e.dist) == canonical(dist)]
        if not matches and others and enabled(dist):
            choices = ", ".join(e.qualified for e in others)
            raise UnknownNameError(f"distribution {dist} provides no {kind} '{bare}'",
                                   f"it is provided by: {choices}")
    if not matches:
        raise _unknown(kind, name, dist, bare)
    if len(matches) > 1:
        choices = ", ".join(e.qualified for e in matches)
        raise UsageError(f"{kind} '{name}' is provided by {len(matches)} distributions",
                         f"pick one with DIST:NAME ({choices})")
    return matches[0]


def _unknown(kind: str, name: str, dist: str, bare: str) -> AezooError:
    disabled = [e for e in _scan() if e.kind == kind_of(kind) and e.name == bare
                and not enabled(e.dist) and (not dist or canonical(dist) == canonical(e.dist))]
    if disabled:
        dists = ", ".join(sorted({e.dist for e in disabled}))
        return UnknownNameError(f"{kind} '{name}' is provided by {dists}, which AEZOO_PLUGINS "
                                "leaves out", f"add {dists} to AEZOO_PLUGINS, or unset it")
    known = names(kind)
    close = difflib.get_close_matches(bare, known, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    row = kinds.kind(kind)
    listing = row.listing if row else "aezoo plugins"
    return UnknownNameError(f"unknown {kind} '{name}'",
                            f"{hint}see `{listing}` for what is installed")


# --- loading (imports plugin code) -------------------------------------------------

_failures: dict[Entry, Failure] = {}


def _fail(entry: Entry, message: str, reason: str) -> PluginError:
    failure = _failures[entry] = Failure(entry, message, reason)
    fix = (f"reinstall or uninstall {entry.dist}" if reason == "import"
           else f"report it to the authors of {entry.dist}")
    return PluginError(failure.problem, f"{fix}; `aezoo plugins` lists plugin failures")


@cache
def load_entry(entry: Entry) -> Any:
    """The object behind one entry (imports its module once; failures are recorded)."""
    ep = metadata.EntryPoint(entry.name, entry.value, entry.group)
    user = UserInterrupts()
    try:
        # A plugin that prints on import must not corrupt machine-readable stdout.
        with contextlib.redirect_stdout(sys.stderr), user:
            obj = ep.load()
    except BaseException as exc:  # any import-time error is the plugin's fault...
        if isinstance(exc, KeyboardInterrupt) and user.seen:
            raise  # ...except the user's own Ctrl-C, which still interrupts
        raise _fail(entry, summary(exc, limit=1000), "import") from exc
    row = kinds.kind(entry.kind)
    if row is None:  # a group aezoo does not know: handed over as it is
        return obj
    described = row.descriptor is not None and isinstance(obj, row.descriptor)
    if not described and row.factory and not callable(obj):
        raise _fail(entry, f"{entry.value} is a {type(obj).__name__}, not callable", "type")
    if not described and not row.factory and row.descriptor is not None:
        message = f"{entry.value} is a {type(obj).__name__}, not a {row.descriptor.__name__}"
        raise _fail(entry, message, "type")
    # A callable standing in for a descriptor (a callback's earlier API) has no fields.
    checked = described or row.descriptor is None
    problem = row.check(obj) if row.check is not None and checked else None
    if problem:
        raise _fail(entry, problem, "protocol")
    return obj


def load(kind: str, name: str) -> Any:
    """The descriptor behind ``name``; imports the providing module on first use."""
    return load_entry(find(kind, name))


def load_all(kind: str) -> list[tuple[Entry, Any]]:
    """(entry, object) for every usable entry of ``kind``, sorted by name then dist.

    A broken entry is left out and recorded (``failures()``, ``aezoo plugins``); with
    ``AEZOO_STRICT_PLUGINS=1`` it raises instead.
    """
    out = []
    for entry in entries(kind):
        try:
            out.append((entry, load_entry(entry)))
        except PluginError:
            if strict():
                raise
    return out


def display_name(entry: Entry) -> str:
    """How a user must type ``entry``: bare, or ``DIST:NAME`` when the name is ambiguous."""
    return entry.qualified if entry.name in conflicts(entry.kind) else entry.name


def encoder(name: str) -> EncoderComponent:
    return load("encoder", name)


def decoder(name: str) -> DecoderComponent:
    return load("decoder", name)


def loss(name: str) -> LossComponent:
    return load("loss", name)


def own_component(kind: str, ref: str, dist: str) -> str:
    """``ref`` as a variant of ``dist`` means it: qualified when the bare name is ambiguous
    and ``dist`` itself provides it, so another plugin's same-named part cannot hijack or
    break it."""
    if ":" in ref:
        return ref
    matches = [e for e in entries(kind) if e.name == ref]
    if len(matches) > 1 and any(canonical(e.dist) == canonical(dist) for e in matches):
        return f"{canonical(dist)}:{ref}"
    return ref


def variant(name: str) -> Variant:
    """The variant ``name``, its component names qualified where they would be ambiguous."""
    entry = find("variant", name)
    v: Variant = load_entry(entry)
    updates: dict[str, Any] = {kind: own_component(kind, getattr(v, kind), entry.dist)
                               for kind in COMPONENT_KINDS}
    updates = {k: ref for k, ref in updates.items() if ref != getattr(v, k)}
    return replace(v, **updates) if updates else v


def record_failure(entry: Entry, message: str, reason: str) -> None:
    """Record a failure found outside loading (e.g. a variant preset that does not
    resolve), so ``failures()`` and ``aezoo plugins`` report it."""
    _failures[entry] = Failure(entry, message, reason)


def failures() -> list[Failure]:
    """Plugin entries that failed so far in this process, in a stable order."""
    return sorted(_failures.values(),
                  key=lambda f: (canonical(f.entry.dist), f.entry.kind, f.entry.name))


def strict() -> bool:
    """``AEZOO_STRICT_PLUGINS=1`` turns a broken plugin into a fatal error."""
    return os.environ.get("AEZOO_STRICT_PLUGINS", "") not in ("", "0")


def clear_cache() -> None:
    """Forget discovered and loaded entries (after installing a plugin in-process)."""
    _scan.cache_clear()
    entries.cache_clear()
    load_entry.cache_clear()
    _failures.clear()
