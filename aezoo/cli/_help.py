"""Help that reads like a manual at 80 columns: no Python types (``<bool>``, ``<int range>``,
``<list[Path]>``) beside the flags, a word (``N``, ``PATH``, ``DEVICE``) where a value goes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _Argument(TyperArgument):
    """An argument shown by its name in capitals (``MODEL``, ``RUN RUN...``), without a
    type, in the help row and the usage line (``[DIR]``, ``[PATTERN]...``)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or str(self.name).upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return [name + ("..." if self.nargs != 1 and not name.endswith("...") else "")]


def _placeholder(param: Any, ctx: Any) -> str:
    """The word that stands for an option's value in help (typer would show its type)."""
    try:
        kind = str(param.display_type(ctx)).strip("<>").lower()
    except Exception:  # a parameter typer cannot describe: its name
        kind = ""
    if "path" in kind:
        return "PATH"
    if kind.startswith("int"):
        return "N"
    if kind.startswith("float"):
        return "X"
    return str(param.name or "value").upper()


SEED_MAX = 2**64 - 1


def check_seed(value: int | None) -> int | None:
    """A seed option's upper bound, checked here so that the help shows no 20-digit range."""
    if value is not None and value > SEED_MAX:
        raise typer.BadParameter(f"{value} is above 2^64-1")
    return value


def manual(params: Iterable[Any], ctx: Any) -> list[Any]:
    """``params`` with a placeholder word for each option that has none (flags: nothing)."""
    out = list(params)
    for param in out:
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = _placeholder(param, ctx)
    return out


class ManualCommand(TyperCommand):
    """A command whose flags (``--force``, ``--help``) show no value placeholder."""

    def get_params(self, ctx: Any) -> list[Any]:
        return manual(super().get_params(ctx), ctx)


class ManualGroup(TyperGroup):
    """A group whose commands (its plugins' too) and subgroups get manual help."""

    def get_params(self, ctx: Any) -> list[Any]:
        return manual(super().get_params(ctx), ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if type(command) is TyperCommand:
            command.__class__ = ManualCommand
        elif type(command) is TyperGroup:
            command.__class__ = ManualGroup
        return command
