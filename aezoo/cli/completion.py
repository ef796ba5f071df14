"""``aezoo completion SHELL``: the shell completion script for bash, zsh or fish."""

from __future__ import annotations

import typer

from aezoo.cli import complete
from aezoo.cli.common import usage_error


def completion_command(
    shell: str = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish.",
                                autocompletion=complete.shells),
) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    Tab then completes commands, options, variant and component names, dataset names, run
    directories and `--set` keys. Load it in the current shell, or add the line to your
    shell's start-up file (~/.bashrc, ~/.zshrc, ~/.config/fish/config.fish):

        eval "$(aezoo completion bash)"

        eval "$(aezoo completion zsh)"

        aezoo completion fish | source
    """
    if shell not in complete.SHELLS:
        raise usage_error(f"no completion for shell '{shell}'", "use bash, zsh or fish")
    typer.echo(complete.script(shell))


def register(app: typer.Typer) -> None:
    app.command("completion")(completion_command)
