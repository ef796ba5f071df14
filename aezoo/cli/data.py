"""``aezoo data list|fetch|info``: the dataset sources, their cache and their contents."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aezoo.cli._common import console, err_console, warn

if TYPE_CHECKING:
    from aezoo.data.base import ArrayDataset
    from aezoo.data.catalog import Resolved
    from aezoo.data.source import DatasetSource, Progress
    from aezoo.specs import RunSpec

data_app = typer.Typer(
    help="Datasets: list the sources, download and verify them, inspect their splits.\n\n"
    "Downloads go to `$AEZOO_DATA`, else `$XDG_CACHE_HOME/aezoo`, else `~/.cache/aezoo`; "
    "see docs/data.md for offline use.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


@contextmanager
def progress_bars(out: Console | None = None) -> Iterator[Progress]:
    """A progress callback for the data layer: rich bars on a terminal, plain lines else."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    out = out or err_console
    if not out.is_terminal:
        def plain(label: str, done: int, total: int | None, unit: str) -> None:
            if done == 0:
                amount = human_bytes(total) if unit == "bytes" else f"{total or '?'} {unit}"
                out.print(f"{'downloading' if unit == 'bytes' else 'reading'} {label} "
                          f"({amount})", highlight=False)
        yield plain
        return
    bars = Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.fields[amount]}"), TimeRemainingColumn(),
                    console=out, transient=True)
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}

    def update(label: str, done: int, total: int | None, unit: str) -> None:
        if done == 0:
            started[label] = time.perf_counter()
        rate = done / max(time.perf_counter() - started.get(label, 0.0), 1e-6)
        amount = (f"{human_bytes(done)} / {human_bytes(total)}  {human_bytes(int(rate))}/s"
                  if unit == "bytes" else
                  f"{done:,} / {total:,} {unit}" if total else f"{done:,} {unit}")
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total, amount=amount)
        elif done == 0:  # a retry from another mirror
            bars.reset(tasks[label], total=total)
        bars.update(tasks[label], completed=done, total=total, amount=amount)

    with bars:
        yield update


def prefetch(name: str) -> None:
    """Download (and verify) what ``name`` needs, with progress bars; no-op for local data."""
    from aezoo.data.catalog import resolve, source_dir
    from aezoo.data.download import ensure_files

    source = resolve(name).source
    if source.files:
        with progress_bars() as progress:
            ensure_files(source, source_dir(source), progress=progress)


def prepare_data(spec: RunSpec) -> None:
    """Before training: a model that cannot serve the data's (declared) shape fails now,
    not after a download; then download and verify what the dataset needs."""
    from aezoo.data import declared_shape

    shape = declared_shape(spec.data)
    if shape is not None and tuple(spec.model.input_shape) != shape:
        from aezoo.config import resolve_model
        from aezoo.model import from_spec

        from_spec(resolve_model(spec.model.model_copy(update={"input_shape": shape})))
    prefetch(spec.data.name)


def _sources() -> list[tuple[str, DatasetSource]]:
    from aezoo import registry
    from aezoo.data import catalog
    from aezoo.errors import PluginError

    found = []
    for entry in catalog.entries():
        try:
            found.append((entry.name, catalog.load_entry(entry)))
        except PluginError:
            if registry.strict():
                raise
    for failure in registry.failures():
        e = failure.entry
        if e.kind == catalog.KIND:
            warn(f"plugin {e.dist} {e.version}: dataset '{e.name}' is unavailable "
                 f"({failure.message}); see `aezoo plugins`")
    return found


def _status(source: DatasetSource) -> tuple[str, int | None]:
    """(cached column, bytes on disk)."""
    from aezoo.data.catalog import cache_status

    if source.embedded:
        return "embedded", None
    if source.takes_path:
        return "-", None
    if not source.files:
        return "-", None
    status = cache_status(source)
    if status.complete:
        return "yes", status.bytes
    if status.present:
        return f"partial {status.present}/{status.total}", status.bytes
    return "no", status.bytes or None


def _shape(shape: tuple[int, ...] | None) -> str:
    return "x".join(map(str, shape)) if shape else "from data"


def _short(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {split}" for split, n in counts.items()) or "-"


@data_app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List dataset sources: shape, splits, whether cached, size on disk, license.

    Reads descriptors and the cache directory only: nothing is loaded or downloaded.
    """
    from aezoo.data.catalog import data_root, source_dir

    rows: list[dict[str, Any]] = []
    for name, source in _sources():
        cached, used = _status(source)
        rows.append({"name": f"{name}:PATH" if source.takes_path else name,
                     "shape": list(source.shape) if source.shape else None,
                     "splits": dict(source.counts), "cached": cached, "bytes": used,
                     "directory": str(source_dir(source)) if source.files else None,
                     "license": source.license, "description": source.description})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    wide = console.width >= 120
    table = Table(title="aezoo datasets", title_justify="left")
    for col in ("name", "shape", "train/test", "cached", "on disk", "license",
                *(("description",) if wide else ())):
        table.add_column(col, justify="right" if col == "on disk" else "left")
    for r in rows:
        style = {"yes": "green", "no": "dim"}.get(r["cached"], "")
        splits = r["splits"]
        table.add_row(escape(r["name"]), _shape(r["shape"]) if r["shape"] else "-",
                      f"{_short(splits.get('train'))}/{_short(splits.get('test'))}"
                      if splits else "-",
                      f"[{style}]{r['cached']}[/]" if style else r["cached"],
                      human_bytes(r["bytes"]) if r["bytes"] else "-",
                      r["license"].split(" (")[0], *((r["description"],) if wide else ()))
    console.print(table)
    console.print(f"cache: {data_root()} (set AEZOO_DATA to move it)", highlight=False)


@data_app.command("fetch")
def fetch_command(
    names: list[str] = typer.Argument(..., metavar="NAME",
                                      help="Datasets to download, e.g. mnist cifar10."),
    force: bool = typer.Option(False, "--force", help="Download again even if cached."),
) -> None:
    """Download datasets into the cache and verify their SHA-256; verify cached copies.

    Tries each mirror in turn. A download is written to a temporary file and renamed
    only once complete and verified, so an interruption never leaves a file that looks
    valid. Offline: put the files into the directory the error names, by hand.
    """
    from aezoo.data.catalog import resolve, source_dir
    from aezoo.data.download import ensure_files

    for name in names:
        source = resolve(name).source
        if source.embedded or source.takes_path or not source.files:
            why = ("ships inside its package" if source.embedded
                   else "reads your files" if source.takes_path else "declares no files")
            console.print(f"{source.name} {why}: nothing to fetch", highlight=False)
            continue
        directory = source_dir(source)
        with progress_bars() as progress:
            paths = ensure_files(source, directory, progress=progress, force=force)
        total = sum(p.stat().st_size for p in paths.values())
        console.print(f"{source.name}: {len(paths)} file{'s' * (len(paths) != 1)} verified "
                      f"in {directory} ({human_bytes(total)})", highlight=False)


@data_app.command("info")
def info_command(
    name: str = typer.Argument(..., metavar="NAME",
                               help="Dataset, e.g. cifar10 or folder:PATH."),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction", help="Validation share of train [default: 0.1]."),
    image_size: str | None = typer.Option(None, "--image-size", help="Resize to N or HxW."),
    channels: int | None = typer.Option(None, "--channels", help="Convert to 1 or 3 channels."),
    split_seed: int | None = typer.Option(None, "--split-seed",
                                          help="Seed of the validation split [default: 0]."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Describe a dataset: source, license, files, cache; and, when it is available
    without a download, its shape and the image count of every split (train, val, test).
    """
    from aezoo.data.catalog import cache_status, resolve, source_dir
    from aezoo.specs import DataSpec, validate

    values = {"name": name, "val_fraction": val_fraction, "image_size": image_size,
              "channels": channels, "split_seed": split_seed}
    spec: DataSpec = validate(DataSpec, {k: v for k, v in values.items() if v is not None},
                              "data")
    found = resolve(name)
    source = found.source
    available = (source.embedded or source.takes_path or not source.files
                 or cache_status(source).complete)
    dataset = None
    if available:
        from aezoo.data import load_dataset

        with progress_bars() as progress:
            dataset = load_dataset(spec, progress=progress, offline=True)
    info = _info(found, spec, dataset, source_dir(source) if source.files else None)
    if as_json:
        console.print_json(json.dumps(info))
    else:
        _print_info(info, source)


def _info(found: Resolved, spec: Any, dataset: ArrayDataset | None,
          directory: Any) -> dict[str, Any]:
    source = found.source
    info: dict[str, Any] = {
        "name": spec.name, "description": source.description, "license": source.license,
        "homepage": source.homepage or None, "citation": source.citation or None,
        "provided_by": f"{found.entry.dist} {found.entry.version}",
        "declared_shape": list(source.shape) if source.shape else None,
        "declared_splits": dict(source.counts),
        "files": [{"name": f.name, "bytes": f.size, "sha256": f.sha256, "md5": f.md5}
                  for f in source.files],
        "mirrors": list(source.mirrors),
        "directory": str(directory) if directory else None,
        "loaded": dataset is not None,
    }
    if dataset is not None:
        import numpy as np

        arrays = {"train": (dataset.train, dataset.train_labels),
                  "val": (dataset.val, dataset.val_labels)}
        if dataset.test is not None:
            arrays["test"] = (dataset.test, dataset.test_labels)
        info["shape"] = list(dataset.shape)
        info["dtype"] = "uint8"
        info["val_fraction"] = spec.val_fraction
        info["splits"] = {
            split: {"images": len(images),
                    "classes": None if labels is None else len(np.unique(labels)),
                    "bytes": int(images.nbytes)}
            for split, (images, labels) in arrays.items()}
    return info


def _print_info(info: dict[str, Any], source: DatasetSource) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    # Plugin-provided text and paths are shown as they are, never read as rich markup.
    table.add_row("dataset", escape(info["name"]))
    table.add_row("description", escape(info["description"]))
    table.add_row("license", escape(info["license"]))
    for key in ("homepage", "citation"):
        if info[key]:
            table.add_row(key, escape(info[key]))
    table.add_row("provided by", escape(info["provided_by"]))
    if info["directory"]:
        table.add_row("cache", escape(str(info["directory"])))
    console.print(table)
    if info["files"]:
        files = Table(title="files (SHA-256 verified)", title_justify="left")
        for col in ("file", "size", "sha256"):
            files.add_column(col, overflow="fold")
        for f in info["files"]:
            files.add_row(f["name"], human_bytes(f["bytes"]), f["sha256"])
        console.print(files)
    if not info["loaded"]:
        console.print(f"shape {_shape(info['declared_shape'])}; splits "
                      f"{_counts(info['declared_splits'])}; not downloaded yet: run "
                      f"`aezoo data fetch {source.name}`", highlight=False)
        return
    splits = Table(title=f"shape {_shape(info['shape'])}, uint8 (scaled to [0, 1] per batch)",
                   title_justify="left")
    for col in ("split", "images", "classes", "memory"):
        splits.add_column(col, justify="left" if col == "split" else "right")
    for split, s in info["splits"].items():
        splits.add_row(split, f"{s['images']:,}", "-" if s["classes"] is None
                       else str(s["classes"]), human_bytes(s["bytes"]))
    console.print(splits)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
