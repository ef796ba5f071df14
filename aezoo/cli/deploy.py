"""``aezoo export`` and ``aezoo score``: use a trained model elsewhere (docs/deploy.md)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import typer

from aezoo.cli import tables
from aezoo.cli.common import console, say
from aezoo.cli.evaluate import DATA_HELP, DEVICE, MODEL, SPLIT_HELP
from aezoo.cli.tables import ID, NUMBER

SHOWN = 20  # flagged images listed on the terminal; all of them are in --out


def export_command(
    model: str = MODEL,
    format: str | None = typer.Option(None, "--format", metavar="onnx|torchscript",
                                      help="[default: from --out's extension, else onnx]"),
    part: str | None = typer.Option(None, metavar="encoder|decoder|model",
                                    help="One part only [default: all three]."),
    out: Path | None = typer.Option(None, help="The file (NAME.onnx or NAME.pt); with all "
                                    "parts, the model's, with NAME.encoder.EXT and "
                                    "NAME.decoder.EXT beside it [default: model.onnx]."),
    data: str | None = typer.Option(None, help="Verify on this dataset's first validation "
                                    "images [default: the run's, else noise]."),
    opset: int | None = typer.Option(None, min=7, help="ONNX opset [default: the exporter's]."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Export the encoder, the decoder and the whole model to ONNX or TorchScript, with a
    JSON sidecar (OUT.json: spec, shapes, value range, opset, versions).

    Inputs are float32 NCHW images in [0, 1] with a dynamic batch axis; outputs are codes
    (a VAE's mean as `latent`, with `logvar`) or reconstructions in [0, 1]. Each file is
    run (onnxruntime, or the traced TorchScript graph) on 16 images at batch sizes
    16 and 5 and must match PyTorch within 1e-4 + 1e-3*|value|, else nothing is written.
    ONNX needs `pip install 'aezoo[onnx]'`.
    """
    from aezoo.api import export

    result = export(model, format, part, out, data, opset, force)
    info = result.info
    diffs = info["verification"]["max_abs_diff"]
    table = tables.table([("part", ID), ("file", ID), ("max |diff| vs PyTorch", NUMBER)])
    for name, path in result.files.items():
        table.add_row(name, str(path), f"{diffs[name]:.2g}")
    tables.show(table, console)
    opset_note = f", opset {info['opset']}" if info["opset"] is not None else ""
    say(f"wrote {result.sidecar} ({info['format']}{opset_note}; verified on "
        f"{info['verification']['inputs']})")


def score_command(
    model: str = MODEL,
    data: str | None = typer.Option(None, help=DATA_HELP),
    split: str | None = typer.Option(None, help=SPLIT_HELP),
    metric: str | None = typer.Option(None, metavar="mse|bce|ssim", help="Per-image error "
                                      "(ssim: 1 - SSIM) [default: the model's loss]."),
    out: Path = typer.Option(Path("scores.csv"), help="NAME.csv (index,label,score[,flagged]),"
                             " NAME.json or NAME.npy (the scores alone)."),
    threshold_percentile: float | None = typer.Option(
        None, "--threshold-percentile", metavar="P", help="Flag images scoring above the "
        "P-th percentile of the validation split's scores."),
    outlier_label: list[int] = typer.Option([], "--outlier-label", metavar="LABEL",
                                            help="A label of known outliers (repeatable): "
                                            "report the ROC AUC."),
    top: int = typer.Option(0, "--top", min=0, max=1000, metavar="K",
                            help="List the K worst images."),
    picture: Path | None = typer.Option(None, help="With --top K: a PNG of the K worst "
                                        "(image / reconstruction / error map rows, each "
                                        "tile's index and score under it)."),
    limit: int | None = typer.Option(None, help="Score at most N images."),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, help="Images per batch."),
    device: str = DEVICE,
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Score every image of a split by its reconstruction error (higher: more unusual).

    Scores are the per-image values `aezoo eval` averages. The error map of --picture is
    |image - reconstruction|, scaled so the largest error shown is white.
    """
    from aezoo.api import score

    result = score(model, data, split, metric, out, threshold_percentile, outlier_label, top,
                   picture, limit, batch_size, device, force)
    summary = result.summary()
    say(f"{result.model} on {result.data_name}/{result.split}: {len(result.scores):,}"
        f" images, {result.metric} mean {summary['mean']:.6f}; wrote {out}")
    if result.auc is not None:
        labels = ", ".join(map(str, result.outlier_labels))
        console.print(f"ROC AUC {result.auc:.4f} (outliers: label {labels})", highlight=False)
    if result.flagged is not None:
        say(f"threshold {result.threshold:.6f} (val percentile {result.percentile:g}):"
            f" {len(result.flagged):,} flagged")
        _rows(result, result.flagged[:SHOWN], "flagged, highest score first")
        if len(result.flagged) > SHOWN:
            say(f"... and {len(result.flagged) - SHOWN:,} more, all in {out}")
    if top:
        if result.picture is not None:
            from aezoo.viz import png_size

            w, h = png_size(result.picture)
            say(f"wrote {result.picture} ({w}x{h} px: the {min(top, len(result.scores))}"
                " worst: image / reconstruction / error map, each with its index and "
                "score)")
        order = sorted(range(len(result.scores)), key=lambda i: -result.scores[i])[:top]
        _rows(result, order, f"top {top}")


def _rows(result: Any, indices: Iterable[Any], title: str) -> None:
    table = tables.table([("index", NUMBER), ("label", NUMBER), ("score", NUMBER)],
                         title=title)
    for i in indices:
        label = "" if result.labels is None else str(int(result.labels[i]))
        table.add_row(str(int(i)), label, f"{result.scores[i]:.6f}")
    tables.show(table, console)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("score")(score_command)

