"""Loss-curve pictures drawn with Pillow: a run's curves, several runs' val curves overlaid.

Pillow rather than matplotlib: the picture is rewritten every epoch, and matplotlib's
import (~0.5 s) and savefig (tens of ms) would cost more than a small model's epoch.
Here a picture costs a few milliseconds: it is drawn on a palette image (one byte a
pixel, a third of RGB's to compress), with anti-aliased text from cached glyph masks.
Input rows are metrics.jsonl rows (dicts with ``epoch``, ``train_loss``, ``val_loss``,
``lr`` and the ``train_TERM``/``val_TERM`` terms).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.viz import write_bytes

if TYPE_CHECKING:
    from PIL import Image, ImageFont

Color = tuple[int, int, int]
WIDTH, HEIGHT = 720, 450
LEFT, RIGHT, TOP, BOTTOM = 64, 64, 30, 40  # margins around the plot area
# Tableau-like colours; train solid, val solid in its own colour; terms thinner, dashed.
PALETTE: tuple[Color, ...] = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                              (148, 103, 189), (140, 86, 75), (227, 119, 194),
                              (127, 127, 127), (188, 189, 34), (23, 190, 207))
LR_COLOR: Color = (150, 150, 150)
GRID: Color = (232, 232, 232)
INK: Color = (40, 40, 40)
MARK: Color = (200, 30, 30)
LOG_RATIO = 20.0  # values spanning more than this factor are drawn on a log scale


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[tuple[float, float]]  # (x, y); non-finite y break the line
    color: Color
    width: int = 2
    dashed: bool = False


WHITE: Color = (255, 255, 255)
RAMP = 8  # anti-aliasing levels of text on white
DOT = 3.0  # pixels between the dots of a dashed line


def _blend(color: Color, t: float) -> Color:
    return tuple(round(255 + (c - 255) * t) for c in color)  # type: ignore[return-value]


_INKS: dict[Color, int] = {WHITE: 0}  # one palette for every picture, so glyphs cache


def ink(color: Color) -> int:
    index = _INKS.get(color)
    if index is None:
        if len(_INKS) >= 256:
            return min(_INKS.values(), key=lambda i: abs(i - 1))  # pragma: no cover
        index = _INKS[color] = len(_INKS)
    return index


class Canvas:
    """A palette image, inks by colour, and text that keeps its anti-aliasing."""

    def __init__(self, size: tuple[int, int]) -> None:
        from PIL import Image, ImageDraw

        self.image = Image.new("P", size, 0)
        self.draw = ImageDraw.Draw(self.image)
        self.font = _font()

    def line(self, xy: Sequence[float] | Sequence[tuple[float, float]], color: Color,
             width: int = 1) -> None:
        self.draw.line(xy, fill=ink(color), width=width)  # type: ignore[arg-type]

    def text(self, xy: tuple[float, float], text: str, color: Color = (40, 40, 40),
             anchor: str = "la") -> None:
        inked, mask, (dx, dy) = _glyphs(text, anchor, color)
        if mask is not None:
            self.image.paste(inked, (round(xy[0]) + dx, round(xy[1]) + dy), mask)

    def finish(self) -> Image.Image:
        self.image.putpalette([v for c in sorted(_INKS, key=_INKS.__getitem__) for v in c])
        return self.image


@lru_cache(maxsize=4096)
def _glyphs(text: str, anchor: str, color: Color) -> tuple[Any, Any, tuple[int, int]]:
    """``text`` rendered once: a palette image of its pixels in ``color`` blended with
    white, a mask of them, and the offset from the anchor point."""
    from PIL import Image, ImageDraw

    font = _font()
    left, top, right, bottom = (int(v) for v in font.getbbox(text, anchor=anchor))
    if right <= left or bottom <= top:
        return None, None, (0, 0)
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor=anchor)
    levels = [ink(_blend(color, k / (RAMP - 1))) for k in range(RAMP)]
    lut = [levels[round(v / 255 * (RAMP - 1))] for v in range(256)]
    inked = Image.frombytes("P", mask.size, mask.point(lut).tobytes())
    return inked, mask.point([0] + [255] * 255), (left, top)


@lru_cache(maxsize=4096)
def _text_width(text: str) -> float:
    return float(_font().getlength(text))


@lru_cache(maxsize=1)
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=12)
    except (OSError, ValueError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and -math.inf < v < math.inf


def _nice(span: float, target: int = 5) -> float:
    raw = span / max(target, 1)
    base = 10.0 ** math.floor(math.log10(raw))
    return next((m * base for m in (1, 2, 2.5, 5, 10) if m * base >= raw), 10 * base)


def linear_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = _nice(hi - lo, target)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) for k in range(first, int(math.floor(hi / step + 1e-9)) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    for mantissas in ((1,), (1, 2, 5)):
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)),
                                                math.ceil(math.log10(hi)) + 1)
                 for m in mantissas if lo <= m * 10.0 ** k <= hi]
        if len(ticks) >= 3:
            return ticks
    return [t for t in linear_ticks(lo, hi) if t > 0] or [lo, hi]  # within a decade


def label(value: float) -> str:
    """A tick label: short, never cut (``0.125``, ``2e-05``, ``1,000``)."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) < 1e-3:
        return f"{value:.0e}".replace("e-0", "e-")
    return f"{value:.4g}"


class Axis:
    """Maps data values to pixels (linear or log) between ``start`` and ``end`` pixels."""

    def __init__(self, lo: float, hi: float, start: float, end: float, log: bool) -> None:
        self.log = log
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi - lo < 1e-12:
            pad = abs(hi) * 0.05 or 0.5
            lo, hi = lo - pad, hi + pad
        else:
            pad = (hi - lo) * 0.04
            lo, hi = lo - pad, hi + pad
        self.lo, self.hi, self.start, self.end = lo, hi, start, end

    def __call__(self, v: float) -> float:
        t = math.log10(v) if self.log else v
        return self.start + (t - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def bounds(self) -> tuple[float, float]:
        lo, hi = self.lo, self.hi
        return (10 ** lo, 10 ** hi) if self.log else (lo, hi)

    def ticks(self) -> list[float]:
        lo, hi = self.bounds()
        return log_ticks(lo, hi) if self.log else linear_ticks(lo, hi)


def _value_axis(values: list[float], start: float, end: float, log: bool | None) -> Axis:
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if log is None:
        log = lo > 0 and hi / lo > LOG_RATIO
    if log and lo <= 0:
        log = False
    return Axis(lo, hi, start, end, log)


def _polyline(canvas: Canvas, pts: list[tuple[float, float]], color: Color, width: int,
              dashed: bool) -> None:
    if len(pts) == 1:
        x, y = pts[0]
        canvas.draw.ellipse((x - width, y - width, x + width, y + width), fill=ink(color))
        return
    if not dashed:
        canvas.line(pts, color, width)
        return
    dots: list[tuple[float, float]] = []  # dashed: a dot every DOT pixels, one call
    ahead = 0.0
    for (xa, ya), (xb, yb) in zip(pts, pts[1:], strict=False):
        length = math.hypot(xb - xa, yb - ya)
        while ahead <= length and length > 0:
            dots.append((xa + (xb - xa) * ahead / length, ya + (yb - ya) * ahead / length))
            ahead += DOT
        ahead -= length
    canvas.draw.point(dots, fill=ink(color))


LEGEND_ROW = 16


def _legend_layout(lines: Sequence[Line], width: int
                   ) -> list[list[tuple[Line, float]]]:
    """Legend entries in rows below the plot: (line, its width)."""
    rows: list[list[tuple[Line, float]]] = [[]]
    used = float(LEFT)
    for ln in lines:
        item = 30 + _text_width(ln.label) + 18
        if rows[-1] and used + item > width - 8:
            rows.append([])
            used = float(LEFT)
        rows[-1].append((ln, item))
        used += item
    return rows if rows[0] else []


def plot(lines: Sequence[Line], *, title: str = "", xlabel: str = "epoch",
         ylabel: str = "loss", right: Line | None = None, right_label: str = "lr",
         best: tuple[float, float, str] | None = None, log: bool | None = None,
         size: tuple[int, int] = (WIDTH, HEIGHT), note: str = "", xlog: bool = False
         ) -> Image.Image:
    """Draw ``lines`` on one value axis (log scale when their values span more than
    ``LOG_RATIO``, unless ``log`` says), ``right`` on a second axis, ``best`` = (x, y,
    text) marked, a legend of every line below the plot (the picture grows to hold it)."""
    w, h_plot = size
    legend = [*lines, *([right] if right is not None else [])]
    rows = _legend_layout(legend, w)
    h = h_plot + LEGEND_ROW * len(rows) + (6 if rows else 0)
    canvas = Canvas((w, h))
    x0, x1, y0, y1 = LEFT, w - RIGHT, TOP, h_plot - BOTTOM
    xs = [x for ln in legend for x, _ in ln.points]
    ys = [y for ln in lines for _, y in ln.points if _finite(y)]
    xlog = xlog and bool(xs) and min(xs) > 0
    xa = Axis(min(xs, default=0.0), max(xs, default=1.0), x0, x1, xlog)
    ya = _value_axis(ys, y1, y0, log)
    xt = xa.ticks() if xlog else [t for t in linear_ticks(*xa.bounds(), target=8)
                                  if t == int(t)] or linear_ticks(*xa.bounds(), target=8)
    for t in xt:
        px = xa(t)
        canvas.line((px, y0, px, y1), GRID)
        canvas.text((px, y1 + 4), label(t), INK, "ma")
    for t in ya.ticks():
        py = ya(t)
        canvas.line((x0, py, x1, py), GRID)
        canvas.text((x0 - 5, py), label(t), INK, "rm")
    canvas.draw.rectangle((x0, y0, x1, y1), outline=ink(INK))
    canvas.text(((x0 + x1) / 2, y1 + 20), xlabel + (" (log scale)" if xa.log else ""), INK,
                "ma")
    canvas.text((6, y0 - 8), ylabel + (" (log scale)" if ya.log else ""), INK, "ls")
    if title:
        canvas.text(((x0 + x1) / 2, y0 - 8), title, INK, "ms")
    if right is not None:
        rv = [y for _, y in right.points if _finite(y)]
        if rv:
            ra = _value_axis(rv, y1, y0, False)
            for t in ra.ticks():
                py = ra(t)
                if y0 <= py <= y1:
                    canvas.text((x1 + 5, py), label(t), LR_COLOR, "lm")
            canvas.text((w - 6, y0 - 8), right_label, LR_COLOR, "rs")
            _draw_line(canvas, right, xa, ra)
    for ln in lines:
        _draw_line(canvas, ln, xa, ya)
    box = (x0 + 1, y0 + 1, x1 - 1, y1 - 1)
    if best is not None and _finite(best[1]) and (not ya.log or best[1] > 0):
        bx, by = xa(best[0]), ya(best[1])
        canvas.draw.ellipse((bx - 5, by - 5, bx + 5, by + 5), outline=ink(MARK), width=2)
        spots = [((bx + dx, by + dy), anchor) for dx, dy, anchor in
                 ((-8, -8, "rb"), (8, -8, "lb"), (-8, 8, "rt"), (8, 8, "lt"),
                  (-8, -30, "rb"), (8, -30, "lb"), (-8, 30, "rt"), (8, 30, "lt"))]
        xy, anchor = _free_spot(canvas, best[2], spots, box)
        canvas.text(xy, best[2], MARK, anchor)
    if note:
        spots = [((x0 + 6, y1 - 6), "ld"), ((x1 - 6, y1 - 6), "rd"), ((x0 + 6, y0 + 6), "la"),
                 ((x1 - 6, y0 + 6), "ra")]
        xy, anchor = _free_spot(canvas, note, spots, box)
        canvas.text(xy, note, LR_COLOR, anchor)
    for r, entries in enumerate(rows):
        cx, cy = float(LEFT), h_plot + LEGEND_ROW * r + 6
        for ln, item in entries:
            _polyline(canvas, [(cx, cy), (cx + 24, cy)], ln.color, ln.width, ln.dashed)
            canvas.text((cx + 30, cy), ln.label, INK, "lm")
            cx += item
    return canvas.finish()


def _free_spot(canvas: Canvas, text: str,
               spots: Sequence[tuple[tuple[float, float], str]],
               box: tuple[float, float, float, float]
               ) -> tuple[tuple[float, float], str]:
    """The first of ``spots`` (a point and a text anchor) where ``text`` stays inside
    ``box`` and covers the fewest pixels already drawn (lines, the grid): labels that do
    not sit on the curves."""
    import numpy as np

    pixels = np.asarray(canvas.image)
    grid = ink(GRID)
    best: tuple[int, int] | None = None
    chosen = spots[0]
    for xy, anchor in spots:
        left, top, right, bottom = _font().getbbox(text, anchor=anchor)
        x, y = round(xy[0]), round(xy[1])
        area = (x + int(left), y + int(top), x + int(right), y + int(bottom))
        inside = (area[0] >= box[0] and area[1] >= box[1] and area[2] <= box[2]
                  and area[3] <= box[3])
        region = pixels[max(area[1], 0):max(area[3], 0), max(area[0], 0):max(area[2], 0)]
        covered = int(((region != 0) & (region != grid)).sum())
        score = (0 if inside else 1, covered)
        if best is None or score < best:
            best, chosen = score, (xy, anchor)
        if score == (0, 0):
            break
    return chosen


def _draw_line(canvas: Canvas, ln: Line, xa: Axis, ya: Axis) -> None:
    run: list[tuple[float, float]] = []
    for x, y in [*ln.points, (math.nan, math.nan)]:
        if _finite(y) and (not ya.log or y > 0):
            run.append((xa(x), ya(y)))
        elif run:
            _polyline(canvas, run, ln.color, ln.width, ln.dashed)
            run = []


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # mostly white: fast, still small
    return buf.getvalue()


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> list[tuple[float, float]]:
    return [(float(r["epoch"]), _number(r.get(key))) for r in rows
            if isinstance(r.get("epoch"), int)]


def best_row(rows: Sequence[Mapping[str, Any]], key: str = "val_loss"
             ) -> Mapping[str, Any] | None:
    """The row with the lowest finite ``key`` (the first of equals), or None."""
    good = [r for r in rows if _finite(r.get(key))]
    return min(good, key=lambda r: r[key]) if good else None


def run_curves(rows: Sequence[Mapping[str, Any]], title: str = "") -> Image.Image:
    """One run's picture: train and val loss, each named term (train dashed), the lr on a
    second axis when it changes, the best epoch marked."""
    lines = [Line("train_loss", _series(rows, "train_loss"), PALETTE[0]),
             Line("val_loss", _series(rows, "val_loss"), PALETTE[1])]
    terms = list(dict.fromkeys(k[4:] for r in rows for k in r
                               if k.startswith("val_") and k != "val_loss"))
    for i, term in enumerate(terms):
        color = PALETTE[(i + 2) % len(PALETTE)]
        if any(f"train_{term}" in r for r in rows):
            lines.append(Line(f"train_{term}", _series(rows, f"train_{term}"), color, 1,
                              dashed=True))
        lines.append(Line(f"val_{term}", _series(rows, f"val_{term}"), color, 1))
    lrs = {float(r["lr"]) for r in rows if _finite(r.get("lr"))}
    right = Line("lr", _series(rows, "lr"), LR_COLOR, 1, dashed=True) if len(lrs) > 1 else None
    note = f"lr {label(next(iter(lrs)))} (constant)" if len(lrs) == 1 else ""
    best = best_row(rows)
    mark = None if best is None else (float(best["epoch"]), float(best["val_loss"]),
                                      f"best {best['val_loss']:.5f} @ epoch {best['epoch']}")
    same, other = _by_scale(lines)
    if not other:
        return plot(lines, title=title, right=right, best=mark, note=note)
    top = plot(same, title=title, right=right, best=mark, note=note)
    bottom = plot(other, title="terms on another scale", ylabel="term",
                  size=(WIDTH, HEIGHT * 2 // 3))
    return _stacked(top, bottom)


PANEL_RATIO = 5.0  # terms whose typical value is this far from the loss's: their own panel


def _by_scale(lines: list[Line]) -> tuple[list[Line], list[Line]]:
    """The loss curves with the terms of their scale, and the terms of another scale (a
    VAE's KL beside its reconstruction term, a small penalty beside the loss)."""
    def typical(ln: Line) -> float | None:
        values = sorted(abs(y) for _, y in ln.points if _finite(y) and y != 0)
        return values[len(values) // 2] if values else None

    loss = typical(lines[1]) or typical(lines[0])
    if loss is None:
        return lines, []
    same, other = lines[:2], list[Line]()
    for ln in lines[2:]:
        t = typical(ln)
        far = t is not None and max(t / loss, loss / t) > PANEL_RATIO
        (other if far else same).append(ln)
    return same, other


def _stacked(top: Image.Image, bottom: Image.Image) -> Image.Image:
    from PIL import Image as PILImage

    both = PILImage.new("P", (max(top.width, bottom.width), top.height + bottom.height), 0)
    both.putpalette(bottom.getpalette() or [])  # the later: inks only ever get added
    both.paste(top, (0, 0))
    both.paste(bottom, (0, top.height))
    return both


def overlay_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], key: str = "val_loss",
                   title: str = "") -> Image.Image:
    """Several runs' ``key`` curves on one axis, each run's best epoch marked in the legend."""
    lines = []
    for i, (name, rows) in enumerate(runs.items()):
        best = best_row(rows, key)
        tag = "" if best is None else f"  (best {best[key]:.5f} @ {best['epoch']})"
        lines.append(Line(f"{name}{tag}", _series(rows, key), PALETTE[i % len(PALETTE)]))
    return plot(lines, title=title or key, ylabel=key)


def write_picture(path: str | Path, image: Image.Image) -> Path:
    """Atomically write ``image`` as a PNG (the same errors as every aezoo picture)."""
    return write_bytes(path, png_bytes(image))
