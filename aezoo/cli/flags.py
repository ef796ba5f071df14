"""Flags spelled once: a command's table of ``Flag`` rows is both its typer parameters
(through ``__signature__``, the public hook typer reads) and, on each call, what was given."""

from __future__ import annotations

import builtins
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import typer


@dataclass(frozen=True)
class Flag:
    """An option (``--epochs``), or the argument (``NAME``), of a command.

    ``kind``: the value's type; ``bool`` is a switch that gives ``value`` when present,
    ``list`` a repeatable option (or a variadic argument) of strings. ``key``: what the flag
    sets, in the words of the command that owns the table (a run spec path, a sweep field).
    ``resume``: passed on with ``aezoo train --resume`` (only ``aezoo train`` asks)."""

    flag: str
    kind: type
    help: str
    metavar: str | None = None
    complete: Callable[[str], list[str]] | None = None
    key: str | None = None
    resume: bool = False
    value: Any = True
    short: str | None = None
    min: int | None = None

    def parameter(self) -> inspect.Parameter:
        name = self.flag.lstrip("-").replace("-", "_").lower()
        name += "_" * (name in vars(builtins))  # set_, compile_: not a builtin's name
        kind: Any = list[str] if self.kind is list else self.kind
        if self.flag.startswith("-"):
            default: Any = False if kind is bool else [] if self.kind is list else None
            info: Any = typer.Option(default, self.flag, *filter(None, [self.short]),
                                     min=self.min, metavar=self.metavar, help=self.help,
                                     autocompletion=self.complete)
        else:
            default, info = None, typer.Argument(None, metavar=self.metavar or self.flag,
                                                 help=self.help, autocompletion=self.complete)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                 annotation=kind | None if default is None else kind)

def command(flags: Sequence[Flag], run: Callable[[dict[str, Any]], None]) -> Callable[..., None]:
    """A typer command function whose parameters are ``flags``; it calls ``run`` with the
    flags given (flag -> value, a switch's ``value``, a repeated option's list), in table
    order."""
    parameters = [f.parameter() for f in flags]

    def call(**values: Any) -> None:
        given = {}
        for f, p in zip(flags, parameters, strict=True):
            value = values[p.name]
            if value is None or value is False or (f.kind is list and not value):
                continue  # not given
            given[f.flag] = f.value if f.kind is bool else value
        run(given)

    call.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return call
