"""``aezoo bench``: the zoo leaderboard on one dataset, budget and set of seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from aezoo.cli import complete, tables
from aezoo.cli.common import console, say, warn
from aezoo.cli.tables import ID, NUMBER


def _cell(row: dict[str, Any], key: str, fmt: str, seeds: int) -> str:
    value, spread = row.get(key), row.get(f"{key}_spread")
    if value is None:
        return "—"
    text = format(value, fmt)
    return f"{text} ± {format(spread, fmt)}" if seeds > 1 and spread is not None else text


def bench_command(
    patterns: list[str] | None = typer.Argument(
        None, metavar="PATTERN", help="Variant names or fnmatch patterns, e.g. "
        "'cae-*' [default: every installed variant].", autocompletion=complete.variants),
    data: str = typer.Option("mnist5k", metavar="NAME", help="Dataset (see `aezoo data "
                             "list`).", autocompletion=complete.datasets),
    epochs: int = typer.Option(5, min=1, metavar="N", help="Epochs for every run."),
    seeds: int = typer.Option(1, min=1, max=100, metavar="K", help="Seeds 0..K-1 per variant."),
    limit: int | None = typer.Option(None, min=1, metavar="N",
                                     help="Use at most N training images [default: all]."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, metavar="N",
                                          help="Images per step [default: each variant's]."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    out: Path = typer.Option(Path("bench"), metavar="DIR", help="Bench directory."),
    force: bool = typer.Option(False, "--force", help="Train every run again."),
    as_json: bool = typer.Option(False, "--json", help="Print bench.json's summary as JSON."),
) -> None:
    """Train every variant matching a PATTERN (default: all) on the same data, budget
    and seeds, evaluate each on the same split (what `aezoo eval` reports), and rank them by
    PSNR (each variant's val_loss is its own loss, so it does not rank across losses).

    Writes OUT/VARIANT/seed-K (ordinary run directories), OUT/bench.json (settings, each
    run's numbers, the per-variant mean and spread) and OUT/bench.png (PSNR against
    parameters and against training time). Run the same command again after an interruption:
    finished runs are reused, an interrupted one is resumed.

    Examples:

    - `aezoo bench --data mnist5k --epochs 10 --seeds 3`
    - `aezoo bench cae-upsample 'cae-s*' --epochs 2 --limit 1024 --out bench/quick`
    """
    from aezoo.api import bench
    from aezoo.training import TrainingInterrupted

    try:
        result = bench(patterns, data, epochs, seeds, limit, batch_size, device, out, force,
                       verbose=0 if as_json else 1)
    except TrainingInterrupted as exc:
        warn(f"{exc.problem}; run the same `aezoo bench` command again to go on (finished "
             "runs are reused)")
        raise typer.Exit(exc.exit_code) from None
    if as_json:
        typer.echo(json.dumps({"settings": result.settings, "summary": result.summary},
                              allow_nan=False))
        return
    table = tables.table([("#", NUMBER), ("variant", ID), ("params", NUMBER),
                          ("val_loss", NUMBER), ("MSE", NUMBER), ("PSNR dB", NUMBER),
                          ("SSIM", NUMBER), ("train img/s", NUMBER), ("time s", NUMBER)])
    for rank, row in enumerate(result.summary, 1):
        table.add_row(str(rank), row["variant"],
                      "—" if row["params"] is None else f"{row['params']:,}",
                      _cell(row, "val_loss", ".4f", seeds), _cell(row, "mse", ".5f", seeds),
                      _cell(row, "psnr", ".2f", seeds), _cell(row, "ssim", ".4f", seeds),
                      _cell(row, "train_images_per_s", ",.0f", seeds),
                      _cell(row, "seconds", ".1f", seeds))
    tables.show(table, console)
    say(f"wrote {out / 'bench.json'} and {result.picture}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
