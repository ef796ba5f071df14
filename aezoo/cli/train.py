"""``aezoo train``: flags and spec files -> a validated RunSpec -> a training run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from aezoo.cli._common import console

HELP = """Train a variant and save it as DIR/model.safetensors.

Settings come, later winning, from the variant's defaults, `--config FILE` (TOML, YAML
or JSON), the flags below, then each `--set KEY=VALUE` (a dotted path into the run spec;
VALUE is JSON, else a string).

Writes into the output directory: `model.safetensors` (weights + spec), `metrics.jsonl`
(one line per epoch) and `run.json` (the resolved run spec).

Examples:

    aezoo train cae-upsample --epochs 5

    aezoo train cae-strided --loss bce --device cuda --out runs/strided-bce

    aezoo train cae-upsample --set model.encoder.params.channels=[32,16,8] --set train.optimizer=sgd
"""


def train_command(
    name: str | None = typer.Argument(None, help="Variant to train (see `aezoo list`)."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda, cuda:N or mps."),
    epochs: int | None = typer.Option(None, help="Number of epochs."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step."),
    lr: float | None = typer.Option(None, help="Learning rate."),
    loss: str | None = typer.Option(None, help="Loss component, e.g. bce or mse."),
    seed: int | None = typer.Option(None, help="Random seed (init, shuffling)."),
    data: str | None = typer.Option(None, help="Dataset name (default: mnist5k, embedded)."),
    limit: int | None = typer.Option(None, help="Use at most N training images."),
    out: Path | None = typer.Option(None, help="Output directory [default: runs/NAME-TIME]."),
    config: Path | None = typer.Option(None, help="Run spec file: .toml, .yaml or .json."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Override any spec value, e.g. train.lr=0.01."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing model file."),
) -> None:
    from aezoo.config import build_run_spec, parse_assignment, read_config
    from aezoo.run import train

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
    for key, value in (("name", data), ("limit", limit)):
        if value is not None:
            flags.setdefault("data", {})[key] = value
    layers.append(flags)
    layers.extend(parse_assignment(item) for item in set_)
    spec = build_run_spec(name, layers)

    from aezoo.cli.progress import ProgressCallback
    from aezoo.device import resolve_device

    resolve_device(spec.train.device)  # fail before loading anything
    result = train(spec, out, force=force, callbacks=[ProgressCallback(console)])
    last = result.history[-1]
    console.print(f"saved {result.model_path} (val_loss {last.val_loss:.5f}; "
                  f"metrics in {result.out_dir / 'metrics.jsonl'})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train_command)
