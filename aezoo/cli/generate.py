"""``aezoo sample`` and ``aezoo interpolate``: pictures decoded from a model's latent space."""

from __future__ import annotations

from pathlib import Path

import typer

from aezoo.cli._help import check_seed
from aezoo.cli.common import say
from aezoo.cli.evaluate import DEVICE, MODEL


def sample_command(
    model: str = MODEL,
    n: int = typer.Option(64, "--n", help="Number of draws."),
    seed: int = typer.Option(0, min=0, callback=check_seed,
                             help="Seed of the draws (0 to 2^64-1; the same seed, the same "
                             "picture)."),
    out: Path = typer.Option(Path("samples.png"), help="PNG file to write."),
    scale: int = typer.Option(2, min=1, max=16, help="Enlarge each pixel this many times."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Decode N draws from the prior N(0, I) of a variational model (e.g. cae-vae) into a
    grid of ceil(sqrt(N)) columns."""
    from aezoo.api import sample

    picture = sample(model, n, seed, out, scale, device, force)
    h, w = picture.shape[:2]
    say(f"wrote {out} ({w}x{h} px: {picture.description})")


def interpolate_command(
    model: str = MODEL,
    from_: int = typer.Option(0, "--from", help="Index of the first image in the split."),
    to: int = typer.Option(1, "--to", help="Index of the last image in the split."),
    steps: int = typer.Option(10, help="Images on the line, both ends included."),
    data: str | None = typer.Option(None, help="Dataset [default: the run's]."),
    split: str | None = typer.Option(None, help="test, val or train [default: test, else "
                                     "val]."),
    out: Path = typer.Option(Path("interpolation.png"), help="PNG file to write."),
    scale: int = typer.Option(2, min=1, max=16, help="Enlarge each pixel this many times."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Decode the straight line between two images' codes: a strip from image FROM to
    image TO of a split."""
    from aezoo.api import interpolate

    picture = interpolate(model, from_, to, steps, data, split, out, scale, device, force)
    h, w = picture.shape[:2]
    say(f"wrote {out} ({w}x{h} px: {picture.description})")


def register(app: typer.Typer) -> None:
    app.command("sample")(sample_command)
    app.command("interpolate")(interpolate_command)
