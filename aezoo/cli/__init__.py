"""The ``aezoo`` command line: thin commands, split by group, over the core API."""

from __future__ import annotations

import typer

from aezoo._version import __version__
from aezoo.cli import data, evaluate, listing, plugins, scaffold, specfiles, train
from aezoo.cli._common import AezooGroup, console

app = typer.Typer(
    name="aezoo",
    cls=AezooGroup,
    help="A plugin-based model zoo for convolutional autoencoders.\n\n"
    "List the installed variants with `aezoo list`, inspect one with `aezoo info NAME`, "
    "train it with `aezoo train NAME`.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"aezoo {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """A plugin-based model zoo for convolutional autoencoders."""


# Each command group is a module with register(app); add new groups to this tuple.
for _group in (listing, train, data, evaluate, plugins, specfiles, scaffold):
    _group.register(app)


def main() -> None:
    app()
