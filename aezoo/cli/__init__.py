"""The ``aezoo`` command line: thin commands, split by group, over the core API."""

from __future__ import annotations

import gc
import sys
import warnings
from pathlib import Path

from aezoo import _interrupts


def _is_program() -> bool:
    """Whether this process is the ``aezoo`` program (console script or ``python -m``)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return (getattr(spec, "name", None) == "aezoo.__main__"
            or Path(sys.argv[0] if sys.argv else "").name == "aezoo")


if _is_program():  # first, before the imports below: a Ctrl-C now exits 130, one line
    _interrupts.guard_program()

import typer  # noqa: E402

from aezoo._version import __version__  # noqa: E402
from aezoo.cli import complete  # noqa: E402
from aezoo.cli.common import AezooGroup, console, flush_stdout, warn, warn_unavailable  # noqa: E402

_app: typer.Typer | None = None
_startup_error: Exception | None = None


def __getattr__(name: str) -> typer.Typer:
    """``aezoo.cli.app``, made on first use: a command plugin may import ``aezoo.cli.*``
    helpers at its top without its own module being loaded half-way through (PEP 562)."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return application()


def application() -> typer.Typer:
    """The ``aezoo`` typer app with every installed command (made once)."""
    global _app
    if _app is None:
        # Held before the commands are added: a plugin's register() that reads
        # aezoo.cli.app while they are gets this app, not a second build.
        _app = _new_app()
        _add_commands(_app)
        complete.enable_if_asked()  # a shell asking for completions (aezoo completion SHELL)
    return _app


def _new_app() -> typer.Typer:
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
    app.callback()(_root)
    return app


def _version(value: bool) -> None:
    if value:
        console.print(f"aezoo {__version__}", highlight=False)
        raise typer.Exit()


def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """A plugin-based model zoo for convolutional autoencoders."""
    if _startup_error is not None:
        raise _startup_error


def _add_commands(app: typer.Typer) -> None:
    """Every ``aezoo.commands`` entry point's ``register(app)``: aezoo's own command groups
    and plugins' alike. A plugin whose commands fail to load is a warning (the other
    commands, including the ones to inspect or fix it, keep working), fatal only with
    ``AEZOO_STRICT_PLUGINS=1``."""
    from aezoo import registry
    from aezoo.errors import PluginError, summary

    global _startup_error
    try:
        loaded = registry.load_all("command")
    except PluginError as exc:  # strict mode: reported when a command runs, not as a traceback
        _startup_error, loaded = exc, []
    for entry, register in loaded:
        try:
            register(app)
        except Exception as exc:  # a plugin's register(): its bug, not the CLI's
            if registry.strict():
                _startup_error = PluginError(
                    f"plugin {entry.dist} {entry.version} failed to add command "
                    f"'{entry.name}' ({summary(exc)})", f"fix or uninstall {entry.dist}")
                continue
            warn(f"plugin {entry.dist} {entry.version}: command '{entry.name}' is unavailable "
                 f"({summary(exc)}); see `aezoo plugins`")
    warn_unavailable("command")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """aezoo's own warnings as one yellow line; others as Python shows them."""
    from aezoo.errors import AezooWarning

    if issubclass(category, AezooWarning):
        warn(str(message))
    else:
        _python_showwarning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


_python_showwarning = warnings.showwarning
warnings.showwarning = _show_warning


def main() -> None:
    try:
        application()()
    finally:
        flush_stdout()
        if _is_program():  # the process ends now: spare it the cyclic collections of
            gc.freeze()  # shut-down, which walk every object torch made (atexit still runs)
