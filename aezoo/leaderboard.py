"""The zoo leaderboard: train variants on one dataset, budget and seeds, evaluate each on
one split, and rank them.

Layout of a bench directory ``OUT``: one run directory per variant and seed,
``OUT/VARIANT/seed-K`` (an ordinary run: ``aezoo eval`` / ``runs`` / ``compare`` work on
it), ``OUT/bench.json`` (settings, every run's numbers, the per-variant summary) and
``OUT/bench.png`` (quality against parameters and against training time). Resumable: a
finished run whose numbers are in ``bench.json`` is reused, an interrupted one resumed.
"""

from __future__ import annotations

import fnmatch
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aezoo import registry
from aezoo.epochs import finite, read_rows
from aezoo.errors import OutputExistsError, UnknownNameError, UsageError, summary
from aezoo.fileio import atomic_write, read_json
from aezoo.rundir import METRICS_JSONL, MODEL_FILE, RUN_FILE, STATE_FILE

BENCH_FILE = "bench.json"
BENCH_PICTURE = "bench.png"
# Per-variant columns, each the mean and spread over seeds.
METRICS = ("val_loss", "mse", "bce", "psnr", "ssim", "train_images_per_s", "seconds")


@dataclass
class BenchResult:
    out: Path
    settings: dict[str, Any]
    runs: dict[str, dict[str, Any]]  # "VARIANT/seed-K" -> its numbers
    summary: list[dict[str, Any]] = field(default_factory=list)  # one per variant, ranked
    picture: Path | None = None


def select_variants(patterns: str | Sequence[str] | None) -> list[str]:
    """Installed variants matching any of ``patterns`` (fnmatch), in name order."""
    names = registry.names("variant")
    if not patterns:
        return names
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise UnknownNameError(f"no variant matches '{pattern}'",
                                   "see `aezoo list` for the installed variants")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def _read(out: Path) -> dict[str, Any] | None:
    """``OUT/bench.json`` as written by ``_write``, or None where there is none; anything
    else (damaged, edited, a FIFO, another program's JSON) is refused, never overwritten."""
    path = out / BENCH_FILE
    fix = "delete it (the runs stay and are evaluated again), or choose another --out"
    try:
        loaded = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else summary(
            exc, with_type=False, limit=200)
        raise UsageError(f"cannot read {path} ({reason})", fix) from None
    problem = None
    if not isinstance(loaded, dict):
        problem = f"a JSON {type(loaded).__name__}, not an object"
    elif not isinstance(loaded.get("settings"), dict):
        problem = "its settings are not an object"
    elif not (isinstance(loaded.get("runs", {}), dict)
              and all(isinstance(v, dict) for v in loaded.get("runs", {}).values())):
        problem = "its runs are not an object of runs"
    if problem:
        raise UsageError(f"cannot read {path} ({problem})", fix)
    return loaded


def _numbers(run_dir: Path, evaluation: dict[str, Any]) -> dict[str, Any]:
    rows = read_rows(run_dir / METRICS_JSONL)
    timed = rows[1:] or rows  # the first epoch includes warm-up
    speeds = [r["images_per_s"] for r in timed if isinstance(r.get("images_per_s"), float)]
    evaluation = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                  for k, v in evaluation.items()}  # JSON has no NaN: a NaN model's are null
    last = rows[-1].get("val_loss") if rows else None
    return {**evaluation,
            "val_loss": last if isinstance(last, float) and math.isfinite(last) else None,
            "epochs": len(rows),
            "train_images_per_s": statistics.fmean(speeds) if speeds else None,
            "seconds": sum(r.get("seconds", 0.0) for r in rows),
            "model_mtime_ns": (run_dir / MODEL_FILE).stat().st_mtime_ns}


def evaluate_run(run_dir: Path, device: str = "cpu", batch_size: int = 1024
                 ) -> dict[str, Any]:
    """What ``aezoo eval RUN_DIR --json`` reports, as a dict (the same code path)."""
    from aezoo.evaluation import evaluate, load_split

    loaded = load_split(run_dir, None, None, None, device)
    result = evaluate(loaded.model, loaded.images, batch_size, loaded.memory_format)
    return {"data": loaded.data_name, "split": loaded.split, **result.as_dict()}


def run_bench(pattern: str | Sequence[str] | None, data: str, epochs: int, seeds: int = 1, *,
              out: str | Path = "bench", limit: int | None = None, device: str = "cpu",
              batch_size: int | None = None, force: bool = False,
              say: Callable[[str], None] = lambda _: None,
              callbacks: Callable[[], Sequence[Any]] = tuple) -> BenchResult:
    """Train and evaluate every variant matching ``pattern`` with ``seeds`` seeds (0..K-1).

    Finished runs recorded in ``OUT/bench.json`` are reused (an interrupted bench goes on
    where it stopped); ``force`` trains every run again. Settings other than the seeds
    cannot change in an existing bench directory.
    """
    from aezoo.config import build_run_spec
    from aezoo.run import resume, train

    if epochs < 1 or seeds < 1:
        raise UsageError("--epochs and --seeds must be at least 1", "pass 1 or more")
    variants = select_variants(pattern)
    out = Path(out)
    settings = {"data": data, "epochs": epochs, "limit": limit, "device": device,
                "batch_size": batch_size}
    previous = None if force else _read(out)
    if previous is not None:
        old = {k: previous["settings"].get(k) for k in settings if k != "device"}
        new = {k: v for k, v in settings.items() if k != "device"}
        if old != new:
            changed = ", ".join(f"{k} {old[k]} -> {new[k]}" for k in new if old[k] != new[k])
            raise OutputExistsError(f"{out} holds a bench with other settings ({changed})",
                                    "choose another --out, or pass --force to start over")
    elif not force and _has_runs(out, variants, seeds):
        raise OutputExistsError(f"{out} holds runs but no {BENCH_FILE} saying their settings",
                                "choose another --out, or pass --force to train them again")
    done: dict[str, dict[str, Any]] = dict(previous.get("runs", {})) if previous else {}
    out.mkdir(parents=True, exist_ok=True)
    # The settings are recorded before the first run starts: an interrupted bench resumed
    # with other settings is refused above, never continued under the new ones.
    _write(out, settings, done, variants, seeds)
    total = len(variants) * seeds
    for i, (variant, seed) in enumerate(((v, s) for v in variants for s in range(seeds)), 1):
        key = f"{variant}/seed-{seed}"
        run_dir = out / variant / f"seed-{seed}"
        model = run_dir / MODEL_FILE
        record = done.get(key)
        if (record is not None and model.exists()
                and record.get("model_mtime_ns") == model.stat().st_mtime_ns):
            say(f"[{i}/{total}] {key}: reused")
            continue
        if force or not model.exists():
            if (run_dir / STATE_FILE).exists() and not force:
                say(f"[{i}/{total}] {key}: resuming")
                resume(run_dir, callbacks=callbacks())
            else:
                say(f"[{i}/{total}] {key}: training")
                layer: dict[str, Any] = {"data": {"name": data, "limit": limit},
                                         "train": {"epochs": epochs, "seed": seed,
                                                   "device": device}}
                if batch_size is not None:
                    layer["train"]["batch_size"] = batch_size
                # A directory holding a run that never checkpointed is ours to redo.
                redo = force or (run_dir / RUN_FILE).exists()
                train(build_run_spec(variant, [layer]), run_dir, force=redo,
                      callbacks=callbacks())
        done[key] = _numbers(run_dir, evaluate_run(run_dir, device))
        _write(out, settings, done, variants, seeds)  # before saying so: a kill now loses nothing
        say(f"[{i}/{total}] {key}: val_loss {_fmt(done[key]['val_loss'], '.5f')}, PSNR "
            f"{_fmt(done[key]['psnr'], '.2f')} dB, {done[key]['seconds']:.1f}s")
    result = _write(out, settings, done, variants, seeds)
    from aezoo.curves import write_picture

    result.picture = write_picture(out / BENCH_PICTURE, bench_picture(result.summary))
    return result


def _has_runs(out: Path, variants: Sequence[str], seeds: int) -> bool:
    """Whether ``out`` holds a run directory this bench would resume or reuse."""
    return any((out / v / f"seed-{s}" / name).exists() for v in variants
               for s in range(seeds) for name in (RUN_FILE, STATE_FILE, MODEL_FILE))


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(runs: dict[str, dict[str, Any]], variants: Sequence[str], seeds: int
              ) -> list[dict[str, Any]]:
    """One row per variant: params, then each metric's mean and spread (sample standard
    deviation over seeds), ranked by PSNR (every variant's val_loss is its own loss: BCE
    and MSE do not rank each other)."""
    rows = []
    for variant in variants:
        mine = [runs[f"{variant}/seed-{s}"] for s in range(seeds) if f"{variant}/seed-{s}" in runs]
        if not mine:
            continue
        row: dict[str, Any] = {"variant": variant, "seeds": len(mine),
                               "params": mine[0].get("params")}
        for metric in METRICS:
            values = [float(r[metric]) for r in mine if finite(r.get(metric))]
            row[metric] = statistics.fmean(values) if values else None
            row[f"{metric}_spread"] = _spread(values) if values else None
        rows.append(row)
    return sorted(rows, key=lambda r: (r["psnr"] is None, -(r["psnr"] or 0.0)))


def _write(out: Path, settings: dict[str, Any], runs: dict[str, dict[str, Any]],
           variants: Sequence[str], seeds: int) -> BenchResult:
    result = BenchResult(out, {**settings, "seeds": seeds, "variants": list(variants)},
                         runs, summarise(runs, variants, seeds))
    body = {"settings": result.settings, "summary": result.summary, "runs": runs}
    atomic_write(out / BENCH_FILE, (json.dumps(body, indent=1) + "\n").encode())
    return result


def bench_picture(summary: Sequence[dict[str, Any]]) -> Any:
    """Two panels: PSNR against parameters (log scale) and against training time, a
    coloured dot per variant, named in the legend below."""
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    from aezoo.curves import PALETTE, figure, legend

    fig, axes = figure(width=1120, height=450 + 18 * math.ceil(len(summary) / 4), panels=2,
                       columns=2)
    for ax, (x, xlabel) in zip(axes, (("params", "parameters"),
                                      ("seconds", "training time (s)")), strict=True):
        for i, r in enumerate(summary):
            if isinstance(r.get(x), (int, float)) and isinstance(r.get("psnr"), float):
                ax.plot([r[x]], [r["psnr"]], "o", markersize=8, label=r["variant"],
                        color=PALETTE[i % len(PALETTE)])
        ax.set(title=f"PSNR vs {xlabel}", xlabel=xlabel, ylabel="PSNR (dB)")
        ax.margins(0.1)
    axes[0].set_xscale("log")
    axes[0].xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes[0].xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    legend(fig, axes[0].get_legend_handles_labels()[0])
    return fig
