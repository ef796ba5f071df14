"""``aezoo eval``, ``aezoo reconstruct`` and ``aezoo encode``: use a trained model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from aezoo.cli._common import console

MODEL_HELP = "A model file, or a run directory (its model.safetensors, else last.safetensors)."
DATA_HELP = "Dataset name [default: the run's dataset (run.json beside the model), else mnist5k]."
SPLIT_HELP = "test, val or train [default: test where the dataset has one, else val]."
SPLITS = ("test", "val", "train")


@dataclass
class Loaded:
    """A model on its device and the uint8 images of one split."""

    model: Any
    path: Path
    data_name: str
    split: str
    images: Any  # torch.Tensor (N, C, H, W) uint8 on the model's device
    labels: Any  # numpy array or None
    memory_format: Any


def load_split(target: Path, data: str | None, split: str | None, limit: int | None,
               device: str) -> Loaded:
    """The model and the images it should see, checked for a matching shape."""
    import torch

    import aezoo
    from aezoo.data import load_dataset
    from aezoo.device import resolve_device
    from aezoo.errors import ShapeError, UsageError
    from aezoo.protocols import format_shape
    from aezoo.rundir import data_spec_beside, model_path
    from aezoo.tensors import preferred_memory_format

    if split is not None and split not in SPLITS:
        raise UsageError(f"unknown split '{split}'", "use test, val or train")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be positive (got {limit})", "pass --limit 1 or more")
    dev = resolve_device(device)
    path = model_path(target)
    model = aezoo.load(path, device=dev)
    data_spec = data_spec_beside(path, data)
    dataset = load_dataset(data_spec)
    test = getattr(dataset, "test", None)
    split = split or ("test" if test is not None else "val")
    if split == "test" and test is None:
        raise UsageError(f"dataset {dataset.name} has no test split", "use --split val")
    arrays: dict[str, tuple[Any, Any]] = {
        "train": (dataset.train, dataset.train_labels),
        "val": (dataset.val, dataset.val_labels),
        "test": (test, getattr(dataset, "test_labels", None))}
    images, labels = arrays[split]
    if limit is not None:
        images = images[:limit]
        labels = None if labels is None else labels[:limit]
    shape = tuple(images.shape[1:])
    if shape != tuple(model.input_shape):
        raise ShapeError(f"{path} expects {format_shape(model.input_shape)} images, "
                         f"dataset {dataset.name} has {format_shape(shape)}",
                         "pass the --data the model was trained on")
    memory_format = preferred_memory_format(dev)
    model.to(memory_format=memory_format)  # type: ignore[call-overload]
    tensor = torch.from_numpy(images.copy()).to(dev)
    return Loaded(model, path, dataset.name, split, tensor, labels, memory_format)


def _refuse_overwrite(path: Path, force: bool) -> None:
    from aezoo.errors import OutputExistsError

    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists", "choose another --out, or pass --force")


def eval_command(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    data: str | None = typer.Option(None, help=DATA_HELP),
    split: str | None = typer.Option(None, help=SPLIT_HELP),
    limit: int | None = typer.Option(None, help="Evaluate at most N images."),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, help="Images per batch."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Evaluate a model: MSE, BCE, PSNR (dB), SSIM, loss, images/s and parameter count.

    Metrics are per-image means over the split; SSIM uses an 11x11 Gaussian window with
    sigma 1.5 (Wang et al. 2004). See docs/training.md for the exact definitions.
    """
    from rich.table import Table

    from aezoo.metrics import evaluate

    loaded = load_split(model, data, split, limit, device)
    result = evaluate(loaded.model, loaded.images, batch_size, loaded.memory_format)
    report = {"model": str(loaded.path), "data": loaded.data_name, "split": loaded.split,
              "device": str(loaded.images.device), **result.as_dict()}
    if as_json:
        typer.echo(json.dumps(report))
        return
    console.print(f"{loaded.path} on {loaded.data_name}/{loaded.split} "
                  f"({result.images:,} images, {report['device']})", highlight=False,
                  soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in (("MSE", f"{result.mse:.6f}"), ("BCE", f"{result.bce:.6f}"),
                         ("PSNR (dB)", f"{result.psnr:.3f}"), ("SSIM", f"{result.ssim:.4f}"),
                         (f"loss ({loaded.model.spec.loss.name})", f"{result.loss:.6f}"),
                         ("images/s", f"{result.images_per_s:,.0f}"),
                         ("parameters", f"{result.params:,}")):
        table.add_row(label, value)
    console.print(table)


def reconstruct_command(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    n: int = typer.Option(10, "--n", min=1, max=1000, help="Number of images."),
    data: str | None = typer.Option(None, help=DATA_HELP),
    split: str | None = typer.Option(None, help=SPLIT_HELP),
    out: Path = typer.Option(Path("recon.png"), help="PNG file to write."),
    scale: int = typer.Option(2, min=1, max=16, help="Enlarge each pixel this many times."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
) -> None:
    """Draw the first N images of a split (top row) over their reconstructions (bottom row).

    Gray and RGB images; the PNG is N*W*scale + (N+1)*2 pixels wide and 2*H*scale + 6 high.
    """
    from aezoo.viz import grid, reconstruct, write_png

    _refuse_overwrite(out, force)
    loaded = load_split(model, data, split, n, device)
    recon = reconstruct(loaded.model, loaded.images, loaded.memory_format)
    picture = grid(loaded.images, recon, scale=scale)
    write_png(out, picture)
    console.print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]} px: "
                  f"{len(loaded.images)} {loaded.data_name}/{loaded.split} images over their "
                  "reconstructions)", highlight=False, soft_wrap=True)


def encode_command(
    model: Path = typer.Argument(..., help=MODEL_HELP),
    data: str | None = typer.Option(None, help=DATA_HELP),
    split: str | None = typer.Option(None, help=SPLIT_HELP),
    out: Path = typer.Option(Path("latents.npy"), help=".npy file for the latents."),
    flatten: bool = typer.Option(False, "--flatten", help="Write (N, C*H*W) instead of "
                                 "(N, C, H, W)."),
    limit: int | None = typer.Option(None, help="Encode at most N images."),
    batch_size: int = typer.Option(1024, "--batch-size", min=1, help="Images per batch."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or mps."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Encode a split to latents: OUT (float32 .npy) and, when the dataset has labels,
    OUT's stem + `.labels.npy` (int64), row i labelling latent i."""
    import numpy as np
    import torch

    from aezoo._io import atomic_write
    from aezoo.tensors import to_unit

    labels_out = out.with_name(out.name.removesuffix(".npy") + ".labels.npy")
    _refuse_overwrite(out, force)
    _refuse_overwrite(labels_out, force)
    loaded = load_split(model, data, split, limit, device)
    parts = []
    with torch.no_grad():
        loaded.model.eval()
        for s in range(0, len(loaded.images), batch_size):
            x = to_unit(loaded.images[s:s + batch_size], loaded.memory_format)
            parts.append(loaded.model.encode(x).float().cpu())
    latents = torch.cat(parts).contiguous().numpy()
    if flatten:
        latents = latents.reshape(len(latents), -1)
    atomic_write(out, _npy(latents))
    wrote = f"wrote {out} {tuple(latents.shape)} float32"
    if loaded.labels is not None:
        atomic_write(labels_out, _npy(np.asarray(loaded.labels, dtype=np.int64)))
        wrote += f" and {labels_out}"
    console.print(f"{wrote} ({loaded.data_name}/{loaded.split})", highlight=False,
                  soft_wrap=True)


def _npy(array: Any) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("reconstruct")(reconstruct_command)
    app.command("encode")(encode_command)
