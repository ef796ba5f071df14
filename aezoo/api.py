"""The Python front door: ``aezoo.fit`` and the functions named after the CLI commands.

Each module holds one job: training (``aezoo.fitting``: ``fit``, :class:`Run`), using a
trained model (``aezoo.using``: ``evaluate``, ``encode``, ``score``, ``export``),
pictures (``aezoo.pictures``: ``reconstruct``, ``sample``, ``interpolate``), curves
(``aezoo.plotting``: ``plot``), images in
memory (``aezoo.inmemory``); the records of runs (``runs``, ``compare``, ``bench``) are
here. Each function takes the arguments (and defaults) of its command. See docs/api.md.

Importing this module is cheap (it is imported by ``import aezoo``): torch, numpy and the
trainer are imported when a function is called.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from aezoo.fitting import Run, as_target, fit
from aezoo.inmemory import MAX_ARRAY_BYTES
from aezoo.pictures import Picture, interpolate, reconstruct, sample
from aezoo.plotting import plot
from aezoo.using import Encoded, encode, evaluate, export, score

if TYPE_CHECKING:
    from aezoo.leaderboard import BenchResult
    from aezoo.records import Comparison, RunInfo

__all__ = ["MAX_ARRAY_BYTES", "Encoded", "Picture", "Run", "bench", "compare", "encode",
           "evaluate", "export", "fit", "interpolate", "plot", "reconstruct", "runs", "sample",
           "score"]


def runs(directory: str | os.PathLike[str] = "runs",
         filter: str | None = None,  # noqa: A002 - the flag's name
         sort: str = "name") -> list[RunInfo]:
    """``aezoo runs``: the training runs under ``directory`` as
    :class:`aezoo.records.RunInfo` records (``name``, ``variant``, ``data``, ``epochs_done``,
    ``epochs``, ``status``, ``val_loss``, ``best_epoch``, ``seconds``, ``params``;
    ``.as_dict()`` is a row of ``aezoo runs --json``). ``filter``: an fnmatch pattern on
    the name or variant (a plain word matches anywhere); ``sort``: name, variant, data,
    epochs, status, val_loss, best_epoch, time, params or modified (newest first)."""
    from aezoo.records import list_runs

    return list_runs(directory, filter, sort)


def compare(*runs: str | os.PathLike[str] | Run, out: str | os.PathLike[str] | None = None,
            force: bool = False) -> Comparison:
    """``aezoo compare``: two or more runs side by side, as :class:`aezoo.records.Comparison`
    (``.runs``, ``.diff`` — the spec keys that differ, a value per run —, ``.notes``);
    ``out=NAME.png`` draws their val_loss curves overlaid (the command's default is
    compare.png; here nothing is written without ``out``)."""
    from aezoo.records import compare_runs

    return compare_runs([as_target(r) for r in runs], Path(out) if out is not None else None,
                        force)


def bench(patterns: str | Iterable[str] | None = None, data: str = "mnist5k",
          epochs: int = 5, seeds: int = 1, limit: int | None = None,
          batch_size: int | None = None, device: str = "auto",
          out: str | os.PathLike[str] = "bench", force: bool = False, verbose: int = 1
          ) -> BenchResult:
    """``aezoo bench``: train every variant matching ``patterns`` (fnmatch; default all)
    on the same data, budget and seeds 0..K-1, evaluate each on the same split, rank them
    by PSNR; writes ``out/VARIANT/seed-K`` runs, ``out/bench.json`` and ``out/bench.png``.
    Returns :class:`aezoo.leaderboard.BenchResult` (``.summary``: one dict per variant, best
    first). Running it again reuses finished runs and resumes an interrupted one.
    ``verbose=0`` prints nothing; ``1`` a line per run."""
    from aezoo.leaderboard import run_bench
    from aezoo.training.precision import flush_denormals

    flush_denormals()
    chosen = patterns if patterns is None or isinstance(patterns, str) else list(patterns)
    return run_bench(chosen, data, epochs, seeds, out=Path(out), limit=limit, device=device,
                     batch_size=batch_size, force=force,
                     say=print if verbose else (lambda _: None))
