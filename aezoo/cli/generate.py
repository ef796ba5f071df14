"""``aezoo sample`` and ``aezoo interpolate``: pictures decoded from a model's latent space."""

from __future__ import annotations

from pathlib import Path

import typer

from aezoo.cli import _complete
from aezoo.cli._common import console

MODEL_HELP = ("A model file, a run directory (its model.safetensors, else last.safetensors), a "
              "weight set VARIANT.TAG (aezoo list --pretrained) or hf://ORG/REPO[@REV].")


def sample_command(
    model: str = typer.Argument(..., help=MODEL_HELP,
                                autocompletion=_complete.models),
    n: int = typer.Option(64, "--n", help="Number of draws."),
    seed: int = typer.Option(0, min=0, max=2**64 - 1,
                             help="Seed of the draws (the same seed, the same picture)."),
    out: Path = typer.Option(Path("samples.png"), help="PNG file to write."),
    scale: int = typer.Option(2, min=1, max=16, help="Enlarge each pixel this many times."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Decode N draws from the prior N(0, I) of a variational model (e.g. cae-vae) into a
    grid of ceil(sqrt(N)) columns."""
    import math

    import aezoo
    from aezoo.evaluation import refuse_overwrite
    from aezoo.generation import sample
    from aezoo.viz import check_picture, grid, grid_size, write_png

    refuse_overwrite(out, force)
    loaded = aezoo.load(model, device=device)
    cols = math.ceil(math.sqrt(n))
    _, h, w = loaded.spec.input_shape
    if n >= 1:  # refused before any draw is decoded
        check_picture(*grid_size(math.ceil(n / cols), cols, h, w, scale))
    images = sample(loaded, n, seed)
    rows = [images[i:i + cols] for i in range(0, n, cols)]
    if len(rows[-1]) < cols:  # pad the last row with blank cells
        import torch

        pad = torch.full((cols - len(rows[-1]), *images.shape[1:]), 255, dtype=torch.uint8,
                         device=images.device)
        rows[-1] = torch.cat([rows[-1], pad])
    picture = grid(*rows, scale=scale)
    write_png(out, picture)
    console.print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px: {n} draws from "
                  f"the prior, seed {seed})", highlight=False, soft_wrap=True)


def interpolate_command(
    model: str = typer.Argument(..., help=MODEL_HELP,
                                autocompletion=_complete.models),
    from_: int = typer.Option(0, "--from", help="Index of the first image in the split."),
    to: int = typer.Option(1, "--to", help="Index of the last image in the split."),
    steps: int = typer.Option(10, help="Images on the line, both ends included."),
    data: str | None = typer.Option(None, help="Dataset [default: the run's]."),
    split: str | None = typer.Option(None, help="test, val or train [default: test, else "
                                     "val]."),
    out: Path = typer.Option(Path("interpolation.png"), help="PNG file to write."),
    scale: int = typer.Option(2, min=1, max=16, help="Enlarge each pixel this many times."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Decode the straight line between two images' codes: a strip from image FROM to
    image TO of a split."""
    from aezoo.errors import UsageError
    from aezoo.evaluation import load_split, refuse_overwrite
    from aezoo.generation import interpolate
    from aezoo.viz import grid, write_png

    refuse_overwrite(out, force)
    loaded = load_split(model, data, split, None, device)
    count = len(loaded.images)
    for flag, index in (("--from", from_), ("--to", to)):
        if not 0 <= index < count:
            raise UsageError(f"{flag} {index} is not an image of {loaded.data_name}/"
                             f"{loaded.split}", f"use 0 to {count - 1}")
    strip = interpolate(loaded.model, loaded.images[from_], loaded.images[to], steps)
    picture = grid(strip, scale=scale)
    write_png(out, picture)
    console.print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px: {steps} steps "
                  f"from image {from_} to image {to} of {loaded.data_name}/{loaded.split})",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
    app.command("interpolate")(interpolate_command)
