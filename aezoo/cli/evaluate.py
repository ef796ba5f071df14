"""``aezoo eval``, ``aezoo reconstruct`` and ``aezoo encode``: use a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from aezoo.cli import complete, tables
from aezoo.cli._help import check_seed
from aezoo.cli.common import console, say
from aezoo.cli.tables import ID, NUMBER
from aezoo.fileio import finite_or_null

MODEL_HELP = ("A model file, a run directory (its model.safetensors, else last.safetensors), a "
              "weight set VARIANT.TAG (aezoo list --pretrained) or hf://ORG/REPO[@REV].")
DATA_HELP = "Dataset name [default: the run's dataset (run.json beside the model), else mnist5k]."
SPLIT_HELP = "test, val or train [default: test where the dataset has one, else val]."
# Declared once for the commands here, in generate.py and deploy.py (typer copies each).
MODEL = typer.Argument(..., help=MODEL_HELP, autocompletion=complete.models)
DEVICE = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps.")
CORRUPT_SEED = typer.Option(0, min=0, callback=check_seed,
                            help="Seed of --corrupt's draws (0 to 2^64-1).")


def eval_command(
    model: str = MODEL,
    data: str | None = typer.Option(None, help=DATA_HELP, autocompletion=complete.datasets),
    split: str | None = typer.Option(None, help=SPLIT_HELP),
    limit: int | None = typer.Option(None, help="Evaluate at most N images."),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, help="Images per batch."),
    device: str = DEVICE,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    corrupt: str | None = typer.Option(
        None, metavar="TRANSFORM", help="Corrupt the inputs (e.g. gaussian; the run's own "
        "params if it trained with it) and measure against the clean images: denoising."),
    seed: int = CORRUPT_SEED,
    metric: list[str] | None = typer.Option(
        None, "--metric", metavar="NAME", help="A plugin metric to report (repeatable) "
        "[default: every installed one; a failing one is left out with a warning]; "
        "--metric none reports none."),
) -> None:
    """Evaluate a model: MSE, BCE, PSNR (dB), SSIM, loss, images/s and parameter count.

    Metrics are per-image means over the split; SSIM uses an 11x11 Gaussian window with
    sigma 1.5 (Wang et al. 2004), so it is n/a (null in JSON) for smaller images. Numbers
    that are not finite (NaN weights) are null in JSON. See docs/training.md.
    """
    from aezoo.using import evaluation

    chosen = None if not metric else [m for m in metric if m != "none"]
    loaded, result, report = evaluation(model, data, split, limit, batch_size, device,
                                        corrupt, seed, chosen)
    if as_json:
        typer.echo(json.dumps(finite_or_null(report), allow_nan=False))
        return
    say(f"{loaded.path} on {loaded.data_name}/{loaded.split} "
        f"({result.images:,} images, {report['device']})")
    table = tables.table([("metric", ID), ("value", NUMBER)])
    rows = [("MSE", f"{result.mse:.6f}"), ("BCE", f"{result.bce:.6f}"),
            ("PSNR (dB)", f"{result.psnr:.3f}")]
    if result.input_psnr is not None:
        rows += [(f"PSNR of the {result.corrupt} input (dB)", f"{result.input_psnr:.3f}"),
                 ("PSNR gain (dB)", f"{result.psnr - result.input_psnr:+.3f}")]
    rows += [("SSIM", "n/a" if result.ssim is None else f"{result.ssim:.4f}"),
             (f"loss ({loaded.model.spec.loss.name})",
              "n/a" if result.loss is None else f"{result.loss:.6f}"),
             *((f"  {name}", f"{value:.6f}") for name, value in result.terms.items()),
             *((name, f"{value:.6f}") for name, value in result.metrics.items()),
             ("images/s", f"{result.images_per_s:,.0f}"), ("parameters", f"{result.params:,}")]
    for label, value in rows:
        table.add_row(label, value)
    tables.show(table, console)
    for note in result.notes:
        say(f"note: {note}")


def reconstruct_command(
    model: str = MODEL,
    n: int = typer.Option(10, "--n", min=1, max=1000, help="Number of images."),
    rows: int = typer.Option(1, "--rows", min=1, max=100, help="Split the images into R "
                             "bands stacked top to bottom (e.g. --n 100 --rows 10)."),
    data: str | None = typer.Option(None, help=DATA_HELP, autocompletion=complete.datasets),
    split: str | None = typer.Option(None, help=SPLIT_HELP),
    out: Path = typer.Option(Path("recon.png"), help="PNG file to write (.png)."),
    scale: int | None = typer.Option(
        None, min=1, max=16, help="Enlarge each pixel this many times [default: 4 for "
        "images up to 32x32, else 2]."),
    caption: bool = typer.Option(False, "--caption", help="A line above the picture: the "
                                 "run, its epoch and the PSNR of the images shown."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
    corrupt: str | None = typer.Option(
        None, metavar="TRANSFORM", help="Three rows: the corrupted inputs, their "
        "reconstructions, the clean images (e.g. gaussian)."),
    seed: int = CORRUPT_SEED,
    no_labels: bool = typer.Option(False, "--no-labels", help="No margin naming the rows: "
                                   "the bare grid."),
) -> None:
    """Draw the first N images of a split (top row) over their reconstructions (bottom row).

    Each row is named in a margin on the left (original, reconstruction; with --corrupt:
    corrupted, reconstruction, original). Gray and RGB images; with --rows 1 the grid is
    `N*W*scale + (N+1)*2` pixels wide (plus the margin, ~100 px; --no-labels: none) and
    `2*H*scale + 6` high (`3*H*scale + 8` with --corrupt); --rows R stacks R such bands of
    ceil(N/R) images, 4 pixels apart.
    """
    from aezoo.api import reconstruct

    picture = reconstruct(model, n, rows, data, split, out, scale, caption, device, force,
                          corrupt, seed, labels=not no_labels)
    h, w = picture.shape[:2]
    say(f"wrote {out} ({w}x{h} px: {picture.description})")


def encode_command(
    model: str = MODEL,
    data: str | None = typer.Option(None, help=DATA_HELP, autocompletion=complete.datasets),
    split: str | None = typer.Option(None, help=SPLIT_HELP),
    out: Path = typer.Option(Path("latents.npy"), help="NAME.npy (the latents; labels in "
                             "NAME.labels.npy) or NAME.npz (arrays latents and labels)."),
    flatten: bool = typer.Option(False, "--flatten", help="Write (N, C*H*W) instead of "
                                 "(N, C, H, W)."),
    limit: int | None = typer.Option(None, help="Encode at most N images."),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, help="Images per batch."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    output: str = typer.Option("mean", metavar="mean|logvar|sample|EXTRA", help="The code "
                               "(a VAE's mean), a VAE's log-variance, a sample, or any other "
                               "tensor the encoder returns by name (e.g. codebook indices)."),
    seed: int = typer.Option(0, min=0, callback=check_seed, help="Seed of --output sample (0 to "
                             "2^64-1)."),
    plot: Path | None = typer.Option(None, help="Also draw the latent space to this PNG: the "
                                     "codes projected to 2-D, coloured by label."),
    projection: str = typer.Option("pca", metavar="pca|umap|tsne", help="How --plot projects "
                                   "the codes: pca (always), umap (pip install umap-learn), "
                                   "tsne (pip install scikit-learn)."),
) -> None:
    """Encode a split to latents (float32) and, when the dataset has labels, their labels
    (int64, row i labelling latent i): OUT.npy plus OUT's stem + `.labels.npy`, or one
    OUT.npz holding arrays `latents` and `labels`."""
    from aezoo.api import encode

    encoded = encode(model, data, split, out, flatten, limit, batch_size, device, force,
                     output, seed, plot, projection)
    latents, labels, class_names = encoded.latents, encoded.labels, encoded.class_names
    labels_out = next((f for f in encoded.files[1:] if f != plot), None)  # out, labels, plot
    wrote = f"wrote {out} {tuple(latents.shape)} float32"
    if labels_out is not None:
        wrote += f" and {labels_out}"
    elif labels is not None:
        wrote += " with its labels"
    if labels is not None and class_names:
        wrote += f" (classes {', '.join(f'{k}={n}' for k, n in enumerate(class_names))})"
    say(f"{wrote} ({encoded.data}/{encoded.split})")
    if plot is not None:
        say(f"wrote {plot} (the codes projected to 2-D by {projection}, coloured by label)")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("reconstruct")(reconstruct_command)
    app.command("encode")(encode_command)
