"""``aezoo train``: flags and spec files -> a validated RunSpec -> a training run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from aezoo import _interrupts
from aezoo.cli import _complete
from aezoo.cli._common import console, usage_error, warn
from aezoo.cli._help import ManualCommand
from aezoo.epochs import best, read_rows

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

- `aezoo train cae-upsample --epochs 5`
- `aezoo train cae-strided --loss bce --device cuda --out runs/strided-bce`
- `aezoo train cae-upsample --set model.encoder.params.channels=[32,16,8] --set train.optimizer=sgd`
- `aezoo train cae-upsample --scheduler cosine --warmup 100 --patience 5 --checkpoint-every 200`
- `aezoo train --resume runs/cae-upsample-20250101-120000`
"""


# Every flag that sets something: flag -> (the run spec value it sets, or None; whether it
# is passed on with --resume, where aezoo.run.resume accepts the train keys in its
# RESUMABLE and names the others). Flags not passed on cannot be combined with --resume
# and are named in this order.
FLAGS: dict[str, tuple[str | None, bool]] = {
    "NAME": (None, False),
    "--device": ("train.device", True),
    "--epochs": ("train.epochs", True),
    "--batch-size": ("train.batch_size", False),
    "--lr": ("train.lr", True),
    "--loss": ("model.loss.name", False),
    "--seed": ("train.seed", False),
    "--data": ("data.name", False),
    "--limit": ("data.limit", False),
    "--out": (None, False),
    "--val-fraction": ("data.val_fraction", False),
    "--image-size": ("data.image_size", False),
    "--channels": ("data.channels", False),
    "--skip-bad-images": ("data.skip_bad", False),
    "--config": (None, False),
    "--set": (None, False),
    "--force": (None, False),
    "--checkpoint-every": ("train.checkpoint_every", True),
    "--scheduler": ("train.scheduler", True),
    "--warmup": ("train.warmup", True),
    "--grad-clip": ("train.grad_clip", True),
    "--patience": ("train.patience", True),
    "--precision": ("train.precision", True),
    "--compile": ("train.compile", True),
    "--channels-last": ("train.channels_last", True),
    "--no-images": ("train.images", True),
    "--callback": ("train.callbacks", True),
    "--no-callback": ("train.callbacks", True),  # both edit it: config.edit_callbacks
    "--reader": ("train.reader", True),
    "--workers": ("train.workers", True),
    "--init": ("train.init", False),
    "--init-strict": ("train.init_strict", False),
}
_KEYS = {flag: key for flag, (key, _) in FLAGS.items() if key is not None}


V = "[default: the variant's]"


def train_command(
    name: str | None = typer.Argument(None, metavar="NAME",
                                      help="Variant to train (see `aezoo list`).",
                                      autocompletion=_complete.variants),
    device: str | None = typer.Option(
        None, metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps [default: auto]."),
    epochs: int | None = typer.Option(None, metavar="N", help=f"Number of epochs {V}."),
    batch_size: int | None = typer.Option(None, "--batch-size", metavar="N",
                                          help=f"Images per step {V}."),
    lr: float | None = typer.Option(None, metavar="LR", help=f"Learning rate {V}."),
    loss: str | None = typer.Option(None, metavar="NAME",
                                    help=f"Loss component, e.g. bce or mse {V}.",
                                    autocompletion=_complete.losses),
    seed: int | None = typer.Option(None, metavar="N",
                                    help="Random seed (init, shuffling) [default: 0]."),
    data: str | None = typer.Option(
        None, metavar="NAME", help="Dataset: mnist5k (embedded), mnist, fashion-mnist, "
        "kmnist, cifar10, folder:PATH, npz:PATH, npy:PATH, packed:PATH (`aezoo data pack`), "
        "wds:URL (WebDataset shards) or hf:REPO (Hugging Face datasets) (see `aezoo data "
        "list`, docs/data.md); a relative PATH is stored absolute [default: mnist5k].",
        autocompletion=_complete.datasets),
    limit: int | None = typer.Option(None, metavar="N",
                                     help="Use at most N training images [default: all]."),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction", metavar="F", help="Share of train held out for validation, "
        "stratified by label [default: 0.1]."),
    image_size: str | None = typer.Option(
        None, "--image-size", metavar="N|HxW", help="Resize every image (needed when a "
        "folder's images differ in size) [default: as stored]."),
    channels: int | None = typer.Option(
        None, "--channels", metavar="1|3",
        help="Convert images to grey (1) or RGB (3) [default: as stored]."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad-images", help="Streamed sources: skip unreadable images and count "
        "them (reported each epoch) instead of stopping on the first."),
    out: Path | None = typer.Option(
        None, metavar="DIR", help="Output directory [default: runs/NAME-TIME, with -2, -3... "
        "added if taken]."),
    config: Path | None = typer.Option(None, metavar="FILE",
                                       help="Run spec file: .toml, .yaml or .json."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE",
                                   help="Override any spec value, e.g. train.lr=0.01.",
                                   autocompletion=_complete.set_keys),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing model file."),
    resume: Path | None = typer.Option(
        None, "--resume", metavar="RUN_DIR",
        help="Continue an interrupted run from RUN_DIR/state.safetensors (settings from its "
        "run.json; --epochs, --device, --lr and the switches below may change).",
        autocompletion=_complete.run_dirs),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", metavar="N",
        help="Also checkpoint every N optimiser steps [default: at each epoch end only]."),
    scheduler: str | None = typer.Option(
        None, metavar="NAME",
        help="Learning-rate schedule: none, cosine, step or onecycle [default: none].",
        autocompletion=_complete.schedules),
    warmup: int | None = typer.Option(None, metavar="STEPS",
                                      help="Linear warm-up steps [default: 0]."),
    grad_clip: float | None = typer.Option(
        None, "--grad-clip", metavar="NORM",
        help="Clip the global gradient norm to NORM [default: off]."),
    patience: int | None = typer.Option(
        None, metavar="EPOCHS",
        help="Early stopping: epochs without a better val_loss [default: off]."),
    precision: str | None = typer.Option(
        None, metavar="auto|32|bf16|16", help="Autocast precision; auto: bf16 on CPUs with "
        "AMX, else 32; 16 uses a GradScaler (GPU only) [default: auto]."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the training step."),
    channels_last_on: bool = typer.Option(
        False, "--channels-last",
        help="NHWC memory layout [default: on for CPU, off elsewhere]."),
    channels_last_off: bool = typer.Option(
        False, "--no-channels-last", help="Keep the NCHW memory layout."),
    no_images: bool = typer.Option(
        False, "--no-images", help="Do not write a reconstruction grid or curves.png each epoch."),
    callback: list[str] = typer.Option(
        [], "--callback", metavar="NAME",
        help="Add a callback from the aezoo.callbacks entry points, e.g. tensorboard, to "
        "the variant's own (repeatable)."),
    no_callback: list[str] = typer.Option(
        [], "--no-callback", metavar="NAME",
        help="Leave out a callback the variant (or the resumed run) turns on (repeatable)."),
    reader: str | None = typer.Option(
        None, metavar="KIND", help="How batches are read: memory (the split in memory), "
        "mapped (from a memory map) or stream (decoded by DataLoader workers); "
        "docs/data.md [default: auto: memory when it fits]."),
    workers: int | None = typer.Option(
        None, metavar="N", help="DataLoader worker processes for streamed data [default: up "
        "to 4]."),
    init: str | None = typer.Option(
        None, "--init", metavar="WEIGHTS", help="Start from these weights (fine-tuning): a "
        "weight set VARIANT.TAG (`aezoo list --pretrained`), hf://ORG/REPO[@REV], a run "
        "directory or a model file [default: a fresh init]."),
    init_strict: str | None = typer.Option(
        None, "--init-strict", metavar="true|false", help="false: load the tensors of --init "
        "that fit and list the rest [default: true, every tensor must fit]."),
) -> None:
    if channels_last_on and channels_last_off:
        raise usage_error("--channels-last and --no-channels-last contradict each other",
                          "pass one of them")
    channels_last = True if channels_last_on else False if channels_last_off else None
    given = {
        "NAME": name, "--device": device, "--epochs": epochs, "--batch-size": batch_size,
        "--lr": lr, "--loss": loss, "--seed": seed, "--data": data, "--limit": limit,
        "--val-fraction": val_fraction, "--image-size": image_size, "--channels": channels,
        "--skip-bad-images": True if skip_bad else None,
        "--out": out, "--config": config, "--set": set_ or None, "--force": force or None,
        "--checkpoint-every": checkpoint_every, "--scheduler": scheduler, "--warmup": warmup,
        "--grad-clip": grad_clip, "--patience": patience, "--precision": precision,
        "--compile": True if compile_ else None, "--channels-last": channels_last,
        "--no-images": False if no_images else None, "--callback": callback or None,
        "--no-callback": no_callback or None,
        "--reader": reader, "--workers": workers,
        "--init": _absolute_if_path(init), "--init-strict": _truth("--init-strict", init_strict),
    }
    given = {flag: value for flag, value in given.items() if value is not None}
    from aezoo.training.precision import flush_denormals

    flush_denormals()  # first, before any torch op starts the CPU thread pool
    if resume is not None:
        _resume(resume, given)
        return

    from aezoo.cli.data import progress_bars
    from aezoo.cli.progress import ProgressCallback
    from aezoo.config import fixes_input_shape, layer, run_spec_from
    from aezoo.doctor import preflight
    from aezoo.run import train

    flags = layer({_KEYS[flag]: value for flag, value in given.items()  # callbacks: below
                   if flag in _KEYS and flag not in ("--callback", "--no-callback")})
    spec = run_spec_from(name, config, flags, set_, callbacks=(callback, no_callback))
    with progress_bars() as progress:  # a shape the model cannot serve fails before a download
        preflight(spec, progress)
    # A shape given with --set is kept (a mismatch with the data is an error). Otherwise
    # it follows the data: a variant's default, or the one `aezoo config` wrote to a file.
    _report(lambda: train(spec, out, force=force,
                          callbacks=[_warnings_callback(), ProgressCallback(console)],
                          follow_data=not fixes_input_shape(set_)))


def _absolute_if_path(ref: str | None) -> str | None:
    """An --init that is a path is recorded absolute (run.json must still find it)."""
    if ref is None or ref.startswith("hf://") or not Path(ref).exists():
        return ref
    return str(Path(ref).resolve())


def _truth(flag: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise usage_error(f"{flag} takes true or false, not '{value[:50]}'", f"pass {flag} false")


def _resume(run_dir: Path, given: dict[str, Any]) -> None:
    from aezoo.cli.progress import ProgressCallback
    from aezoo.run import resume

    fresh = [flag for flag in FLAGS if flag in given and not FLAGS[flag][1]]
    if fresh:
        raise usage_error(f"{', '.join(fresh)} cannot be combined with --resume",
                          "a resumed run keeps its run.json; start a new run to change them")
    overrides = {_KEYS[flag].removeprefix("train."): value
                 for flag, value in given.items() if FLAGS[flag][1] and flag != "--no-callback"}
    from aezoo.errors import AezooError
    from aezoo.rundir import METRICS_JSONL

    before = 0  # epochs of earlier sessions; resume itself reports a directory it cannot use
    if (run_dir / METRICS_JSONL).is_file():
        try:
            before = len(read_rows(run_dir / METRICS_JSONL))
        except (AezooError, OSError):
            pass
    _report(lambda: resume(run_dir, overrides, drop_callbacks=given.get("--no-callback", ()),
                           callbacks=[_warnings_callback(), ProgressCallback(console)]),
            before)


def _warnings_callback() -> Any:
    """Warns (once, on the main process) about settings aezoo.doctor.training_warnings
    finds questionable, when the data has loaded and the split sizes are known."""
    from aezoo.doctor import training_warnings
    from aezoo.training.hooks import Callback

    class Warnings(Callback):
        def on_train_start(self, trainer: Any) -> None:
            for line in training_warnings(trainer.spec, len(trainer.train_images),
                                          trainer.steps_per_epoch):
                warn(line)

    return Warnings()


def _report(run: Callable[[], Any], before: int = 0) -> None:
    """Run, then one line about the result; an interrupt is a warning with exit 130/143."""
    from aezoo.training import TrainingInterrupted

    started = time.perf_counter()
    try:
        result = run()
        _interrupts.command_finished()  # model.safetensors is written: a Ctrl-C now is moot
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
    for text in summary(result, time.perf_counter() - started, before):
        console.print(text, highlight=False, soft_wrap=True)


def summary(result: Any, wall: float, before: int = 0) -> list[str]:
    """What a user needs next: the time, the best epoch, where the files are, what to run.
    ``before``: epochs an earlier session trained (a resumed run's time is this session's)."""
    from aezoo.cli.runs import duration as _duration
    from aezoo.rundir import BEST_FILE, CURVES_FILE, IMAGES_DIR

    out, history = result.out_dir, result.history
    session = history[before:]
    trained = sum(r.seconds for r in session)
    earlier = f"; {len(history)} epochs in all" if before else ""
    lines = [f"took {_duration(wall)} ({'this session: ' if before else ''}{len(session)} "
             f"epoch{'s' * (len(session) != 1)}, {_duration(trained)} of training and "
             f"validation{earlier})"]
    monitor = getattr(getattr(result, "spec", None), "train", None)
    key, sign = "val_loss", 1.0
    if monitor is not None and monitor.monitor != "val_loss":  # best.safetensors' choice
        from aezoo.training.loop import monitor_sign

        key, sign = monitor.monitor, monitor_sign(monitor)
    found = best(history, key, "max" if sign < 0 else "min")
    if found:
        lines.append(f"best epoch {found[0].epoch}: {key} {found[1]:.5f} ({out / BEST_FILE})")
    images = out / IMAGES_DIR
    files = [("model", result.model_path), ("curves", images / CURVES_FILE)]
    if history and (images / f"epoch-{history[-1].epoch:04d}.png").exists():
        files.append(("reconstructions", images / f"epoch-{history[-1].epoch:04d}.png"))
    lines += [f"  {name:<16}{path}" for name, path in files if path.exists()]
    lines += ["next:", f"  aezoo eval {out}",
              f"  aezoo reconstruct {out} --out {out / 'recon.png'}"]
    return lines


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP, cls=ManualCommand)(train_command)
