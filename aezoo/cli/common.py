"""Shared CLI plumbing: consoles, one-line errors, exit codes."""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING, Any, cast

import typer
from rich.console import Console
from rich.markup import escape

from aezoo import _interrupts
from aezoo.cli._help import ManualGroup
from aezoo.errors import AezooError, one_line, summary

if TYPE_CHECKING:
    from aezoo.registry import Failure

# Typer >= 0.29 vendors click; take its exception classes from a public typer class.
_CLICK = cast(dict[str, type[Exception]], {c.__name__: c for c in typer.BadParameter.__mro__})
# Exits and usage errors are the framework's to report (usage errors exit with code 2).
_PASS_THROUGH = (typer.Exit, typer.Abort, SystemExit, _CLICK["ClickException"])
# The framework's usage errors (bad flag, bad value, missing argument): shown as one line.
_USAGE_ERRORS = _CLICK["UsageError"]


def drop_output(stream: IO[str] | None) -> None:
    """Point ``stream``'s file descriptor at /dev/null: once its reader has gone (``| head``,
    quitting ``less``), later writes and Python's flush at exit go nowhere instead of
    raising BrokenPipeError (which would print a traceback and change the exit code)."""
    try:
        fd = stream.fileno() if stream is not None else -1
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. a test's buffer)
        return
    if fd < 0:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class PipeSafeConsole(Console):
    """A console whose closed output never stops the command: it falls quiet instead.

    rich's default on a broken pipe is ``SystemExit(1)`` from inside whatever printed (a
    training callback, say), which would end a run silently before its checkpoint.
    ``closed_notice``, when set, is said once on stderr when this happens.
    """

    closed_notice: str | None = None

    def on_broken_pipe(self) -> None:
        self.quiet = True
        drop_output(self.file)
        notice, self.closed_notice = self.closed_notice, None
        if notice is not None and self is not err_console:
            warn(notice)


console = PipeSafeConsole()
err_console = PipeSafeConsole(stderr=True)


def say(text: str) -> None:
    """One line of a command's output on stdout: rich markup read, nothing else
    highlighted, never wrapped."""
    console.print(text, highlight=False, soft_wrap=True)


def flush_stdout() -> None:
    """Python's shutdown flush of a stdout whose reader has gone: silent, exit code kept."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        drop_output(sys.__stdout__)


def debug() -> bool:
    return os.environ.get("AEZOO_DEBUG", "") not in ("", "0")


def error(message: str) -> None:
    """One red line on stderr, never wrapped (control characters escaped)."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", soft_wrap=True,
                      highlight=False)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(one_line(message))}", soft_wrap=True,
                      highlight=False)


def plugin_problem(failure: Failure) -> str:
    """A recorded plugin failure in the words the registry's PluginError uses."""
    return failure.problem


def warn_unavailable(kind: str | None = None) -> None:
    """One warning per plugin entry (of ``kind``, or any) that failed to load so far."""
    from aezoo import registry

    for failure in registry.failures():
        e = failure.entry
        if kind is None or e.kind == kind:
            warn(f"plugin {e.dist} {e.version}: {e.kind} '{e.name}' is unavailable "
                 f"({failure.message}); see `aezoo plugins`")


def _one_line_usage_error(exc: Exception) -> Exception:
    """A flag the framework rejected, as one line like every other error (exit code 2);
    ``no_args_is_help``'s error as it is (the framework prints the help instead)."""
    if type(exc).__name__ == "NoArgsIsHelpError":
        return exc
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "aezoo"
    message = " ".join(getattr(exc, "format_message", lambda: str(exc))().split()).rstrip(".")
    see = f" (see `{command} --help`)" if message.endswith("?") else f": see `{command} --help`"
    sets = (getattr(ctx, "params", None) or {}).get("set_") or []
    spaced = next((s for s in sets if isinstance(s, str) and "=" not in s), None)
    if spaced is not None and "extra argument" in message:  # --set train.lr 0.1
        see = (f"; --set takes KEY=VALUE as one word, e.g. --set {spaced}=VALUE (not "
               f"--set {spaced} VALUE)")
    error(message + see)
    return typer.Exit(2)


def _out_of_memory(exc: BaseException) -> bool:
    """numpy's MemoryError, torch's (CUDA/MPS) OutOfMemoryError or CPU allocator failure."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text
                                              or "out of memory" in text)


class AezooGroup(ManualGroup):
    """Turns aezoo errors into one red line and an exit code; tracebacks only in debug."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        # Commands come from entry points (aezoo's and plugins'): one stable order.
        return sorted(super().list_commands(ctx))

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        try:
            return super().parse_args(ctx, args)
        except _USAGE_ERRORS as exc:
            raise _one_line_usage_error(exc) from None

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        _interrupts.command_started()  # from now a Ctrl-C is a KeyboardInterrupt (below)
        try:
            value = super().invoke(ctx)
            _interrupts.command_finished()
            return value
        except _USAGE_ERRORS as exc:
            raise _one_line_usage_error(exc) from None
        except AezooError as exc:
            if debug():
                raise
            error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            error("interrupted")
            raise typer.Exit(130) from None
        except _PASS_THROUGH:
            raise
        except BrokenPipeError:  # stdout's reader has gone (`| head`): nothing to tell it
            drop_output(sys.stdout)
            raise typer.Exit(0) from None
        except Exception as exc:  # a bug: say so in one line, keep the traceback for debug
            if debug():
                raise
            if _out_of_memory(exc):
                detail = " ".join(str(exc).split())[:200]
                error(f"out of memory ({detail}): use a smaller --image-size, --batch-size or "
                      "--limit (or a device with more memory)")
            elif isinstance(exc, OSError) and exc.errno is not None:  # full, read-only, gone
                where = f" {exc.filename}" if exc.filename else ""
                error(f"cannot use{where} ({exc.strerror}): check the path, its permissions "
                      "and the free disk space")
            else:
                error(f"unexpected {summary(exc)} "
                      "(rerun with AEZOO_DEBUG=1 for the traceback and please report it)")
            raise typer.Exit(1) from None


def usage_error(problem: str, fix: str) -> typer.Exit:
    """For flag combinations the command itself rejects."""
    error(f"{problem}: {fix}")
    return typer.Exit(2)
