"""What ``aezoo data list|fetch|info`` report, as plain data: the installed sources, their
cache, their files and (when loadable without a download) their splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo import registry
from aezoo.data import catalog

if TYPE_CHECKING:
    from aezoo.data.source import DatasetSource, Progress
    from aezoo.specs import DataSpec

__all__ = ["Fetched", "dataset_info", "fetch", "prefetch", "source_rows", "status"]


def status(source: DatasetSource) -> tuple[str, int | None]:
    """(cached column, bytes on disk)."""
    if source.embedded:
        return "embedded", None
    if source.takes_path or not source.files:
        return "-", None
    cache = catalog.cache_status(source)
    if cache.complete:
        return "yes", cache.bytes
    if cache.present:
        return f"partial {cache.present}/{cache.total}", cache.bytes
    return "no", cache.bytes or None


def source_rows() -> list[dict[str, Any]]:
    """One row per usable source (what ``aezoo data list --json`` prints; broken ones are
    left out and recorded, or raise in strict mode); reads descriptors and the cache
    directory only."""
    rows: list[dict[str, Any]] = []
    for entry, source in registry.load_all(catalog.KIND):
        cached, used = status(source)
        rows.append({"name": f"{entry.name}:PATH" if source.takes_path else entry.name,
                     "shape": list(source.shape) if source.shape else None,
                     "splits": dict(source.counts), "cached": cached, "bytes": used,
                     "directory": str(catalog.source_dir(source)) if source.files else None,
                     "license": source.license, "description": source.description,
                     "params": _declared(source)})
    return rows


def _declared(source: DatasetSource) -> list[dict[str, Any]] | None:
    """The source's params (``data.params``): name, and default unless required; None for
    a source that takes none."""
    if source.params is None:
        return None
    from pydantic import TypeAdapter

    plain = TypeAdapter(Any)  # a default as JSON would write it (a tuple: a list)
    return [{"name": name, **({} if field.is_required() else {"default": plain.dump_python(
                field.get_default(call_default_factory=True), mode="json")})}
            for name, field in source.params.model_fields.items()]


@dataclass(frozen=True)
class Fetched:
    """What ``fetch`` did: the files it verified, or why there was nothing to fetch."""

    source: DatasetSource
    directory: Path | None
    paths: dict[str, Path]
    skipped: str | None = None  # e.g. "ships inside its package"

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.paths.values())


def fetch(name: str, progress: Progress | None = None, force: bool = False) -> Fetched:
    """Download (or, with ``force``, download again) and verify the files of ``name``."""
    from aezoo.data.download import ensure_files

    source = catalog.resolve(name).source
    if source.embedded or source.takes_path or not source.files:
        why = ("ships inside its package" if source.embedded
               else "reads your files" if source.takes_path else "declares no files")
        return Fetched(source, None, {}, why)
    directory = catalog.source_dir(source)
    paths = ensure_files(source, directory, progress=progress, force=force)
    return Fetched(source, directory, paths)


def prefetch(name: str, progress: Progress | None = None) -> None:
    """Download (and verify) what ``name`` needs; a no-op for local data."""
    from aezoo.data.download import ensure_files

    source = catalog.resolve(name).source
    if source.files:
        ensure_files(source, catalog.source_dir(source), progress=progress)


def dataset_info(spec: DataSpec, progress: Progress | None = None
                 ) -> tuple[dict[str, Any], DatasetSource]:
    """What ``aezoo data info --json`` prints, and the source. The dataset is loaded (with
    ``spec``'s conversions and split) only when that needs no download."""
    found = catalog.resolve(spec.name)
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
        "directory": str(catalog.source_dir(source)) if source.files else None,
        "loaded": False,
        # data.params, validated, defaults filled in; None: the source takes none
        "params": None if source.params is None else dict(spec.params),
    }
    if (source.embedded or source.takes_path or not source.files
            or catalog.cache_status(source).complete):
        import numpy as np

        from aezoo.data import load_dataset

        dataset = load_dataset(spec, progress=progress, offline=True)
        c, h, w = dataset.shape
        splits: dict[str, Any] = {}
        for split, n in dataset.splits().items():
            labels = getattr(dataset, f"{split}_labels")
            splits[split] = {"images": n, "classes": None if labels is None
                             else len(np.unique(labels)), "bytes": n * c * h * w}
        info.update(loaded=True, shape=[c, h, w], dtype="uint8",
                    val_fraction=spec.val_fraction, class_names=dataset.class_names,
                    splits=splits)
    return info, source
