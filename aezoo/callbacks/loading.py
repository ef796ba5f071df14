"""Callbacks by name, through the ``aezoo.callbacks`` entry-point group (aezoo's own too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aezoo import registry
from aezoo.errors import AezooError, PluginError, summary

CALLBACK_GROUP = "aezoo.callbacks"


def load_callback(name: str, out_dir: str | Path) -> Any:
    """Build the callback a plugin registers as ``name`` (or ``DIST:NAME``) for ``out_dir``.

    Found and imported through the registry, like every plugin part: ``AEZOO_PLUGINS``,
    conflicts and failure reports (``aezoo plugins``) apply to callbacks too.
    """
    factory = registry.load_entry(registry.find("callback", name))
    try:
        return factory(Path(out_dir))
    except AezooError:
        raise
    except Exception as exc:  # a plugin's failure, reported as such
        raise PluginError(f"callback '{name}' failed to load ({summary(exc)})",
                          "fix or uninstall the plugin that provides it") from exc
