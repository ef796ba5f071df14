"""``aezoo data list|fetch|info``: the dataset sources, their cache and their contents."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aezoo.cli import tables
from aezoo.cli.common import console, err_console, say, warn_unavailable
from aezoo.cli.tables import ID, NUMBER, TEXT
from aezoo.errors import DataError, UsageError
from aezoo.protocols import format_shape

if TYPE_CHECKING:
    from aezoo.data.source import DatasetSource, Progress
    from aezoo.specs import DataSpec

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
                verb = "" if label.split(" ", 1)[0].endswith("ing") else (  # "verifying X"
                    "downloading " if unit == "bytes" else "reading ")
                out.print(f"{verb}{label} ({amount})", highlight=False)
        yield plain
        return
    bars = Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.fields[amount]}"), TimeRemainingColumn(),
                    console=out, transient=True)
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}

    def update(label: str, done: int, total: int | None, unit: str) -> None:
        if not tasks:  # drawn from the first report on: nothing is shown for no work
            bars.start()
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

    try:
        yield update
    finally:
        bars.stop()


def _shape(shape: tuple[int, ...] | None) -> str:
    return format_shape(shape) if shape else "from data"


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
    from aezoo.data.catalog import KIND, data_root
    from aezoo.data.info import source_rows

    rows = source_rows()
    warn_unavailable(KIND)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    wide = console.width >= 120
    with_params = any(r["params"] for r in rows)  # a column only where a source has some
    table = tables.table([("name", ID), ("shape", ID), ("train/test", ID), ("cached", ID),
                          ("on disk", NUMBER), ("license", TEXT),
                          *((("params", TEXT),) if with_params else ()),
                          *((("description", TEXT),) if wide else ())],
                         title="aezoo datasets", title_justify="left")
    for r in rows:
        style = {"yes": "green", "no": "dim"}.get(r["cached"], "")
        splits = r["splits"]
        table.add_row(escape(r["name"]), _shape(r["shape"]) if r["shape"] else "-",
                      f"{_short(splits.get('train'))}/{_short(splits.get('test'))}"
                      if splits else "-",
                      f"[{style}]{r['cached']}[/]" if style else r["cached"],
                      human_bytes(r["bytes"]) if r["bytes"] else "-",
                      r["license"].split(" (")[0],
                      *((escape(_declared(r["params"])),) if with_params else ()),
                      *((r["description"],) if wide else ()))
    tables.show(table, console)
    console.print(f"cache: {data_root()} (set AEZOO_DATA to move it)", highlight=False)
    if with_params:
        console.print("params: set with --set data.params.KEY=VALUE (`aezoo data info NAME` "
                      "describes them)", highlight=False, markup=False, soft_wrap=True)


def _declared(params: list[dict[str, Any]] | None) -> str:
    """``n=64, size (required)``: a source's params and their defaults, or -."""
    if not params:
        return "-"
    return ", ".join(f"{p['name']}={json.dumps(p['default'])}" if "default" in p
                     else f"{p['name']} (required)" for p in params)


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
    from aezoo.data.info import fetch

    for name in names:
        with progress_bars() as progress:
            done = fetch(name, progress, force=force)
        if done.skipped:
            console.print(f"{done.source.name} {done.skipped}: nothing to fetch",
                          highlight=False)
            continue
        n = len(done.paths)
        console.print(f"{done.source.name}: {n} file{'s' * (n != 1)} verified "
                      f"in {done.directory} ({human_bytes(done.bytes)})", highlight=False)


SET_HELP = ("Set a data spec value, e.g. data.params.n=48 (a source's params: `aezoo info "
            "NAME`); VALUE is JSON, else a string (repeatable).")


def _data_spec(values: dict[str, Any], sets: list[str]) -> DataSpec:
    """The flags' values (None: not given), then each ``--set data.KEY=VALUE`` (parsed as
    ``aezoo train`` parses them), validated; ``data.params`` by the source's own model."""
    from aezoo.config import merge, resolve_data, section_sets
    from aezoo.specs import DataSpec, validate

    given, outside = section_sets("data", sets)
    if outside:
        raise UsageError(f"--set {outside[0]}: aezoo data sets only data.KEY values",
                         "e.g. --set data.params.KEY=VALUE; the rest of a run spec is "
                         "`aezoo train`'s")
    layer = merge({k: v for k, v in values.items() if v is not None}, given)
    spec: DataSpec = validate(DataSpec, layer, "data")
    return resolve_data(spec)


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
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Describe a dataset: source, license, files, cache, its params (`--set
    data.params.KEY=VALUE`); and, when it is available without a download, its shape and
    the image count of every split (train, val, test).
    """
    from aezoo.data.info import dataset_info

    spec = _data_spec({"name": name, "val_fraction": val_fraction, "image_size": image_size,
                       "channels": channels, "split_seed": split_seed}, set_)
    with progress_bars() as progress:
        info, source = dataset_info(spec, progress)
    if as_json:
        console.print_json(json.dumps(info))
    else:
        _print_info(info, source)


def _print_info(info: dict[str, Any], source: DatasetSource) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
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
    if source.params is not None:
        tables.print_params(console, "params (set with --set data.params.KEY=VALUE):",
                            source.params, info["params"])
    if info["files"]:
        files = tables.table([("file", ID), ("size", NUMBER), ("sha256", ID)],
                             title="files (SHA-256 verified)", title_justify="left")
        for f in info["files"]:
            files.add_row(escape(f["name"]), human_bytes(f["bytes"]), f["sha256"])
        tables.show(files, console)
    if not info["loaded"]:
        console.print(f"shape {_shape(info['declared_shape'])}; splits "
                      f"{_counts(info['declared_splits'])}; not downloaded yet: run "
                      f"`aezoo data fetch {source.name}`", highlight=False)
        return
    splits = Table(title=f"shape {_shape(info['shape'])}, uint8 (scaled to [0, 1] per batch)",
                   title_justify="left")
    for col in ("split", "images", "classes", "memory"):
        splits.add_column(col, justify="left" if col == "split" else "right", no_wrap=True)
    for split, s in info["splits"].items():
        splits.add_row(split, f"{s['images']:,}", "-" if s["classes"] is None
                       else str(s["classes"]), human_bytes(s["bytes"]))
    tables.show(splits, console)
    if info.get("class_names"):
        say(f"classes: {escape(', '.join(info['class_names']))}")


@data_app.command("pack")
def pack_command(
    name: str = typer.Argument(..., metavar="SOURCE",
                               help="Dataset to pack, e.g. folder:PATH, npy:PATH or mnist."),
    out: Path = typer.Option(..., "--out", help="Directory of the packed store."),
    image_size: str | None = typer.Option(None, "--image-size",
                                          help="Resize to N or HxW while packing."),
    channels: int | None = typer.Option(None, "--channels",
                                        help="Convert to 1 or 3 channels while packing."),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
    force: bool = typer.Option(False, "--force", help="Replace a finished store in --out."),
) -> None:
    """Decode a source once into a memory-mapped store: uint8 images, labels, class names
    and a manifest with SHA-256 digests. Train on it with `--data packed:DIR`.

    Resumable: rerun the same command after an interruption and it continues. Atomic: the
    manifest is written last, so an unfinished store never loads.
    """
    from aezoo.data.pack import pack

    spec = _data_spec({"name": name, "image_size": image_size, "channels": channels}, set_)
    with progress_bars() as progress:
        done = pack(spec, out, progress, force=force)
    counts = ", ".join(f"{n:,} {split}" for split, n in done.counts.items())
    again = f"; {done.resumed:,} were packed before the interruption" if done.resumed else ""
    classes = f", {len(done.class_names)} classes" if done.class_names else ""
    say(f"packed {counts} images ({format_shape(done.shape)} uint8{classes}) into "
        f"{done.directory} ({human_bytes(done.bytes)}) in {done.seconds:.1f} s"
        f"{again}; train with --data packed:{done.directory}")


@data_app.command("verify")
def verify_command(
    store: str = typer.Argument(..., metavar="DIR",
                                help="A packed store (what `aezoo data pack` wrote)."),
) -> None:
    """Read every file of a packed store and check it against the SHA-256 digests in its
    manifest (training only checks headers and sizes: hashing gigabytes each run is not
    cheap). Exits 1 when a file differs."""
    from aezoo.data.packed import verify

    root = Path(store.removeprefix("packed:")).expanduser()
    if not root.is_dir():
        raise UsageError(f"packed store {root} does not exist" if not root.exists()
                         else f"{root} is not a folder", "give the directory `aezoo data pack` "
                         "wrote (--out)")
    with progress_bars() as progress:
        bad, checked, read = verify(root, progress)
    if bad:
        verb = "differs" if len(bad) == 1 else "differ"
        raise DataError(f"{root}: {', '.join(bad)} {verb} from the manifest's SHA-256 (changed "
                        "or damaged since packing)", "pack the source again with --force")
    say(f"{root}: all {len(checked)} files match their SHA-256 "
        f"({', '.join(checked)}: {human_bytes(read)} read)")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
