"""``aezoo train``: flags and spec files -> a validated RunSpec -> a training run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from aezoo.cli._common import console, usage_error, warn

HELP = """Train a variant and save it as DIR/model.safetensors.

Settings come, later winning, from the variant's defaults, `--config FILE` (TOML, YAML
or JSON), the flags below, then each `--set KEY=VALUE` (a dotted path into the run spec;
VALUE is JSON, else a string).

Writes into the output directory: `run.json` (the resolved run spec), `metrics.jsonl`
and `metrics.csv` (one row per epoch), `last.safetensors`, `best.safetensors` (lowest
val_loss), `state.safetensors` (for `--resume`), `images/epoch-NNNN.png` (originals over
reconstructions) and, when training finishes, `model.safetensors` (the final weights).

Ctrl-C stops after the current step, saves the state and exits with code 130;
`aezoo train --resume DIR` continues exactly where it stopped. Under
`torchrun --nproc-per-node N -m aezoo train ...` each process trains on its shard.

Examples:

    aezoo train cae-upsample --epochs 5

    aezoo train cae-strided --loss bce --device cuda --out runs/strided-bce

    aezoo train cae-upsample --set model.encoder.params.channels=[32,16,8] --set train.optimizer=sgd

    aezoo train cae-upsample --scheduler cosine --warmup 100 --patience 5 --checkpoint-every 200

    aezoo train --resume runs/cae-upsample-20250101-120000
"""


def train_command(
    name: str | None = typer.Argument(None, help="Variant to train (see `aezoo list`)."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda, cuda:N or mps."),
    epochs: int | None = typer.Option(None, help="Number of epochs."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    lr: float | None = typer.Option(None, help="Learning rate."),
    loss: str | None = typer.Option(None, help="Loss component, e.g. bce or mse."),
    seed: int | None = typer.Option(None, help="Random seed (init, shuffling)."),
    data: str | None = typer.Option(
        None, help="Dataset: mnist5k (embedded, default), mnist, fashion-mnist, kmnist, "
        "cifar10, folder:PATH, npz:PATH or npy:PATH (see `aezoo data list`)."),
    limit: int | None = typer.Option(None, help="Use at most N training images."),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction", help="Share of train held out for validation, stratified by "
        "label [default: 0.1]."),
    image_size: str | None = typer.Option(
        None, "--image-size", metavar="N|HxW", help="Resize every image (needed when a "
        "folder's images differ in size)."),
    channels: int | None = typer.Option(
        None, "--channels", metavar="1|3", help="Convert images to grey (1) or RGB (3)."),
    out: Path | None = typer.Option(None, help="Output directory [default: runs/NAME-TIME]."),
    config: Path | None = typer.Option(None, help="Run spec file: .toml, .yaml or .json."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Override any spec value, e.g. train.lr=0.01."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing model file."),
    resume: Path | None = typer.Option(
        None, "--resume", metavar="RUN_DIR",
        help="Continue an interrupted run from RUN_DIR/state.safetensors (settings from its "
        "run.json; --epochs, --device, --lr and the switches below may change)."),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", metavar="N",
        help="Also checkpoint every N optimiser steps (always at each epoch end)."),
    scheduler: str | None = typer.Option(
        None, help="Learning-rate schedule: none, cosine, step or onecycle."),
    warmup: int | None = typer.Option(None, metavar="STEPS", help="Linear warm-up steps."),
    grad_clip: float | None = typer.Option(
        None, "--grad-clip", metavar="NORM", help="Clip the global gradient norm to NORM."),
    patience: int | None = typer.Option(
        None, metavar="EPOCHS", help="Early stopping: epochs without a better val_loss."),
    precision: str | None = typer.Option(
        None, metavar="32|bf16|16", help="Autocast precision (16 uses a GradScaler; GPU only)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the training step."),
    channels_last: bool | None = typer.Option(
        None, "--channels-last/--no-channels-last",
        help="NHWC memory layout [default: on for CPU, off elsewhere]."),
    no_images: bool = typer.Option(
        False, "--no-images", help="Do not write a reconstruction grid each epoch."),
    callback: list[str] = typer.Option(
        [], "--callback", metavar="NAME",
        help="Enable a callback from the aezoo.callbacks entry points, e.g. tensorboard."),
) -> None:
    from aezoo.config import build_run_spec, parse_assignment
    from aezoo.run import train
    from aezoo.specfile import read_config

    switches: dict[str, Any] = {
        "checkpoint_every": checkpoint_every, "scheduler": scheduler, "warmup": warmup,
        "grad_clip": grad_clip, "patience": patience, "precision": precision,
        "compile": True if compile_ else None, "channels_last": channels_last,
        "images": False if no_images else None, "callbacks": callback or None,
    }
    switches = {k: v for k, v in switches.items() if v is not None}
    from aezoo.trainer import flush_denormals

    flush_denormals()  # first, before any torch op starts the CPU thread pool
    if resume is not None:
        _resume(resume, {**switches, **{k: v for k, v in (
            ("epochs", epochs), ("device", device), ("lr", lr)) if v is not None}},
            fresh_only={"NAME": name, "--batch-size": batch_size, "--loss": loss,
                        "--seed": seed, "--data": data, "--limit": limit, "--out": out,
                        "--val-fraction": val_fraction, "--image-size": image_size,
                        "--channels": channels,
                        "--config": config, "--set": set_ or None,
                        "--force": force or None})
        return

    layers: list[dict[str, Any]] = []
    if config is not None:
        layers.append(read_config(config))
    flags: dict[str, Any] = {}
    for key, value in (("device", device), ("epochs", epochs), ("batch_size", batch_size),
                       ("lr", lr), ("seed", seed)):
        if value is not None:
            flags.setdefault("train", {})[key] = value
    if loss is not None:
        flags["model"] = {"loss": {"name": loss}}
    for key, value in (("name", data), ("limit", limit), ("val_fraction", val_fraction),
                       ("image_size", image_size), ("channels", channels)):
        if value is not None:
            flags.setdefault("data", {})[key] = value
    if switches:
        flags.setdefault("train", {}).update(switches)
    layers.append(flags)
    layers.extend(parse_assignment(item) for item in set_)
    spec = build_run_spec(name, layers)
    # A shape given with --set is kept (a mismatch with the data is an error). Otherwise
    # it follows the data: a variant's default, or the one `aezoo config` wrote to a file.
    fixed_shape = any(item.split("=", 1)[0].strip() == "model.input_shape" for item in set_)

    from aezoo.cli.data import progress_bars
    from aezoo.cli.progress import ProgressCallback
    from aezoo.doctor import preflight

    with progress_bars() as progress:  # a shape the model cannot serve fails before a download
        preflight(spec, progress)
    _report(lambda: train(spec, out, force=force, callbacks=[ProgressCallback(console)],
                          follow_data=not fixed_shape))


def _resume(run_dir: Path, overrides: dict[str, Any], fresh_only: dict[str, Any]) -> None:
    from aezoo.cli.progress import ProgressCallback
    from aezoo.run import resume

    given = [flag for flag, value in fresh_only.items() if value is not None]
    if given:
        raise usage_error(f"{', '.join(given)} cannot be combined with --resume",
                          "a resumed run keeps its run.json; start a new run to change them")
    _report(lambda: resume(run_dir, overrides, callbacks=[ProgressCallback(console)]))


def _report(run: Callable[[], Any]) -> None:
    """Run, then one line about the result; an interrupt is a warning with exit 130/143."""
    from aezoo.trainer import TrainingInterrupted

    try:
        result = run()
    except TrainingInterrupted as exc:
        from aezoo.distributed import from_env

        if from_env().is_main:  # under torchrun every rank stops; one of them says so
            warn(str(exc))
        raise typer.Exit(exc.exit_code) from None
    if result.rank != 0:
        return
    last = result.history[-1] if result.history else None
    loss = f"val_loss {last.val_loss:.5f}; " if last else ""
    stop = f" ({result.stop_reason})" if result.stop_reason else ""
    console.print(f"saved {result.model_path}{stop} ({loss}metrics in "
                  f"{result.out_dir / 'metrics.jsonl'})", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train_command)
