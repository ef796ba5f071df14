"""Charts drawn with matplotlib: a run's loss curves, several runs' curves overlaid.

Each chart is a ``matplotlib.figure.Figure`` on the Agg canvas: no pyplot, no global
backend, so it draws on a headless machine and leaves a notebook's matplotlib as it was.
matplotlib's import and a drawing cost more than a small model's epoch, so they stay off
the training path: the ``curves`` callback redraws at most every few seconds, on the
run's writer thread, and once at the end; ``aezoo plot RUN`` draws on demand.
Input rows are metrics.jsonl rows (dicts with ``epoch``, ``train_loss``, ``val_loss``,
``lr`` and the ``train_TERM``/``val_TERM`` terms).
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.epochs import best, column, finite, terms_of
from aezoo.viz import write_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
WIDTH, HEIGHT = 720, 450  # pixels of one panel's picture
# matplotlib's default cycle (tab10), spelled out: a run's colours do not depend on rcParams.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
LR_COLOR, MARK = "#969696", "#c81e1e"
LOG_RATIO = 20.0  # values spanning more than this factor are drawn on a log scale
PANEL_RATIO = 5.0  # terms whose typical value is this far from the loss's: their own panel
LEGEND_COLUMNS = 4  # entries a row in the legend below the panels


def figure(width: int = WIDTH, height: int = HEIGHT, panels: int = 1, columns: int = 1,
           ratios: Sequence[float] | None = None) -> tuple[Figure, list[Axes]]:
    """A blank ``width`` x ``height`` pixel figure on the Agg canvas with ``panels`` axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _chart_class()(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    rows = math.ceil(panels / columns)
    axes = fig.subplots(rows, columns, squeeze=False,
                        gridspec_kw={"height_ratios": ratios} if ratios else None)
    for ax in axes.flat:
        ax.grid(True, color="#e8e8e8", linewidth=0.8)
        ax.set_axisbelow(True)
    return fig, list(axes.flat)


@functools.cache
def _chart_class() -> type[Figure]:
    from matplotlib.figure import Figure

    class Chart(Figure):
        """A Figure that Jupyter shows as its PNG, with no pyplot backend set up."""

        def _repr_png_(self) -> bytes:
            return png_bytes(self)

    return Chart


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def write_picture(path: str | Path, fig: Figure) -> Path:
    """Atomically write ``fig`` as a PNG (the same errors as every aezoo picture)."""
    return write_bytes(path, png_bytes(fig))


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of ``key``; a missing or non-finite value is NaN (a gap)."""
    kept = [r for r in rows if isinstance(r.get("epoch"), int)]
    return ([r["epoch"] for r in kept],
            [float(r[key]) if finite(r.get(key)) else math.nan for r in kept])


def log_scale(values: Sequence[float]) -> bool:
    """Whether ``values`` are best read on a log scale: all positive, spanning > LOG_RATIO."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > LOG_RATIO


def _typical(values: Sequence[float]) -> float | None:
    kept = sorted(abs(v) for v in values if math.isfinite(v) and v != 0)
    return kept[len(kept) // 2] if kept else None


def by_scale(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
             ) -> tuple[list[str], list[str]]:
    """``keys`` (train_loss, val_loss first) split into the loss's scale and another (a
    VAE's KL beside its reconstruction term, a small penalty beside the loss)."""
    loss = _typical(_series(rows, "val_loss")[1]) or _typical(_series(rows, "train_loss")[1])
    same, other = list(keys[:2]), list[str]()
    for key in keys[2:]:
        t = _typical(_series(rows, key)[1])
        far = loss is not None and t is not None and max(t / loss, loss / t) > PANEL_RATIO
        (other if far else same).append(key)
    return same, other


def _draw(ax: Axes, rows: Sequence[Mapping[str, Any]], key: str, color: str,
          **style: Any) -> list[float]:
    epochs, values = _series(rows, key)
    one = sum(math.isfinite(v) for v in values) == 1  # a lone point needs a marker
    ax.plot(epochs, values, color=color, label=key, marker="o" if one else None,
            markersize=4, **style)
    return values


def _epochs(ax: Axes) -> None:
    """Whole epochs on the x axis; one epoch alone gets room on either side."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = ax.get_xlim()
    if hi - lo < 1:
        ax.set_xlim((lo + hi) / 2 - 1, (lo + hi) / 2 + 1)


def run_curves(rows: Sequence[Mapping[str, Any]], title: str = "",
               best_epoch: int | None = None) -> Figure:
    """One run's picture: train and val loss, each named term (train dashed), the lr on a
    second axis when it changes, the best epoch marked (``best_epoch``, the run's by
    ``train.monitor``; else the lowest val_loss); terms of another scale than the loss in a
    second panel below."""
    terms = terms_of(k for r in rows for k in r)
    colors = {"train_loss": PALETTE[0], "val_loss": PALETTE[1]}  # in the legend's order
    for i, term in enumerate(terms):
        color = PALETTE[(i + 2) % len(PALETTE)]
        if any(column("train", term) in r for r in rows):
            colors[column("train", term)] = color
        colors[column("val", term)] = color
    keys = list(colors)
    same, other = by_scale(rows, keys)
    legend_rows = math.ceil((len(keys) + 2) / LEGEND_COLUMNS)  # + best, lr
    fig, axes = figure(height=(HEIGHT * 5 // 3 if other else HEIGHT) + 18 * legend_rows,
                       panels=2 if other else 1, ratios=(3, 2) if other else None)
    for ax, group in zip(axes, (same, other), strict=False):
        values = [v for key in group for v in _draw(
            ax, rows, key, colors[key],
            linewidth=2 if key.endswith("_loss") else 1.2,
            zorder=3 if key.endswith("_loss") else 2,  # the loss over a term equal to it
            linestyle="--" if key.startswith("train_") and key != "train_loss" else "-")]
        if log_scale(values):
            ax.set_yscale("log")
        _epochs(ax)
    top = axes[0]
    top.set_ylabel("loss")
    if title:
        top.set_title(title)
    if other:
        axes[1].set_title("terms on another scale", fontsize="medium")
        axes[1].set_ylabel("term")
    found = _best_row(rows, "val_loss", best_epoch)
    if found is not None and finite(found.get("val_loss")):
        x, y = found["epoch"], float(found["val_loss"])
        top.plot([x], [y], "o", markersize=10, markerfacecolor="none", markeredgecolor=MARK,
                 markeredgewidth=2, label=f"best epoch {x}: val_loss {y:.5f}")
    lrs = {float(r["lr"]) for r in rows if finite(r.get("lr"))}
    handles = [h for ax in axes for h in ax.get_legend_handles_labels()[0]]
    if len(lrs) > 1:
        lr_ax = top.twinx()
        (line,) = lr_ax.plot(*_series(rows, "lr"), color=LR_COLOR, linestyle=":",
                             linewidth=1.5, label="lr")
        lr_ax.set_ylabel("lr", color=LR_COLOR)
        lr_ax.tick_params(axis="y", colors=LR_COLOR)
        if log_scale(list(lrs)):
            lr_ax.set_yscale("log")
        handles.append(line)
    elif lrs:  # named in the legend, where it covers nothing
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color=LR_COLOR, linestyle=":",
                              label=f"lr {next(iter(lrs)):.4g} (constant)"))
    legend(fig, handles)
    return fig


def _best_row(rows: Sequence[Mapping[str, Any]], key: str, epoch: int | None
              ) -> Mapping[str, Any] | None:
    """Row ``epoch`` (the run's best by ``train.monitor``), else the lowest ``key``'s."""
    if epoch is None:
        found = best(rows, key)
        return found[0] if found else None
    return next((r for r in rows if r.get("epoch") == epoch), None)


def legend(fig: Figure, handles: list[Any]) -> None:
    """Every line named below the panels, where it covers no curve."""
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize="small",
                   ncols=min(len(handles), LEGEND_COLUMNS), frameon=False)


def overlay_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "val_loss",
                   title: str = "", best_epochs: Mapping[str, int | None] | None = None
                   ) -> Figure:
    """Several runs' ``key`` curves on one axis, each run's best epoch (``best_epochs``,
    by each run's ``train.monitor``; else its lowest ``key``) named in the legend."""
    fig, (ax,) = figure(height=HEIGHT + 18 * math.ceil(len(runs) / LEGEND_COLUMNS))
    values: list[float] = []
    for i, (name, rows) in enumerate(runs.items()):
        found = _best_row(rows, key, (best_epochs or {}).get(name))
        tag = ("" if found is None or not finite(found.get(key))
               else f"  (best epoch {found['epoch']}: {float(found[key]):.5f})")
        epochs, ys = _series(rows, key)
        one = sum(math.isfinite(v) for v in ys) == 1
        ax.plot(epochs, ys, color=PALETTE[i % len(PALETTE)], linewidth=2, label=name + tag,
                marker="o" if one else None)
        values += ys
    if log_scale(values):
        ax.set_yscale("log")
    ax.set(title=title or key, ylabel=key)
    _epochs(ax)
    legend(fig, ax.get_legend_handles_labels()[0])
    return fig
