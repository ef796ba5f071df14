"""``aezoo.plot``: a run's loss curves drawn on demand (``aezoo plot RUN``), from its
metrics.jsonl, as the picture training keeps in ``images/curves.png``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from aezoo.api import Run


def plot(run: str | os.PathLike[str] | Run, out: str | os.PathLike[str] | None = None,
         force: bool = False) -> Figure:
    """``aezoo plot``: the loss curves of ``run`` (a ``Run`` or its directory, finished or
    still training) as a matplotlib ``Figure``; written to ``out`` (a PNG) when given (the
    command's default is the run's ``images/curves.png``; here nothing is written without
    ``out``). An existing ``out`` is kept unless ``force``."""
    from aezoo.curves import run_curves, write_picture
    from aezoo.errors import UsageError
    from aezoo.outputs import refuse_overwrite
    from aezoo.records import open_run  # metrics.jsonl only: no torch

    target = Path(out) if out is not None else None
    if target is not None and target.suffix.lower() != ".png":
        raise UsageError(f"--out {target} must end in .png", "name the picture NAME.png")
    path: Any = getattr(run, "out_dir", run)
    info = open_run(path)
    if not info.rows:
        raise UsageError(f"{path} has no finished epoch yet: nothing to plot",
                         "wait for its first epoch (`aezoo runs` shows its progress)")
    if target is not None:
        refuse_overwrite(target, force)
    picture = run_curves(info.rows, Path(path).name, info.best_epoch)
    if target is not None:
        write_picture(target, picture)
    return picture
