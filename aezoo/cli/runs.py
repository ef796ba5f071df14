"""``aezoo runs``, ``aezoo compare`` and ``aezoo plot``: the run directories as a table,
side by side, and one run's loss curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich import box

from aezoo.cli import complete, tables
from aezoo.cli.common import console, say
from aezoo.cli.tables import ID, NUMBER


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _num(value: float | None, fmt: str = ".5f") -> str:
    return "—" if value is None else format(value, fmt)


def runs_command(
    directory: Path = typer.Argument(Path("runs"), metavar="DIR",
                                     help="Where to look for runs.",
                                     autocompletion=complete.run_dirs),
    pattern: str | None = typer.Option(
        None, "--filter", "-f", metavar="PATTERN",
        help="Only runs whose name or variant matches (fnmatch, e.g. 'cae-v*'; a plain "
        "word matches anywhere)."),
    sort: str = typer.Option("name", metavar="KEY", help="name, variant, data, epochs, "
                             "status, val_loss, best_epoch, time, params or modified "
                             "(newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list."),
) -> None:
    """List the training runs under DIR: variant, data, epochs done / planned, status
    (running, completed, stopped, interrupted, diverged, failed), best val_loss and its
    epoch, training time, parameters.

    Reads each run's run.json, metrics.jsonl and status.json only; "running" means a
    process holds the run's lock now.
    """
    from aezoo.api import runs as list_runs

    runs = list_runs(directory, pattern, sort)
    if as_json:
        typer.echo(json.dumps([r.as_dict() for r in runs]))
        return
    if not runs:
        console.print(f"no runs under {directory}" + (f" matching '{pattern}'" if pattern
                                                       else ""), highlight=False)
        return
    columns = [("run", ID), ("variant", ID), ("data", ID), ("epochs", NUMBER),
               ("status", ID), ("best val_loss", NUMBER), ("at epoch", NUMBER),
               ("time", NUMBER), ("params", NUMBER)]
    rows = [[r.name, r.variant or "?", short_path(r.data) if r.data else "?",
             f"{r.epochs_done}/{'?' if r.epochs is None else r.epochs}", r.status,
             _num(r.val_loss), _num(r.best_epoch, "d"), duration(r.seconds),
             _num(r.params, ",")] for r in runs]
    if any(r.trial is not None for r in runs):  # a sweep's trials: their number and params
        columns += [("trial", NUMBER), ("trial params", ID)]
        for row, r in zip(rows, runs, strict=True):
            row += [_num(r.trial, "d"), " ".join(f"{k.rpartition('.')[2]}={_short(v)}"
                                                  for k, v in (r.trial_params or {}).items())]
    if len(rows) > PLAIN_ABOVE:
        plain(columns, rows)
        return
    hidden: list[str] = []
    compact: dict[str, Any] = {}
    while True:
        table = tables.table(columns, **compact)
        for row in rows:
            table.add_row(*row)
        if tables.needed_width(table, console) <= console.width:
            break
        if not compact:  # first without the borders (3 characters a column)
            compact = {"box": box.SIMPLE_HEAD, "pad_edge": False, "show_edge": False}
            continue
        drop = next((c for c in NARROW_DROPS if c in [h for h, _ in columns]), None)
        if drop is None:
            break
        at = [h for h, _ in columns].index(drop)  # the lowest-value column goes first
        columns = columns[:at] + columns[at + 1:]
        rows = [row[:at] + row[at + 1:] for row in rows]
        hidden.append(drop)
    tables.show(table, console)
    if hidden:
        console.print(f"({', '.join(hidden)} left out at {console.width} columns; --json or a "
                      "wider terminal shows them)", highlight=False, style="dim")


# Columns left out, in this order, while the table is wider than the terminal; the run's
# name is never cut nor left out.
NARROW_DROPS = ("params", "at epoch", "time", "variant", "epochs", "data")


def short_path(name: str) -> str:
    """A dataset name with its absolute path (``packed:/home/me/x.pack``) relative to the
    current directory where that is shorter (``packed:x.pack``)."""
    import os

    prefix, sep, rest = name.rpartition(":") if ":" in name else ("", "", name)
    if not os.path.isabs(rest) or "://" in name:
        return name
    try:
        relative = os.path.relpath(rest)
    except ValueError:  # another drive (Windows)
        return name
    return f"{prefix}{sep}{relative}" if len(relative) < len(rest) else name


PLAIN_ABOVE = 200  # rich lays out ~1 ms of CPU a row: long listings are plain text


def plain(columns: list[tuple[str, str]], rows: list[list[str]]) -> None:
    """Aligned columns without borders, never cut (a line may be wider than the screen)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, (h, _) in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if kind == NUMBER else c.ljust(w)
                         for c, w, (_, kind) in zip(cells, widths, columns, strict=True)
                         ).rstrip()

    text = "\n".join([line([h for h, _ in columns]), *(line(r) for r in rows)])
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def _short(v: Any) -> str:
    return format(v, ".4g") if isinstance(v, float) else json.dumps(v)


def _value(v: Any) -> str:
    from aezoo.records import MISSING

    if v is MISSING:
        return "—"
    return v if isinstance(v, str) else json.dumps(v)


def compare_command(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN RUN...",
                                          help="Two or more run directories.",
                                          autocompletion=complete.run_dirs),
    out: Path = typer.Option(Path("compare.png"), help="PNG of their val_loss curves."),
    no_picture: bool = typer.Option(False, "--no-picture", help="Write no PNG."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Put runs side by side: the spec keys that differ between them (only those), their
    final and best metrics, and one PNG of their val_loss curves overlaid."""
    from aezoo.api import compare
    from aezoo.epochs import column, terms_of
    from aezoo.records import MISSING

    result = compare(*run_dirs, out=None if no_picture else out, force=force)
    names = [r.name for r in result.runs]
    if as_json:
        typer.echo(json.dumps({
            "runs": [r.as_dict() for r in result.runs],
            "differences": {k: [None if v is MISSING else v for v in vs]
                            for k, vs in result.diff},
            "picture": None if result.picture is None else str(result.picture),
            "notes": result.notes}))
        return
    if result.diff:
        diff = tables.table([("spec key", ID), *((n, ID) for n in names)])
        for key, values in result.diff:
            diff.add_row(key, *(_value(v) for v in values))
        tables.show(diff, console)
    else:
        console.print("the runs' specs are identical", highlight=False)
    metrics = tables.table([("metric", ID), *((n, NUMBER) for n in names)])
    last = [r.rows[-1] if r.rows else {} for r in result.runs]
    terms = [column("val", t) for t in terms_of(k for row in last for k in row)]
    lines: list[tuple[str, list[str]]] = [
        ("status", [r.status for r in result.runs]),
        ("epochs", [f"{r.epochs_done}/{'?' if r.epochs is None else r.epochs}"
                    for r in result.runs]),
        ("best val_loss", [_num(r.val_loss) for r in result.runs]),
        ("best epoch", [_num(r.best_epoch, "d") for r in result.runs]),
        ("final train_loss", [_num(row.get("train_loss")) for row in last]),
        ("final val_loss", [_num(r.last_val_loss) for r in result.runs]),
        *((f"final {t}", [_num(row.get(t)) for row in last]) for t in terms),
        ("time", [duration(r.seconds) for r in result.runs]),
        ("params", [_num(r.params, ",") for r in result.runs]),
    ]
    for label, values in lines:
        metrics.add_row(label, *values)
    tables.show(metrics, console)
    for note in result.notes:
        say(f"note: {note}")
    if result.picture is not None:
        say(f"wrote {result.picture} (val_loss of {len(names)} runs)")


def plot_command(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run directory.",
                                   autocompletion=complete.run_dirs),
    out: Path | None = typer.Option(
        None, help="The PNG to write [default: RUN/images/curves.png, redrawn in place]."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Draw a run's loss curves from its metrics.jsonl (finished or still training): train
    and val loss, each loss term, the learning rate, the best epoch marked."""
    from aezoo.curves import write_picture
    from aezoo.plotting import plot
    from aezoo.rundir import CURVES_FILE, IMAGES_DIR

    picture = plot(run_dir, out=out, force=force)
    target = out if out is not None else run_dir / IMAGES_DIR / CURVES_FILE
    if out is None:  # the run's own picture, which training redraws anyway: no --force
        target.parent.mkdir(exist_ok=True)  # a run trained with --no-images has none
        write_picture(target, picture)
    say(f"wrote {target}")


def register(app: typer.Typer) -> None:
    app.command("runs")(runs_command)
    app.command("compare")(compare_command)
    app.command("plot")(plot_command)
