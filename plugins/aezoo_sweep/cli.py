"""``aezoo sweep``: a hyperparameter search with Optuna; ``aezoo sweep show SWEEP``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from aezoo.cli import complete, tables
from aezoo.cli.common import console, say, usage_error, warn
from aezoo.cli.flags import Flag, command
from aezoo.cli.tables import ID, NUMBER

HELP = """Search hyperparameters: each trial trains an ordinary run directory
(OUT/trial-NNNN) with the sweep's base spec plus the trial's values as `--set` overrides;
Optuna samples, prunes (per epoch) and stores the study. Needs `pip install 'aezoo[sweep]'`.

A param is PATH=DIST with PATH any `--set` key and DIST float(a,b), log(a,b), int(a,b),
logint(a,b) or choice(v1,v2,...) (each v JSON, else a string). Settings may also come
from a sweep file (--config, TOML/YAML/JSON; the flags win). The default storage is a
journal file in OUT; several processes share a study with `aezoo sweep --join OUT` (or
the same --storage URL and --study NAME). Ctrl-C stops after the running trial's
checkpoint; the same command resumes the sweep.

`aezoo sweep show OUT` prints the best trial, a table of trials and writes OUT/best.toml
(the best trial's spec: `aezoo train --config OUT/best.toml`), OUT/history.png and
OUT/importances.png.

Examples:

    aezoo sweep cae-upsample --param 'train.lr=log(1e-4,1e-2)' --epochs 3 --trials 12

    aezoo sweep cae-upsample --param 'model.encoder.params.channels=choice([16,8,8],[32,16,8])'

    aezoo sweep --config sweep.toml --out sweeps/lr

    aezoo sweep --join sweeps/lr

    aezoo sweep show sweeps/lr
"""


# Every flag, once; key: the sweep spec field it sets (aezoo_sweep.spec).
FLAGS = [
    Flag("ARGS", list, "The variant every trial trains, or `show SWEEP` to report a sweep.",
         "[VARIANT | show SWEEP]", complete.variants),
    Flag("--param", list, "A dimension of the search space, e.g. 'train.lr=log(1e-4,1e-2)'.",
         "PATH=DIST", short="-p"),
    Flag("--config", Path, "Sweep file (.toml, .yaml, .json): variant, config, set, params, "
         "metric, trials...", "FILE"),
    Flag("--spec", Path, "Run spec file every trial starts from.", "FILE", key="config"),
    Flag("--set", list, "Override a spec value in every trial.", "KEY=VALUE",
         complete.set_keys),
    Flag("--epochs", int, "Epochs per trial.", "N", min=1),
    Flag("--limit", int, "Training images per trial [default: all].", "N", min=1),
    Flag("--data", str, "Dataset of every trial.", "NAME", complete.datasets),
    Flag("--metric", str, "Per-epoch value to optimise: val_loss, a term, val_METRIC "
         "[default: val_loss].", "NAME", key="metric"),
    Flag("--direction", str, "[default: maximize psnr/ssim, else minimize]",
         "minimize|maximize", key="direction"),
    Flag("--trials", int, "Trials in the study, all processes [default: 20].", "N",
         key="trials", min=1),
    Flag("--timeout", float, "Start no trial after this long [default: none].", "SECONDS",
         key="timeout"),
    Flag("--sampler", str, "tpe, random, cmaes or qmc [default: tpe].", "NAME", key="sampler"),
    Flag("--pruner", str, "median, hyperband, successive-halving or none [default: median].",
         "NAME", key="pruner"),
    Flag("--seed", int, "Sampler seed [default: 0].", "N", key="seed"),
    Flag("--callback", list, "A callback for every trial, e.g. mlflow.", "NAME",
         key="callbacks"),
    Flag("--out", Path, "Sweep directory [default: sweeps/STUDY or sweeps/VARIANT].", "DIR"),
    Flag("--storage", str, "Optuna storage URL, e.g. sqlite:///sweeps.db [default: "
         "OUT/study.journal].", "URL", key="storage"),
    Flag("--study", str, "Study name [default: OUT's name].", "NAME", key="study"),
    Flag("--join", Path, "Run more trials of the sweep in SWEEP (its own settings).", "SWEEP",
         complete.run_dirs),
    Flag("--json", bool, "show: print the report as JSON."),
    Flag("--no-pictures", bool, "show: skip history.png and importances.png."),
]
_KEYS = {f.flag: f.key for f in FLAGS if f.key}


def sweep_command(flags: dict[str, Any]) -> None:
    """``aezoo sweep`` with the flags given (flag -> value, as FLAGS spells them)."""
    args = flags.get("ARGS", [])
    if args[:1] == ["show"]:
        if len(args) != 2:
            raise usage_error("`aezoo sweep show` takes one sweep directory",
                              "aezoo sweep show sweeps/NAME")
        _show(Path(args[1]), "--json" in flags, "--no-pictures" not in flags)
        return
    if len(args) > 1:
        raise usage_error(f"unexpected arguments {' '.join(args[1:])}",
                          "give one VARIANT, or `show SWEEP`")
    from aezoo_sweep.spec import parse_params, read_sweep_file, validate_sweep
    from aezoo_sweep.study import joined

    given = {_KEYS[flag]: value for flag, value in flags.items() if flag in _KEYS}
    given |= {"variant": args[0]} if args else {}
    if "config" in given:
        given["config"] = str(given["config"])
    epochs, limit, data = (flags.get(f) for f in ("--epochs", "--limit", "--data"))
    sets = [*([f"train.epochs={epochs}"] if epochs else []),
            *([f"data.limit={limit}"] if limit else []),
            *([f"data.name={json.dumps(data)}"] if data else []), *flags.get("--set", [])]
    params = parse_params(flags.get("--param", []))
    if "--join" in flags:
        fixed = sorted(set(given) - {"trials", "timeout"}) + (["--param"] if params else []) + (
            ["--set/--epochs/--limit/--data"] if sets else [])
        if fixed:
            raise usage_error(f"{', '.join(fixed)} cannot be combined with --join",
                              "a joined sweep keeps its own settings (--trials and --timeout "
                              "may change)")
        spec = joined(flags["--join"]).model_copy(update={"timeout": None, **given})
        _run(spec, flags["--join"], shared=True)
        return
    if "--config" in flags:
        spec = read_sweep_file(flags["--config"], {**given, "params": params})
        spec = spec.model_copy(update={"set": [*spec.set, *sets]})
    else:
        spec = validate_sweep({**given, "set": sets, "params": params})
    _run(spec, flags.get("--out") or Path("sweeps") / (spec.study or spec.variant or "sweep"))


def _run(spec: Any, out: Path, shared: bool = False) -> None:
    import logging

    from aezoo.training import TrainingInterrupted
    from aezoo.training.precision import flush_denormals
    from aezoo_sweep.study import import_optuna, run_sweep

    flush_denormals()
    import_optuna().logging.set_verbosity(logging.ERROR)  # aezoo says what each trial did
    try:
        result = run_sweep(spec, out, shared=shared, say=say)
    except TrainingInterrupted as exc:
        warn(str(exc))
        raise typer.Exit(exc.exit_code) from None
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    say(f"sweep {out}: study {result.study} has {counts} (this process ran "
        f"{len(result.ran)})")
    say(f"next:\n  aezoo sweep show {out}\n  aezoo runs {out}")


def _show(out: Path, as_json: bool, pictures: bool) -> None:
    from aezoo_sweep.show import show_sweep

    report = show_sweep(out, pictures=pictures)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), allow_nan=False, default=str))
        return
    say(f"sweep {out}: study {report.study}, {report.metric} ({report.direction})")
    if best := report.best:
        say(f"best trial {best['number']}: {report.metric} {best['value']:.5g}")
        for key, value in best["params"].items():
            say(f"  {key} = {json.dumps(value)}")
    else:
        say("no completed trial yet")
    names = sorted({k for row in report.trials for k in row["params"]})
    table = tables.table([("#", NUMBER), ("state", ID), (report.metric, NUMBER),
                          ("epochs", NUMBER), ("time", NUMBER)] + [(n, ID) for n in names])
    for row in report.trials:
        value = "—" if row["value"] is None else f"{row['value']:.5f}"
        secs = "—" if row["seconds"] is None else f"{row['seconds']:.1f}s"
        table.add_row(str(row["number"]), row["state"], value, str(row["epochs"] or "—"),
                      secs, *[_short(row["params"].get(n)) for n in names])
    tables.show(table, console)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts.items()))
    console.print(f"{len(report.trials)} trials: {counts}", highlight=False)
    for what, path in report.files.items():
        say(f"  {what:<12}{path}")
    for note in report.notes:
        warn(note)
    if "best spec" in report.files:
        say(f"next:\n  aezoo train --config {report.files['best spec']}")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else json.dumps(value)


def register(app: typer.Typer) -> None:
    app.command("sweep", help=HELP)(command(FLAGS, sweep_command))
