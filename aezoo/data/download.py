"""Verified, atomic downloads of a dataset's files from its mirrors.

Each file is streamed into a hidden temporary file (``.NAME.*.part``) in the cache
directory while its SHA-256 is computed; only a complete file with the right size and
digest is renamed to its real name. An interrupted, truncated or corrupt download
therefore never leaves a file that looks valid. Files already in the cache (downloaded
earlier or placed there by hand) are verified the same way before use.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from aezoo._version import __version__
from aezoo.data.source import DatasetSource, Progress, RemoteFile
from aezoo.errors import DataError
from aezoo.fileio import commit, open_regular

CHUNK = 1 << 20
TIMEOUT_S = 30.0
STALE_PART_S = 3600.0  # a .part file this old belongs to a download that died
DOCS = "docs/data.md"


def offline_mode() -> bool:
    """``AEZOO_OFFLINE=1``: never touch the network; use (and verify) cached files only."""
    return os.environ.get("AEZOO_OFFLINE", "") not in ("", "0")


class _Unreachable(Exception):
    """The mirror could not be contacted at all."""


class _Failed(Exception):
    """The mirror answered, but not with the right file."""


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    """The file's SHA-256, read in 16 MiB blocks (``progress``: bytes read so far)."""
    digest, done = hashlib.sha256(), 0
    total = path.stat().st_size if progress is not None else None
    report: Progress = progress or (lambda *_: None)
    report(f"verifying {path.name}", 0, total, "bytes")
    with open_regular(path) as f:
        while block := f.read(16 * 2**20):
            digest.update(block)
            done += len(block)
            report(f"verifying {path.name}", done, total, "bytes")
    return digest.hexdigest()


# Files this process has hashed already, keyed by what would change if they changed.
_verified: set[tuple[str, str, int, int, int]] = set()


def verify(path: Path, file: RemoteFile) -> str | None:
    """None when ``path`` is ``file``; otherwise what is wrong with it."""
    try:
        stat = path.stat()
        if file.size is not None and stat.st_size != file.size:
            return f"{stat.st_size:,} bytes, expected {file.size:,}"
        key = (str(path), file.sha256, stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if key in _verified:
            return None
        digest = sha256_of(path)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if digest != file.sha256.lower():
        return f"SHA-256 {digest[:12]}..., expected {file.sha256[:12]}..."
    _verified.add(key)
    return None


def ensure_files(source: DatasetSource, directory: Path, *, progress: Progress | None = None,
                 offline: bool = False, force: bool = False) -> dict[str, Path]:
    """Every file ``source`` declares, verified, in ``directory``: name -> path.

    Missing or corrupt files are downloaded (unless offline); ``force`` downloads again
    even when the cached copy is valid.
    """
    paths: dict[str, Path] = {}
    todo: list[tuple[RemoteFile, str | None]] = []  # (file, what is wrong with the cached copy)
    for file in source.files:
        path, problem = directory / file.name, None
        if path.exists() and not force:
            problem = verify(path, file)
            if problem is None:
                paths[file.name] = path
                continue
        todo.append((file, problem))
    if not todo:
        return paths
    if offline or offline_mode():
        raise _manual_error(source, directory, todo, "offline mode (AEZOO_OFFLINE=1)")
    _make_dir(directory)
    _remove_stale_parts(directory)
    for file, _ in todo:
        try:
            paths[file.name] = _download(file, source.mirrors, directory, progress)
        except _Unreachable as exc:  # no mirror answered: the rest will not download either
            missing = [(f, p) for f, p in todo if f.name not in paths]
            raise _manual_error(source, directory, missing,
                                f"no mirror reachable: {exc}") from None
    return paths


def download_file(file: RemoteFile, url: str, directory: Path,
                  progress: Progress | None = None) -> Path:
    """``file`` from ``url`` into ``directory``, verified (size, SHA-256) and renamed into
    place only when complete; offline mode and an unreachable host are one-line errors."""
    if offline_mode():
        raise DataError(f"cannot download {file.name}: offline mode (AEZOO_OFFLINE=1)",
                        f"unset AEZOO_OFFLINE, or put the file (SHA-256 {file.sha256}) into "
                        f"{directory}")
    _make_dir(directory)
    try:
        return _download(file, (url,), directory, progress)
    except _Unreachable as exc:
        raise DataError(f"cannot download {file.name} ({exc})",
                        f"check the network and retry, or put the file (SHA-256 "
                        f"{file.sha256}) into {directory}") from None


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data cache {directory} ({exc.strerror or exc})",
                        "set AEZOO_DATA to a writable directory") from None


def _remove_stale_parts(directory: Path) -> None:
    now = time.time()
    for part in directory.glob(".*.part"):
        try:
            if now - part.stat().st_mtime > STALE_PART_S:
                part.unlink()
        except OSError:
            pass


def _manual_error(source: DatasetSource, directory: Path,
                  files: list[tuple[RemoteFile, str | None]], why: str) -> DataError:
    """One line: which files, where they go, where they come from."""
    names = ", ".join(f.name + (f" (cached copy is bad: {p})" if p else "") for f, p in files)
    origin = source.mirrors[0] if source.mirrors else source.homepage
    return DataError(
        f"cannot download {source.name} ({why})",
        f"put {names} into {directory} by hand (from {origin}); they are SHA-256 verified, "
        f"see {DOCS}",
    )


def _download(file: RemoteFile, mirrors: tuple[str, ...], directory: Path,
              progress: Progress | None) -> Path:
    """Try each mirror in turn; the first verified copy wins."""
    failures: list[str] = []
    unreachable: list[str] = []
    for mirror in mirrors:
        url = mirror if mirror.endswith(file.name) else mirror.rstrip("/") + "/" + file.name
        host = urlsplit(url).netloc or url
        try:
            return _download_one(url, file, directory, progress)
        except _Unreachable as exc:
            unreachable.append(f"{host}: {exc}")
        except _Failed as exc:
            failures.append(f"{host}: {exc}")
    if not failures:
        raise _Unreachable("; ".join(unreachable) or "no mirrors declared")
    raise DataError(
        f"could not download {file.name} ({'; '.join(failures + unreachable)})",
        f"retry later, or download it by hand, check its SHA-256 ({file.sha256}) and put it "
        f"into {directory} (see {DOCS})",
    )


def _download_one(url: str, file: RemoteFile, directory: Path,
                  progress: Progress | None) -> Path:
    request = urllib.request.Request(url, headers={"User-Agent": f"aezoo/{__version__}"})
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise DataError(f"cannot write into the data cache {directory} ({exc.strerror or exc})",
                        "set AEZOO_DATA to a writable directory") from None
    tmp = Path(tmp_name)
    done = 0
    try:
        try:
            with os.fdopen(fd, "wb") as out, \
                    urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                value = response.headers.get("Content-Length", "")
                length = int(value) if value.strip().isdecimal() else None
                total = file.size or length
                report: Progress = progress or (lambda *_: None)
                report(file.name, 0, total, "bytes")
                digest = hashlib.sha256()
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if file.size is not None and done > file.size:
                        raise _Failed(f"more than the expected {file.size:,} bytes")
                    report(file.name, done, total, "bytes")
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as exc:
            raise _Failed(f"HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            if done == 0:
                raise _Unreachable(str(reason) or type(exc).__name__) from None
            raise _Failed(f"connection lost after {done:,} bytes ({reason})") from None
        except OSError as exc:  # writing the temporary file: disk full, quota, ...
            raise DataError(f"cannot write {file.name} into {directory} "
                            f"({exc.strerror or exc})", "free some space or set AEZOO_DATA") \
                from None
        if length is not None and done < length:
            raise _Failed(f"connection closed after {done:,} of {length:,} bytes")
        if file.size is not None and done != file.size:
            raise _Failed(f"got {done:,} bytes, expected {file.size:,}")
        got = digest.hexdigest()
        if got != file.sha256.lower():
            raise _Failed(f"SHA-256 mismatch (got {got[:12]}..., expected {file.sha256[:12]}...)")
        final = directory / file.name
        commit(tmp, final)
        stat = final.stat()  # hashed while streaming: loading it must not hash it again
        _verified.add((str(final), file.sha256, stat.st_size, stat.st_mtime_ns, stat.st_ino))
        return final
    finally:
        tmp.unlink(missing_ok=True)

