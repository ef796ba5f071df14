"""Help that reads like a manual at 80 columns: no ``<bool>`` after a flag."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class ManualCommand(TyperCommand):
    """A command whose flags (``--force``, ``--help``) show no value placeholder."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params
