"""``aezoo plugins``: installed plugin distributions, what each provides, what is broken."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape

from aezoo.cli import tables
from aezoo.cli.common import console, error, say, warn
from aezoo.cli.tables import ID, TEXT


def _short(group: str) -> str:
    return group.removeprefix("aezoo.")


def _print(data: dict[str, Any]) -> None:
    table = tables.table([("distribution", ID), ("version", ID), ("provides", TEXT),
                          ("status", ID)], title="aezoo plugins", title_justify="left")
    for d in data["distributions"]:
        provides = "\n".join(f"{_short(g)}: {', '.join(names)}"
                             for g, names in d["provides"].items())
        n = len(d["failures"])
        status = ("[dim]off (AEZOO_PLUGINS)[/]" if not d["enabled"]
                  else f"[red]{n} failure{'s' if n != 1 else ''}[/]" if n else "[green]ok[/]")
        table.add_row(escape(d["name"]), escape(d["version"]), escape(provides), status)
    tables.show(table, console)
    failed = [(d, f) for d in data["distributions"] for f in d["failures"]]
    if failed:
        ftable = tables.table([("distribution", ID), ("entry", ID), ("problem", TEXT)],
                              title="failures", title_justify="left")
        for d, f in failed:
            ftable.add_row(escape(d["name"]), escape(f"{_short(f['group'])}: {f['name']}"),
                           escape(f"{f['reason']}: {f['message']}"))
        tables.show(ftable, console)
    for c in data["conflicts"]:
        say(f"conflict: {_short(c['group'])} '{escape(c['name'])}' is provided by "
            f"{len(c['providers'])} distributions; use one of "
            f"{', '.join(c['providers'])}")
    if data["only"] is not None:
        say(f"AEZOO_PLUGINS: only {', '.join(['aezoo', *data['only']])} load")


def plugins_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List every installed distribution that provides aezoo entry points.

    For each: its version, what it provides per entry-point group (`aezoo.variants`,
    `aezoo.encoders`, `aezoo.datasets`, ...), and every failure: a module that raises on
    import, an entry that is not the right kind of object, a descriptor with invalid fields,
    a variant whose preset does not resolve. Names two distributions both provide are
    listed as conflicts (use `DIST:NAME` to pick one).

    This command imports every plugin, unlike `aezoo list`.

    Environment: `AEZOO_PLUGINS=a,b` loads only those distributions (plus aezoo itself);
    `AEZOO_STRICT_PLUGINS=1` makes any failure fatal (exit code 1).
    """
    from aezoo.doctor import plugin_report

    data = plugin_report()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        _print(data)
    for name in data["unknown_in_only"]:
        warn(f"AEZOO_PLUGINS names '{name}', which is not an installed aezoo plugin")
    if data["strict"] and data["failures"]:
        error(f"{data['failures']} plugin failure{'s' if data['failures'] != 1 else ''} "
              "with AEZOO_STRICT_PLUGINS=1: fix or uninstall the broken plugins")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins_command)
