"""Durable file I/O: every write aezoo makes that must survive a crash goes through here.

``atomic_write`` writes a temporary file in the target's directory, fsyncs it, renames it
over the target and fsyncs the directory: a crash at any point leaves either the old file
or the new one, never a mix. ``probe_writable`` proves a directory takes a real write
(``os.access`` says yes to root on a read-only mount, and only a write sees a full disk).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path


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
        os.fsync(fd)
    except OSError:
        pass
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
    this returns, all are durable. Where hard links fail, the data is written again."""
    staged: list[tuple[Path, Path]] = []
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
        for tmp, current in staged:
            os.replace(tmp, current)
    except BaseException as exc:
        for tmp, _ in staged:  # renamed ones are gone already
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # name the file the caller asked for, not our temp file
            raise OSError(exc.errno, exc.strerror, str(current)) from None
        raise
    for directory in dict.fromkeys(path.parent for path, _ in writes):
        fsync_dir(directory)  # the renames survive a crash once this returns


def _linked(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        return False
    return True


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
