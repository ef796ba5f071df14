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

from aezoo.errors import AezooError, PluginError, UnknownNameError, UsageError
from aezoo.protocols import (
    DecoderComponent,
    EncoderComponent,
    LossComponent,
    Variant,
)

GROUP_PREFIX = "aezoo."
GROUPS = {
    "encoder": "aezoo.encoders",
    "decoder": "aezoo.decoders",
    "loss": "aezoo.losses",
    "variant": "aezoo.variants",
    "dataset": "aezoo.datasets",
    "callback": "aezoo.callbacks",
}
KINDS = ("encoder", "decoder", "loss", "variant")  # the kinds this module type-checks
COMPONENT_KINDS = ("encoder", "decoder", "loss")
_EXPECTED: dict[str, type] = {
    "encoder": EncoderComponent,
    "decoder": DecoderComponent,
    "loss": LossComponent,
    "variant": Variant,
}
# Descriptor types other modules define, imported only when such an entry is loaded.
_EXPECTED_ELSEWHERE = {"dataset": ("aezoo.data.source", "DatasetSource")}
_CALLABLE = {"callback"}  # a factory: called with the run directory
FIRST_PARTY = "aezoo"


def canonical(dist: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def group_of(kind: str) -> str:
    """``"encoder"`` -> ``"aezoo.encoders"``; a group name passes through."""
    return GROUPS.get(kind, kind)


def kind_of(group: str) -> str:
    """``"aezoo.encoders"`` -> ``"encoder"``; an unknown group is its own kind."""
    for kind, g in GROUPS.items():
        if g == group:
            return kind
    return group


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
        raise UsageError(
            f"{kind} '{name}' is provided by {len(matches)} distributions",
            f"pick one with DIST:NAME ({choices})",
        )
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
    listing = {"variant": "aezoo list", "dataset": "aezoo data list",
               "callback": "aezoo plugins"}.get(kind, "aezoo list --components")
    return UnknownNameError(f"unknown {kind} '{name}'",
                            f"{hint}see `{listing}` for what is installed")


# --- loading (imports plugin code) -------------------------------------------------

_failures: dict[Entry, Failure] = {}


def _violation(kind: str, obj: Any) -> str | None:
    """What is wrong with a descriptor of the expected type, or None."""
    if kind == "variant":
        return _variant_violation(obj)
    from pydantic import BaseModel

    if not (isinstance(obj.params, type) and issubclass(obj.params, BaseModel)):
        return f"params is {obj.params!r}, not a pydantic BaseModel subclass"
    if not callable(obj.build):
        return f"build is {obj.build!r}, not callable"
    if not isinstance(obj.description, str):
        return "description is not a string"
    return None


def _is_shape(value: Any) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value))


def _variant_violation(v: Variant) -> str | None:
    for kind in COMPONENT_KINDS:
        if not isinstance(getattr(v, kind), str) or not getattr(v, kind):
            return f"{kind} must be a component name, got {getattr(v, kind)!r}"
        if not isinstance(getattr(v, f"{kind}_params"), Mapping):
            return f"{kind}_params must be a mapping"
    if not _is_shape(v.input_shape):
        return f"input_shape must be (C, H, W) positive ints, got {v.input_shape!r}"
    for shape in getattr(v, "example_shapes", ()):
        if not _is_shape(shape):
            return f"example_shapes must hold (C, H, W) positive ints, got {shape!r}"
    if not isinstance(v.train, Mapping):
        return "train must be a mapping of TrainSpec values"
    if v.param_count is not None and (not isinstance(v.param_count, int) or v.param_count < 0):
        return f"param_count must be a non-negative int or None, got {v.param_count!r}"
    if not isinstance(v.init, str) or not isinstance(v.description, str):
        return "init and description must be strings"
    return None


def _fail(entry: Entry, message: str, reason: str) -> PluginError:
    _failures[entry] = Failure(entry, message, reason)
    if reason == "import":
        return PluginError(
            f"plugin {entry.dist} {entry.version} failed to load {entry.kind} "
            f"'{entry.name}' ({message})",
            f"reinstall or uninstall {entry.dist}; `aezoo plugins` lists plugin failures",
        )
    return PluginError(
        f"plugin {entry.dist} {entry.version} provides a broken {entry.kind} "
        f"'{entry.name}': {message}",
        f"report it to the authors of {entry.dist}; `aezoo plugins` lists plugin failures",
    )


def _expected(kind: str) -> type | None:
    if kind in _EXPECTED_ELSEWHERE:
        import importlib

        module, attr = _EXPECTED_ELSEWHERE[kind]
        expected: type = getattr(importlib.import_module(module), attr)
        return expected
    return _EXPECTED.get(kind)


@cache
def _load(entry: Entry) -> Any:
    ep = metadata.EntryPoint(entry.name, entry.value, entry.group)
    try:
        # A plugin that prints on import must not corrupt machine-readable stdout.
        with contextlib.redirect_stdout(sys.stderr):
            obj = ep.load()
    except (Exception, SystemExit) as exc:  # any import-time error is the plugin's fault
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise _fail(entry, message, "import") from exc
    if entry.kind in _CALLABLE and not callable(obj):
        raise _fail(entry, f"{entry.value} is a {type(obj).__name__}, not callable", "type")
    expected = _expected(entry.kind)
    if expected is None:
        return obj
    if not isinstance(obj, expected):
        message = f"{entry.value} is a {type(obj).__name__}, not a {expected.__name__}"
        raise _fail(entry, message, "type")
    problem = _violation(entry.kind, obj) if entry.kind in _EXPECTED else None
    if problem:
        raise _fail(entry, problem, "protocol")
    return obj


def load_entry(entry: Entry) -> Any:
    """The object behind one entry (imports its module once; failures are recorded)."""
    return _load(entry)


def load(kind: str, name: str) -> Any:
    """The descriptor behind ``name``; imports the providing module on first use."""
    return _load(find(kind, name))


def load_all(kind: str) -> list[tuple[Entry, Any]]:
    """(entry, object) for every usable entry of ``kind``, sorted by name then dist.

    A broken entry is left out and recorded (``failures()``, ``aezoo plugins``); with
    ``AEZOO_STRICT_PLUGINS=1`` it raises instead.
    """
    out = []
    for entry in entries(kind):
        try:
            out.append((entry, _load(entry)))
        except PluginError:
            if strict():
                raise
    return out


def display_name(entry: Entry) -> str:
    """How a user must type ``entry``: bare, or ``DIST:NAME`` when the name is ambiguous."""
    return entry.qualified if entry.name in conflicts(entry.kind) else entry.name


def encoder(name: str) -> EncoderComponent:
    obj: EncoderComponent = load("encoder", name)
    return obj


def decoder(name: str) -> DecoderComponent:
    obj: DecoderComponent = load("decoder", name)
    return obj


def loss(name: str) -> LossComponent:
    obj: LossComponent = load("loss", name)
    return obj


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
    v: Variant = _load(entry)
    updates: dict[str, Any] = {kind: own_component(kind, getattr(v, kind), entry.dist)
                               for kind in COMPONENT_KINDS}
    updates = {k: ref for k, ref in updates.items() if ref != getattr(v, k)}
    return replace(v, **updates) if updates else v


def check_all() -> list[Failure]:
    """Load every enabled entry of every group and resolve every variant's preset.

    Imports all plugin code (slow with many plugins): for ``aezoo plugins`` and tests.
    """
    from aezoo.config import build_run_spec

    for e in _scan():
        if not enabled(e.dist):
            continue
        try:
            _load(e)
        except PluginError:
            continue
        if e.kind == "variant":
            try:
                build_run_spec(e.qualified)
            except PluginError:
                pass  # a component's own failure is recorded on that component
            except AezooError as exc:
                _failures[e] = Failure(e, f"its preset does not resolve: {exc}", "spec")
            except Exception as exc:  # a params validator that crashes is still a plugin bug
                detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
                _failures[e] = Failure(e, f"its preset does not resolve: {detail}", "spec")
    return failures()


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
    _load.cache_clear()
    _failures.clear()
