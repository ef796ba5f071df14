"""Callbacks by name, through the ``aezoo.callbacks`` entry-point group (aezoo's own too)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aezoo import registry
from aezoo.errors import AezooError, PluginError, summary
from aezoo.protocols import CallbackComponent, builder
from aezoo.specs import validate

CALLBACK_GROUP = "aezoo.callbacks"


def load_callback(name: str, out_dir: str | Path, params: Mapping[str, Any] | None = None) -> Any:
    """Build the callback a plugin registers as ``name`` (or ``DIST:NAME``) for ``out_dir``,
    with ``params`` (``train.callback_params.NAME``) validated by its params model.

    Found and imported through the registry, like every plugin part: ``AEZOO_PLUGINS``,
    conflicts and failure reports (``aezoo plugins``) apply to callbacks too. A plain
    ``factory(run_dir)`` (the earlier API) takes no params.
    """
    descriptor = registry.load_entry(registry.find("callback", name))
    try:
        if isinstance(descriptor, CallbackComponent):
            typed = validate(descriptor.params, dict(params or {}), f"train.callback_params.{name}")
            return builder(descriptor)(typed, Path(out_dir))
        return descriptor(Path(out_dir))
    except AezooError:
        raise
    except Exception as exc:  # a plugin's failure, reported as such
        raise PluginError(f"callback '{name}' failed to load ({summary(exc)})",
                          "fix or uninstall the plugin that provides it") from exc
