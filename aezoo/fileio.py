"""Durable file I/O: every write aezoo makes that must survive a crash goes through here.

``atomic_write`` writes a temporary file in the target's directory, fsyncs it, renames it
over the target and fsyncs the directory: a crash at any point leaves either the old file
or the new one, never a mix. ``probe_writable`` proves a directory takes a real write
(``os.access`` says yes to root on a read-only mount, and only a write sees a full disk).

Reads of user files go through ``open_regular`` / ``read_bounded`` / ``check_regular`` /
``read_json``: only a regular file is read (a FIFO, device or socket would block or never
end), checked without blocking, and a JSON-sized read has a size limit (``read_json``: a
depth limit too).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

MAX_JSON_BYTES = 64 * 2**20  # a run.json, status.json, bench.json, manifest: far below
# One encoded image a dataset names (an hf: row's path, a wds: shard member): far past
# what Pillow decodes (89 megapixels), far below what would exhaust memory.
MAX_IMAGE_BYTES = 256 * 2**20
# A spec as text (a config file, the spec in a model file's header): real ones are a few kB.
MAX_SPEC_BYTES = 1 << 20


class NotRegularFileError(OSError):
    """A path aezoo would read that is a FIFO, a device, a socket or a directory: opening
    or reading it could block forever or never end. An ``OSError`` (EINVAL) whose
    ``strerror`` says so, so every ``except OSError`` that names ``strerror`` reports it."""

    def __init__(self, path: str | os.PathLike[str], kind: str) -> None:
        super().__init__(errno.EINVAL, f"{kind}, not a regular file", os.fspath(path))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a file"


def check_regular(path: str | os.PathLike[str]) -> os.stat_result:
    """``path``'s stat (following links) if it is a regular file, else NotRegularFileError;
    for libraries that open a path themselves (``np.load``). Never blocks."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, _kind(st.st_mode))
    return st


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``open(path, "rb")`` for a regular file only: opened with O_NONBLOCK (a FIFO with no
    writer would block ``open`` itself), then checked with ``fstat`` on that very file, so
    no FIFO, device or socket swapped in between is ever read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(path, _kind(st.st_mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | os.PathLike[str], limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them: a bigger file is
    an OSError (EFBIG) before anything is read, a FIFO or device a NotRegularFileError."""
    with open_regular(path) as f:
        too_big = os.fstat(f.fileno()).st_size > limit
        data = b"" if too_big else f.read(limit + 1)
    if too_big or len(data) > limit:  # len: it grew while we read
        raise OSError(errno.EFBIG, f"larger than {limit:,} bytes", os.fspath(path))
    return data


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name beside ``path`` (same directory, so the rename is atomic)."""
    return path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Rename a complete, fsynced ``tmp`` over ``path`` and make the rename durable."""
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old file or the new one."""
    atomic_write_many([(Path(path), data)])


def atomic_write_many(writes: Sequence[tuple[Path, bytes]]) -> None:
    """``atomic_write`` for each ``(path, data)``, committed together: each distinct
    ``data`` object is written and fsynced once (paths given the very same object share
    one file through hard links), then the temporary files are renamed in the order given
    and each directory is fsynced once. A crash leaves every path either old or new; when
    this returns, all are durable.

    Nothing is replaced until every replacement exists: a failed write (a full disk)
    removes the temporary files and leaves every path as it was; a target that is a
    directory is refused before any rename; and a rename that fails part-way puts back the
    files renamed before it (kept through hard links), so the set is all old or all new.
    Where hard links fail, the data is written again (and that rollback is not possible)."""
    staged: list[tuple[Path, Path]] = []
    renamed: list[tuple[Path, Path | None, bool]] = []  # (target, old file's link, existed)
    links: list[Path] = []
    written: dict[int, Path] = {}
    current = Path()
    try:
        for current, data in writes:
            tmp = temp_path(current)
            first = written.get(id(data))
            if first is None or not _linked(first, tmp):
                # os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                staged.append((tmp, current))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())  # the bytes are on disk before a name points at them
                written.setdefault(id(data), tmp)
            else:
                staged.append((tmp, current))
        for _, current in staged:
            if current.is_dir():  # os.replace would fail here, after the renames before it
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(current))
        for tmp, current in staged:
            existed, old = os.path.lexists(current), None
            if existed and len(staged) > 1:  # kept until all are renamed, to roll back
                old = temp_path(current, ".old")
                if _linked(current, old):
                    links.append(old)
                else:
                    old = None
            os.replace(tmp, current)
            renamed.append((current, old, existed))
    except BaseException as exc:
        for target, old, existed in reversed(renamed):  # the set goes back to all old
            _restore(target, old, existed)
        for tmp, _ in staged:  # renamed ones are gone already
            tmp.unlink(missing_ok=True)
        for old in links:
            old.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # name the file the caller asked for, not our temp file
            raise OSError(exc.errno, exc.strerror, str(current)) from None
        raise
    for old in links:
        old.unlink(missing_ok=True)
    for directory in dict.fromkeys(path.parent for path, _ in writes):
        fsync_dir(directory)  # the renames survive a crash once this returns


def _restore(target: Path, old: Path | None, existed: bool) -> None:
    """Put ``target`` back as it was before this write: its old file, or no file (a file
    whose old version could not be kept stays new: nothing is removed without a copy)."""
    with contextlib.suppress(OSError):
        if old is not None:
            os.replace(old, target)
        elif not existed:
            target.unlink(missing_ok=True)


def _linked(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        return False
    return True


def preallocate(path: str | os.PathLike[str]) -> None:
    """Reserve the disk blocks of the file ``path`` up to its size, before it is written
    through a memory map: a store in a sparse file on a full disk would otherwise die of
    SIGBUS at the first page the kernel cannot back; here it is an OSError (ENOSPC) the
    caller reports. Blocks already written are kept. Where the platform has no
    ``posix_fallocate`` (macOS), nothing is reserved."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is None:
        return
    fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        if size:
            fallocate(fd, 0, size)
    finally:
        os.close(fd)


def probe_writable(directory: Path) -> None:
    """Write, fsync and remove a probe file in ``directory``; raises OSError if it fails."""
    probe = directory / f".aezoo-probe-{secrets.token_hex(4)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"aezoo")
        os.fsync(fd)
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)


def file_identity(path: str | Path) -> tuple[int, int]:
    """A file's size and modification time (ns): what says it changed, without reading
    it; ``(-1, -1)`` when it cannot be seen (a URL, a file gone)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (-1, -1)
    return st.st_size, st.st_mtime_ns


def finite_or_null(value: Any) -> Any:
    """``value`` with every NaN or infinity (a model with NaN weights) as None: JSON has
    neither, and ``json.dumps(..., allow_nan=False)`` refuses them. For every JSON aezoo
    writes from numbers it computed (``eval --json``, ``score --out NAME.json``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


MAX_DEPTH = 64  # nesting in a run.json beyond anything aezoo writes: refused, not recursed


def read_json(path: Path) -> Any:
    """A small JSON file: a regular file (a FIFO would hang), bounded in size and depth."""
    value = json.loads(read_bounded(path))
    if _depth(value) > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iterative: any depth is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                   else item))
    return deepest
