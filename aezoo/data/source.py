"""The dataset-source contract: what a plugin registers under ``aezoo.datasets``.

A source is a small, frozen :class:`DatasetSource` descriptor. Defining one imports
neither numpy, torch nor PIL: listing datasets reads descriptors only, and a source's
``load`` function imports what it needs when it is called.

``load(ctx)`` returns :class:`Splits`: uint8 images ``(N, C, H, W)`` with optional
integer labels, for ``train`` and, where the dataset defines them, ``val`` and ``test``.
The core then applies ``--channels`` / ``--image-size``, carves the validation split
from ``train`` when the source has none (``--val-fraction``, stratified by label),
and applies ``--limit``. Files a source declares in ``files`` are downloaded from its
``mirrors`` and SHA-256 verified by ``ctx.fetch()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.protocols import lazy

if TYPE_CHECKING:
    import numpy as np
    from pydantic import BaseModel

Shape = tuple[int, int, int]

# progress(label, done, total, unit): ``unit`` is "bytes" (downloads; ``label`` is the
# file name) or "images"; ``total`` is None when unknown. Called by the core, drawn by
# the CLI; ``done == 0`` starts (or restarts, on a mirror fallback) ``label``.
Progress = Callable[[str, int, int | None, str], None]


@dataclass(frozen=True)
class RemoteFile:
    """One file of a downloadable dataset: its name in the cache, size and SHA-256."""

    name: str
    sha256: str
    size: int | None = None
    md5: str | None = None  # the publisher's MD5, for users comparing by hand


@dataclass(frozen=True)
class Splits:
    """What a source's ``load`` returns: uint8 ``(N, C, H, W)`` images, optional labels.

    ``val`` is the dataset's own validation split, if it has one; otherwise the core
    carves one from ``train``. ``test`` is never used for training or model selection.
    """

    train: np.ndarray
    train_labels: np.ndarray | None = None
    val: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    test: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    class_names: Sequence[str] | None = None  # class_names[k] names label k


@dataclass(frozen=True)
class LoadContext:
    """Everything a source's ``load`` may use."""

    source: DatasetSource
    argument: str | None  # PATH in ``folder:PATH``; None for plain names
    directory: Path  # this source's cache directory (``aezoo data list`` shows it)
    image_size: tuple[int, int] | None = None  # (H, W) the user asked for, if any
    channels: int | None = None  # 1 or 3, if the user asked
    progress: Progress | None = None
    offline: bool = False
    # Streamed sources: whether to stream (None: the source decides, e.g. by size; set from
    # train.reader), skip and count unreadable images (data.skip_bad), and how to carve a
    # validation split the core cannot carve (iterable splits).
    stream: bool | None = None
    skip_bad: bool = False
    val_fraction: float = 0.1
    split_seed: int = 0
    # Set by the core (aezoo.data.download.ensure_files), so this contract module stays at
    # the bottom of the import graph: (source, directory, progress, offline) -> files.
    fetcher: Callable[[DatasetSource, Path, Progress | None, bool], dict[str, Path]] | None = None
    # The source's params (``data.params``), validated by its ``params`` model; None for a
    # source that declares none.
    params: Any = None

    def fetch(self) -> dict[str, Path]:
        """The source's ``files``, verified, downloading what is missing: name -> path."""
        if self.fetcher is None:
            raise RuntimeError("this LoadContext was made without a fetcher")
        return self.fetcher(self.source, self.directory, self.progress, self.offline)

    def report(self, label: str, done: int, total: int | None, unit: str = "images") -> None:
        """Tell the user how far a long step got (drawn by the CLI; no-op elsewhere)."""
        if self.progress is not None:
            self.progress(label, done, total, unit)


@dataclass(frozen=True)
class DatasetSource:
    """A dataset a plugin provides. Register it as ``NAME = "module:attribute"`` in the
    ``aezoo.datasets`` entry-point group; the entry-point name is the public name.
    """

    name: str
    description: str
    license: str
    load: Callable[[LoadContext], Splits] | str  # a str is made a LazyRef
    shape: Shape | None = None  # (C, H, W) when fixed, so a model is checked before loading
    counts: Mapping[str, int] = field(default_factory=dict)  # e.g. {"train": 60000, ...}
    files: tuple[RemoteFile, ...] = ()
    mirrors: tuple[str, ...] = ()  # base URLs; a file's URL is mirror + file.name
    homepage: str = ""
    citation: str = ""
    takes_path: bool = False  # used as ``NAME:PATH`` (folder:, npz:, npy:)
    embedded: bool = False  # ships inside the providing package: nothing to fetch
    extra: Mapping[str, Any] = field(default_factory=dict)  # free-form, shown by `data info`
    # A pydantic model that validates ``data.params`` (``ctx.params`` is the instance);
    # None: the source takes no params.
    params: type[BaseModel] | None = None

    def __post_init__(self) -> None:
        # ``load`` may be a "module:function" string, imported when the data is loaded.
        object.__setattr__(self, "load", lazy(self.load))
