"""``aezoo train``: flags and spec files -> a validated RunSpec -> a training run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer

from aezoo import _interrupts
from aezoo.cli import complete
from aezoo.cli.common import console, say, usage_error, warn
from aezoo.cli.flags import Flag, command
from aezoo.epochs import best, read_rows

HELP = """Train a variant and save it as DIR/model.safetensors.

Settings come, later winning, from the variant's defaults, `--config FILE` (TOML, YAML
or JSON), the flags below, then each `--set KEY=VALUE` (a dotted path into the run spec;
VALUE is JSON, else a string).

Writes into the output directory: `run.json` (the resolved run spec), `metrics.jsonl`
and `metrics.csv` (one row per epoch), `last.safetensors`, `best.safetensors` (the best
epoch by `train.monitor`, lowest val_loss by default), `state.safetensors` (for
`--resume`), `images/epoch-NNNN.png` (originals over reconstructions) and, when
training finishes, `model.safetensors` (the final weights).

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


V = "[default: the variant's]"

# Every flag, once, in the order of `aezoo train --help`: the run spec value it sets (key)
# and whether it is passed on with --resume (aezoo.run.resume accepts the train keys in its
# RESUMABLE and names the others). Flags not passed on cannot be combined with --resume
# and are named in this order.
FLAGS = [
    Flag("NAME", str, "Variant to train (see `aezoo list`).", complete=complete.variants),
    Flag("--device", str, "auto, cpu, cuda, cuda:N or mps [default: auto].", "DEVICE",
         key="train.device", resume=True),
    Flag("--epochs", int, f"Number of epochs {V}.", "N", key="train.epochs", resume=True),
    Flag("--batch-size", int, f"Images per step {V}.", "N", key="train.batch_size"),
    Flag("--lr", float, f"Learning rate {V}.", "LR", key="train.lr", resume=True),
    Flag("--loss", str, f"Loss component, e.g. bce or mse {V}.", "NAME",
         complete.losses, key="model.loss.name"),
    Flag("--seed", int, "Random seed (init, shuffling) [default: 0].", "N", key="train.seed"),
    Flag("--data", str, "Dataset: mnist5k (embedded), mnist, fashion-mnist, kmnist, cifar10, "
         "folder:PATH, npz:PATH, npy:PATH, packed:PATH (`aezoo data pack`), wds:URL "
         "(WebDataset shards) or hf:REPO (Hugging Face datasets) (see `aezoo data list`, "
         "docs/data.md); a relative PATH is stored absolute [default: mnist5k].", "NAME",
         complete.datasets, key="data.name"),
    Flag("--limit", int, "Use at most N training images [default: all].", "N",
         key="data.limit"),
    Flag("--val-fraction", float, "Share of train held out for validation, stratified by "
         "label [default: 0.1].", "F", key="data.val_fraction"),
    Flag("--image-size", str, "Resize every image (needed when a folder's images differ in "
         "size) [default: as stored].", "N|HxW", key="data.image_size"),
    Flag("--channels", int, "Convert images to grey (1) or RGB (3) [default: as stored].",
         "1|3", key="data.channels"),
    Flag("--skip-bad-images", bool, "Streamed sources: skip unreadable images and count them "
         "(reported each epoch) instead of stopping on the first.", key="data.skip_bad"),
    Flag("--out", Path, "Output directory [default: runs/NAME-TIME, with -2, -3... added if "
         "taken].", "DIR"),
    Flag("--config", Path, "Run spec file: .toml, .yaml or .json.", "FILE"),
    Flag("--set", list, "Override any spec value, e.g. train.lr=0.01 (with --resume: the "
         "train keys that may change, such as a callback's params).",
         "KEY=VALUE", complete.set_keys),  # with --resume: each key checked (_resume_sets)
    Flag("--force", bool, "Overwrite an existing model file."),
    Flag("--resume", Path, "Continue an interrupted run from RUN_DIR/state.safetensors "
         "(settings from its run.json; --epochs, --device, --lr, the switches below and "
         "--set of their train keys may change).", "RUN_DIR", complete.run_dirs),
    Flag("--checkpoint-every", int, "Also checkpoint every N optimiser steps [default: at "
         "each epoch end only].", "N", key="train.checkpoint_every", resume=True),
    Flag("--scheduler", str, "Learning-rate schedule: none, cosine, step or onecycle "
         "[default: none].", "NAME", complete.schedules, key="train.scheduler",
         resume=True),
    Flag("--warmup", int, "Linear warm-up steps [default: 0].", "STEPS", key="train.warmup",
         resume=True),
    Flag("--grad-clip", float, "Clip the global gradient norm to NORM [default: off].",
         "NORM", key="train.grad_clip", resume=True),
    Flag("--patience", int, "Early stopping: epochs without a better val_loss [default: "
         "off].", "EPOCHS", key="train.patience", resume=True),
    Flag("--precision", str, "Autocast precision; auto: bf16 on CPUs with AMX, else 32; 16 "
         "uses a GradScaler (GPU only) [default: auto].", "auto|32|bf16|16",
         key="train.precision", resume=True),
    Flag("--compile", bool, "torch.compile the training step.", key="train.compile",
         resume=True),
    Flag("--channels-last", bool, "NHWC memory layout [default: on for CPU, off elsewhere].",
         key="train.channels_last", resume=True),
    Flag("--no-channels-last", bool, "Keep the NCHW memory layout.",
         key="train.channels_last", resume=True, value=False),
    Flag("--no-images", bool, "Do not write a reconstruction grid each epoch, nor curves.png.",
         key="train.images", resume=True, value=False),
    Flag("--callback", list, "Add a callback from the aezoo.callbacks entry points, e.g. "
         "tensorboard, to the variant's own (repeatable).", "NAME", key="train.callbacks",
         resume=True),
    Flag("--no-callback", list, "Leave out a callback the variant (or the resumed run) "
         "turns on (repeatable).", "NAME", key="train.callbacks", resume=True),  # both
    # edit the list: config.edit_callbacks
    Flag("--reader", str, "How batches are read: memory (the split in memory), mapped (from "
         "a memory map) or stream (decoded by DataLoader workers); docs/data.md [default: "
         "auto: memory when it fits].", "KIND", key="train.reader", resume=True),
    Flag("--workers", int, "DataLoader worker processes for streamed data [default: up to "
         "4].", "N", key="train.workers", resume=True),
    Flag("--init", str, "Start from these weights (fine-tuning): a weight set VARIANT.TAG "
         "(`aezoo list --pretrained`), hf://ORG/REPO[@REV], a run directory or a model file "
         "[default: a fresh init].", "WEIGHTS", key="train.init"),
    Flag("--init-strict", str, "false: load the tensors of --init that fit and list the rest "
         "[default: true, every tensor must fit].", "true|false", key="train.init_strict"),
]
_ROWS = {f.flag: f for f in FLAGS}


def train_command(given: dict[str, Any]) -> None:
    """``aezoo train`` with the flags ``given`` (flag -> value, as FLAGS spells them)."""
    if "--channels-last" in given and "--no-channels-last" in given:
        raise usage_error("--channels-last and --no-channels-last contradict each other",
                          "pass one of them")
    init = given.get("--init")
    if init is not None and not init.startswith("hf://") and Path(init).exists():
        given["--init"] = str(Path(init).resolve())  # a path: run.json must still find it
    if "--init-strict" in given:
        strict = given["--init-strict"]
        if strict.lower() not in ("true", "1", "yes", "false", "0", "no"):
            raise usage_error(f"--init-strict takes true or false, not '{strict[:50]}'",
                              "pass --init-strict false")
        given["--init-strict"] = strict.lower() in ("true", "1", "yes")
    resume = given.pop("--resume", None)
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

    flags = layer({str(_ROWS[flag].key): value for flag, value in given.items()  # callbacks: below
                   if _ROWS[flag].key and flag not in ("--callback", "--no-callback")})
    set_ = given.get("--set", [])
    spec = run_spec_from(given.get("NAME"), given.get("--config"), flags, set_,
                         callbacks=(given.get("--callback", []), given.get("--no-callback", [])))
    with progress_bars() as progress:  # a shape the model cannot serve fails before a download
        preflight(spec, progress)
    # A shape given with --set is kept (a mismatch with the data is an error). Otherwise
    # it follows the data: a variant's default, or the one `aezoo config` wrote to a file.
    _report(lambda: train(spec, given.get("--out"), force="--force" in given,
                          callbacks=[_warnings_callback(), ProgressCallback(console)],
                          follow_data=not fixes_input_shape(set_)))


def _resume(run_dir: Path, given: dict[str, Any]) -> None:
    from aezoo.cli.progress import ProgressCallback
    from aezoo.run import resume

    fresh = [flag for flag in given if not _ROWS[flag].resume and flag != "--set"]
    if fresh:
        raise usage_error(f"{', '.join(fresh)} cannot be combined with --resume",
                          "a resumed run keeps its run.json; start a new run to change them")
    overrides = {str(_ROWS[flag].key).removeprefix("train."): value
                 for flag, value in given.items() if flag not in ("--no-callback", "--set")}
    overrides = _resume_sets(overrides, given.get("--set", []))
    from aezoo.errors import AezooError
    from aezoo.rundir import METRICS_JSONL

    before = 0  # epochs of earlier sessions; resume itself reports a directory it cannot use
    with contextlib.suppress(AezooError, OSError):
        before = len(read_rows(run_dir / METRICS_JSONL))
    _report(lambda: resume(run_dir, overrides, drop_callbacks=given.get("--no-callback", ()),
                           callbacks=[_warnings_callback(), ProgressCallback(console)]),
            before)


def _resume_sets(overrides: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``overrides`` with each ``--set train.KEY=VALUE`` merged in, later winning (which
    train keys may change is ``aezoo.run.resume``'s to say); any other key is refused."""
    from aezoo.config import merge, section_sets

    given, outside = section_sets("train", sets)
    if outside or "callbacks" in given:
        fix = ("a resumed run keeps its run.json; only train keys may change (e.g. --set "
               "train.callback_params.NAME.KEY=VALUE); start a new run for the rest"
               if outside else "add or drop callbacks with --callback / --no-callback")
        raise usage_error(f"--set {(outside or ['train.callbacks'])[0]} cannot be combined "
                          "with --resume", fix)
    return merge(overrides, given)


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
    from aezoo.rundir import METRICS_JSONL
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
    loss = f"val_loss {result.history[-1].val_loss:.5f}; " if result.history else ""
    stop = f" ({result.stop_reason})" if result.stop_reason else ""
    say(f"saved {result.model_path}{stop} ({loss}metrics in {result.out_dir / METRICS_JSONL})")
    for text in summary(result, time.perf_counter() - started, before):
        say(text)


def summary(result: Any, wall: float, before: int = 0) -> list[str]:
    """What a user needs next: the time, the best epoch, where the files are, what to run.
    ``before``: epochs an earlier session trained (a resumed run's time is this session's)."""
    from aezoo.cli.runs import duration as _duration
    from aezoo.rundir import BEST_FILE, CURVES_FILE, IMAGES_DIR, epoch_image

    out, history = result.out_dir, result.history
    session = history[before:]
    trained = sum(r.seconds for r in session)
    earlier = f"; {len(history)} epochs in all" if before else ""
    lines = [f"took {_duration(wall)} ({'this session: ' if before else ''}{len(session)} "
             f"epoch{'s' * (len(session) != 1)}, {_duration(trained)} of training and "
             f"validation{earlier})"]
    monitor = getattr(getattr(result, "spec", None), "train", None)
    key = "val_loss"
    mode: Literal["min", "max"] = "min"
    if monitor is not None:  # best.safetensors' choice, train.mode included
        from aezoo.training.loop import monitor_mode

        key, mode = monitor.monitor, monitor_mode(monitor)
    found = best(history, key, mode)
    if found:
        lines.append(f"best epoch {found[0].epoch}: {key} {found[1]:.5f} ({out / BEST_FILE})")
    images = out / IMAGES_DIR
    files = [("model", result.model_path), ("curves", images / CURVES_FILE)]
    if history:
        files.append(("reconstructions", images / epoch_image(history[-1].epoch)))
    lines += [f"  {name:<16}{path}" for name, path in files if path.exists()]
    lines += ["next:", f"  aezoo eval {out}",
              f"  aezoo reconstruct {out} --out {out / 'recon.png'}"]
    return lines


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(command(FLAGS, train_command))
