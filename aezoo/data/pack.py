"""``aezoo data pack SOURCE --out DIR``: decode a source once into a packed store.

Resumable: images are written into ``.SPLIT.npy.part`` files (``.npy`` files made at full
size up front, sparse until written) and ``.pack-progress.json`` records, after each
flushed chunk, how many images of each split are on disk and what is being packed (a
fingerprint of the source: file names, sizes, times; the conversions). A rerun with the
same source continues there; a changed source starts over. Atomic: ``manifest.json`` is
written last (temp file, fsync, rename), after every data file has its final name and
digest, so an interrupted pack never leaves a store that loads (``aezoo.data.packed``).
A re-pack (``force``) builds the new store in ``DIR/.pack-new`` and moves it over the old
one only once it is complete; only the file names a store owns are ever removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from aezoo._version import __version__
from aezoo.data import packed
from aezoo.data.download import sha256_of
from aezoo.data.pack_plan import Part, plan
from aezoo.data.source import Progress, Shape
from aezoo.errors import DataError, OutputExistsError, UsageError
from aezoo.fileio import atomic_write, commit, fsync_dir, preallocate, read_bounded
from aezoo.rundir import LOCK_FILE, RunLock
from aezoo.specs import DataSpec

CHUNK = 1024  # images decoded and written per step
FLUSH_SECONDS = 2.0  # how much work an interruption may lose, at most (plus one chunk)


@dataclass(frozen=True)
class Packed:
    """What ``pack`` wrote."""

    directory: Path
    counts: dict[str, int]
    shape: Shape
    bytes: int
    resumed: int  # images an interrupted pack had already written
    seconds: float
    class_names: list[str] | None


_CANNOT_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def pack(spec: DataSpec, out: Path, progress: Progress | None = None,
         force: bool = False) -> Packed:
    """Pack the source ``spec`` names (with its ``image_size`` / ``channels``) into ``out``."""
    start = time.perf_counter()
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file", "give --out a directory for the packed store")
    _mkdir(out)
    with RunLock(out):  # the run directories' own lock: two packs never write one store
        work = _claim(out, force)
        parts, class_names, fingerprint = plan(spec, progress)  # nothing written before this
        _mkdir(work)
        try:
            return _write(spec, out, work, parts, class_names, fingerprint, progress, start)
        except OSError as exc:  # a full disk, a quota: one line, and the pack resumes
            if exc.errno not in _CANNOT_WRITE:
                raise
            raise DataError(f"cannot write the packed store {out} ({exc.strerror or exc})",
                            "free space (or choose another --out) and run the same command "
                            "again: the pack resumes where it stopped") from None


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {path} ({exc.strerror})",
                        "choose a writable --out directory") from None


def _write(spec: DataSpec, out: Path, work: Path, parts: dict[str, Part],
           class_names: list[str] | None, fingerprint: Any, progress: Progress | None,
           start: float) -> Packed:
    state = _progress(work, fingerprint)
    resumed = sum(state["done"].values())
    for split, part in parts.items():
        _write_split(work, split, part, state, spec, progress)
    shape = tuple(state["shape"])
    manifest: dict[str, Any] = {
        "format": packed.FORMAT, "version": packed.VERSION, "source": spec.name,
        "image_size": list(spec.image_size) if spec.image_size else None,
        "channels": spec.channels, "shape": list(shape), "class_names": class_names,
        "aezoo": __version__, "splits": {}}
    total = 0
    for split, part in parts.items():
        tmp, final = work / _part_name(split), work / packed.images_file(split)
        entry: dict[str, Any] = {"count": part.count, "images": final.name,
                                 "sha256": sha256_of(tmp)}
        total += tmp.stat().st_size
        commit(tmp, final)
        if part.labels is not None:
            buf = io.BytesIO()
            np.save(buf, part.labels.astype(np.int64), allow_pickle=False)
            atomic_write(work / packed.labels_file(split), buf.getvalue())
            entry["labels"] = packed.labels_file(split)
            entry["labels_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
        manifest["splits"][split] = entry
    atomic_write(work / packed.MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    (work / packed.PROGRESS).unlink(missing_ok=True)
    fsync_dir(work)
    if work != out:
        _swap(work, out)
    return Packed(out, {k: p.count for k, p in parts.items()},
                  cast(Shape, shape), total, resumed, time.perf_counter() - start, class_names)


def _part_name(split: str) -> str:
    return f".{packed.images_file(split)}.part"


def _owned(split: str) -> tuple[str, ...]:
    """The names a store's ``split`` may own in its directory: nothing else is touched."""
    part = _part_name(split)
    return (packed.images_file(split), packed.labels_file(split), part, part + ".wide")


def _claim(out: Path, force: bool) -> Path:
    """Where to pack: ``out`` itself when it is new, empty or a pack in progress; beside a
    finished store (``out/.pack-new``, with ``force``), which stays whole and loadable
    until the new one is complete and ``_swap`` replaces it."""
    staging = out / packed.STAGING
    if (staging / packed.MANIFEST).is_file():  # a swap was interrupted: finish it first
        _swap(staging, out)
    if packed.is_store(out):
        if not force:
            raise OutputExistsError(f"{out} already holds a packed store",
                                    "pass --force to pack it again, or choose another --out")
        return staging
    if staging.is_dir():  # a re-pack in progress whose old store was removed by hand
        return staging
    if (any(p.name != LOCK_FILE for p in out.iterdir())
            and not (out / packed.PROGRESS).exists()):
        raise OutputExistsError(f"{out} exists and is neither empty nor a pack in progress",
                                "choose a new or empty --out directory")
    return out


def _swap(work: Path, out: Path) -> None:
    """Move the complete store in ``work`` over the one in ``out``: the old manifest goes
    first (so no mix of old and new ever loads), then each new file replaces its old
    namesake, old files the new store lacks go, and the new manifest comes last. Only
    names a store owns are touched; a crash in between is finished by the next pack
    (``_claim``), since the new store is whole in ``work`` until it is moved."""
    splits = packed.read_manifest(work)["splits"]
    keep = {packed.images_file(split) for split in splits} | {
        packed.labels_file(split) for split, entry in splits.items() if entry.get("labels")}
    (out / packed.MANIFEST).unlink(missing_ok=True)
    fsync_dir(out)
    for name in sorted(keep):
        if (work / name).exists():  # absent: moved before an interruption
            os.replace(work / name, out / name)
    for name in {name for split in packed.SPLITS for name in _owned(split)} - keep:
        (out / name).unlink(missing_ok=True)
    fsync_dir(out)
    commit(work / packed.MANIFEST, out / packed.MANIFEST)
    for name in os.listdir(work):  # leftovers of our own: progress, parts
        with contextlib.suppress(OSError):
            (work / name).unlink()
    with contextlib.suppress(OSError):
        work.rmdir()


def _progress(out: Path, fingerprint: str) -> dict[str, Any]:
    """The interrupted pack's progress if it packed the same thing, else a fresh start."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        state = json.loads(read_bounded(out / packed.PROGRESS))
        if state.get("fingerprint") == fingerprint and isinstance(state.get("done"), dict):
            return cast(dict[str, Any], state)
    for split in packed.SPLITS:  # another source, or none recorded: start over
        for name in _owned(split)[2:]:
            (out / name).unlink(missing_ok=True)
    state = {"fingerprint": fingerprint, "done": {}, "shape": None}
    _save_progress(out, state)
    return state


def _save_progress(out: Path, state: dict[str, Any]) -> None:
    atomic_write(out / packed.PROGRESS, json.dumps(state).encode())


def _write_split(out: Path, split: str, part: Part, state: dict[str, Any], spec: DataSpec,
                 progress: Progress | None) -> None:
    path = out / _part_name(split)
    done = int(state["done"].get(split, 0))
    if done and not path.exists():
        done = 0
    label = f"the {split} split"
    report: Progress = progress or (lambda *_: None)
    report(label, done, part.count, "images")
    store: Any = None
    if done:
        preallocate(path)  # blocks reserved: a full disk is ENOSPC here, never SIGBUS
        store = np.lib.format.open_memmap(path, mode="r+")
    last = time.perf_counter()
    try:
        for begin in range(done, part.count, CHUNK):
            stop = min(begin + CHUNK, part.count)
            chunk = part.read(begin, stop)
            if state["shape"] is None:
                state["shape"] = [int(v) for v in chunk.shape[1:]]
            c, h, w = state["shape"]
            if tuple(chunk.shape[2:]) != (h, w):
                raise DataError(f"{spec.name}: {split} image {begin} is {chunk.shape[3]}x"
                                f"{chunk.shape[2]}, the images before it {w}x{h}",
                                "pass --image-size N or HxW to resize them all")
            if chunk.shape[1] > c:  # the first colour image: every split becomes RGB
                store = None
                _widen(out, state)
                c = 3
            elif chunk.shape[1] < c:
                chunk = np.repeat(chunk, c, axis=1)
            if store is None:
                store = np.lib.format.open_memmap(
                    path, mode="r+" if path.exists() else "w+", dtype=np.uint8,
                    shape=(part.count, c, h, w))
                preallocate(path)
            store[begin:stop] = chunk
            state["done"][split] = stop
            if time.perf_counter() - last > FLUSH_SECONDS or stop == part.count:
                store.flush()
                _save_progress(out, state)
                last = time.perf_counter()
            report(label, stop, part.count, "images")
    finally:
        if store is not None:
            store.flush()  # msync: what progress claims is on disk
            del store


def _widen(out: Path, state: dict[str, Any]) -> None:
    """Grey splits written so far, as RGB (grey repeated): a colour image came."""
    _, h, w = state["shape"]
    for split, done in state["done"].items():
        path = out / _part_name(split)
        old = np.lib.format.open_memmap(path, mode="r")
        tmp = path.with_name(path.name + ".wide")
        new = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(len(old), 3, h, w))
        preallocate(tmp)
        for s in range(0, done, CHUNK):
            new[s:min(s + CHUNK, done)] = np.repeat(old[s:min(s + CHUNK, done)], 3, axis=1)
        new.flush()
        del new, old
        os.replace(tmp, path)
    state["shape"] = [3, h, w]
    _save_progress(out, state)
