"""WebDataset tar shards, read with the standard library: names, opening, samples.

The format (the ``webdataset`` package's): a shard is a tar file; consecutive members
sharing a key (the member's path up to the first dot of its file name) form one sample,
and what follows the dot is the field (``0001.png`` + ``0001.cls`` -> ``{"png": ...,
"cls": b"3"}``; fields lower-cased, ``__*__`` metadata and non-files skipped). Shards are
streamed (``tarfile`` mode ``r|*``, gzip too), never extracted, from local paths,
``file://`` or ``http(s)://`` URLs. Why not import ``webdataset`` to read them: its HTTP
goes through a ``curl`` subprocess, its errors do not name the member, and exact resume
needs a known sample count per shard and a deterministic skip; the reader is ~100 lines.

Bounded whatever the shard holds (``_StrictInfo``, ``_Guarded``): a member (or extended
header) may declare at most ``MAX_MEMBER_BYTES``; a compressed shard may not decompress
beyond ``MAX_RATIO`` times the bytes read (the ``npz:`` reader's rule); a header cut short,
damaged, or a missing end-of-archive marker is truncation, never the end; a brace pattern
is counted before it is expanded; an HTTP shard must deliver ``MIN_BYTES_PER_WINDOW`` in
every ``WINDOW_S`` seconds (a server dripping bytes never hangs a run).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote, urljoin, urlsplit

from aezoo import __version__
from aezoo.data.download import TIMEOUT_S, offline_mode
from aezoo.errors import DataError, UsageError, summary
from aezoo.fileio import MAX_IMAGE_BYTES, MAX_JSON_BYTES, check_regular, open_regular

BRACE = re.compile(r"\{([^{}]*)\}")
RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
MAX_SHARDS = 1_000_000
MAX_MEMBER_BYTES = MAX_IMAGE_BYTES  # an image far past Pillow's 89-megapixel bomb limit
MAX_RATIO = 1100  # aezoo.data.arrays.MAX_NPZ_RATIO: deflate tops out near 1032:1
RATIO_SLACK = 64 * 2**20  # decompressed bytes allowed before the ratio is judged
WINDOW_S = 30.0  # an HTTP shard delivers at least MIN_BYTES_PER_WINDOW in every window
MIN_BYTES_PER_WINDOW = 64 * 1024
_KEY = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's base_plus_ext
_META = re.compile(r"__[^/]*__($|/)")
Sample = tuple[str, dict[str, bytes]]


def expand(pattern: str) -> list[str]:
    """``shards-{000..009}.tar`` / ``{a,b}`` brace expansion (bash's); ``::`` joins
    patterns; a local directory means the ``.tar`` files in it, sorted."""
    out: list[str] = []
    for part in (p.strip() for p in pattern.split("::")):
        if not part:
            continue
        local = Path(_local(part))
        if not is_url(part) and "{" not in part and local.is_dir():
            found = sorted(str(p) for p in local.iterdir()
                           if p.suffix in (".tar", ".tgz", ".gz") and not p.name.startswith("."))
            if not found:
                raise DataError(f"folder {local} holds no .tar shards",
                                "point wds: at shard files, e.g. wds:shards-{000..009}.tar")
            out += found
        else:
            if _brace_count(part) + len(out) > MAX_SHARDS:  # counted, never expanded
                raise UsageError(f"the pattern {pattern} names over {MAX_SHARDS:,} shards",
                                 "check the brace ranges")
            out += _braces(part)
        if len(out) > MAX_SHARDS:
            raise UsageError(f"the pattern {pattern} names over {MAX_SHARDS:,} shards",
                             "check the brace ranges")
    if not out:
        raise UsageError("wds: needs shard paths or URLs", "write wds:PATH or wds:URL")
    return out


def _brace_count(text: str) -> int:
    """How many names ``text`` expands to (the product of its groups' sizes, capped just
    past MAX_SHARDS), without expanding it. Groups nested through literal braces can only
    multiply further, and are caught by the bound on the expansion itself."""
    total = 1
    for found in BRACE.finditer(text):
        numbers = RANGE.match(found.group(1))
        size = (abs(int(numbers.group(2)) - int(numbers.group(1))) + 1 if numbers
                else found.group(1).count(",") + 1)
        total = min(total * size, MAX_SHARDS + 1)
    return total


def _braces(text: str) -> list[str]:
    found = BRACE.search(text)
    if not found:
        return [text]
    head, tail = text[:found.start()], text[found.end():]
    body = found.group(1)
    numbers = RANGE.match(body)
    if numbers:
        a, b = numbers.groups()
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        lo, hi = int(a), int(b)
        if hi - lo >= MAX_SHARDS:
            raise UsageError(f"the range {{{body}}} names over {MAX_SHARDS:,} shards",
                             "check the brace ranges")
        step = 1 if hi >= lo else -1
        options = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    else:
        options = body.split(",")
    out: list[str] = []
    for option in options:
        out += _braces(head + option + tail)
        if len(out) > MAX_SHARDS:
            raise UsageError(f"the pattern {text} names over {MAX_SHARDS:,} shards",
                             "check the brace ranges")
    return out


def read_index(name: str) -> list[tuple[str, int]]:
    """The shards a shard index lists, each with its image count, so no shard is read to
    count it: webdataset's ``widsindex create`` JSON, ``{"shardlist": [{"url": "...",
    "nsamples": N}, ...]}``, each ``url`` relative to the index."""
    with open_shard(name) as stream:
        raw = stream.read(MAX_JSON_BYTES + 1)
    try:
        if len(raw) > MAX_JSON_BYTES:
            raise ValueError(f"over {MAX_JSON_BYTES:,} bytes")
        listed = json.loads(raw)["shardlist"]
        if not 0 < len(listed) <= MAX_SHARDS:
            raise ValueError(f"{len(listed)} shards")
        out = [(_beside(name, str(e["url"])), int(e["nsamples"])) for e in listed]
        if min(n for _, n in out) < 0:
            raise ValueError("a negative nsamples")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(f"shard index {display(name)} is not a shard list "
                        f"({summary(exc, with_type=False)})", 'write {"shardlist": [{"url": '
                        '"shard-000.tar", "nsamples": N}, ...]} (widsindex create)') from None
    return out


def _beside(index: str, url: str) -> str:
    if urlsplit(url).scheme or Path(url).is_absolute():
        return url
    return urljoin(index, url) if is_url(index) else str(Path(_local(index)).parent / url)


def is_url(name: str) -> bool:
    return urlsplit(name).scheme in ("http", "https")


def display(name: str) -> str:
    """A shard's name in messages: its file name, or the URL."""
    return name if is_url(name) else Path(_local(name)).name


def _local(name: str) -> str:
    parts = urlsplit(name)
    if parts.scheme == "file":
        return unquote(parts.path)
    return str(Path(name).expanduser())


def open_shard(name: str) -> IO[bytes]:
    """A readable stream of the shard's bytes (a file, or an HTTP response body)."""
    scheme = urlsplit(name).scheme
    if scheme not in ("", "file", "http", "https") and not re.match(r"^[A-Za-z]$", scheme):
        raise UsageError(f"shard {name}: unsupported URL scheme {scheme}:",
                         "use a local path, file://, http:// or https://")
    if not is_url(name):
        path = _local(name)
        try:
            return open_regular(path)  # a FIFO would block: refused, not opened
        except OSError as exc:
            raise DataError(f"cannot open shard {path} ({exc.strerror or summary(exc)})",
                            "check the path or the brace pattern after wds:") from None
    if offline_mode():
        raise DataError(f"cannot read shard {name} (offline mode (AEZOO_OFFLINE=1))",
                        "download the shards and use wds:PATH, or unset AEZOO_OFFLINE")
    request = urllib.request.Request(name, headers={"User-Agent": f"aezoo/{__version__}"})
    try:
        response: IO[bytes] = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise DataError(f"cannot read shard {name} (HTTP {exc.code} {exc.reason})",
                        "check the URL and the brace pattern after wds:") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"cannot read shard {name} (no connection: {reason})",
                        "check the URL and the network, or download the shards and use "
                        "wds:PATH (see docs/data.md)") from None
    return cast("IO[bytes]", _Paced(response, name))


class ShardRefused(tarfile.TarError):
    """A shard aezoo will not read further: the message says why, ``fix`` what to do."""

    def __init__(self, message: str,
                 fix: str = "check where the shard came from; rewrite it with smaller "
                            "members") -> None:
        super().__init__(message)
        self.fix = fix


class ShardTruncated(tarfile.ReadError):
    """A tar that ends before its end-of-archive marker, or inside a member header."""


# What Python's tarfile takes for the end of an archive after its first member.
_EMPTY: type[Exception] = getattr(tarfile, "EmptyHeaderError")  # noqa: B009 - not in stubs
_CUT: type[Exception] = getattr(tarfile, "TruncatedHeaderError")  # noqa: B009
_END_LIKE = (_EMPTY, _CUT, getattr(tarfile, "InvalidHeaderError"))  # noqa: B009


class _StrictInfo(tarfile.TarInfo):
    """``tarfile``'s member header, strict: Python's tarfile takes a header cut short, a
    damaged one or a missing end-of-archive marker after the first member for the end of
    the archive (a truncated shard would read as a shorter one), and reads an extended
    header of any declared size into memory. Here the first three are truncation and a
    member (or extended header) declaring over MAX_MEMBER_BYTES is refused unread."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Any:
        return _bounded(super().frombuf(buf, encoding, errors))  # a header block's size

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Any:
        at = tarfile_.offset
        try:
            return _bounded(super().fromtarfile(tarfile_))  # a size a pax header set
        except _END_LIKE as exc:
            if at == 0:  # not a tar at all (or compressed): tarfile's own handling
                raise
            if isinstance(exc, _EMPTY):
                raise ShardTruncated("it ends without the end-of-archive marker") from None
            how = "cut short" if isinstance(exc, _CUT) else "damaged"
            raise ShardTruncated(f"the member header at byte {at:,} is {how}") from None


def _bounded(info: tarfile.TarInfo) -> tarfile.TarInfo:
    if info.size > MAX_MEMBER_BYTES:
        raise ShardRefused(f"member {info.name} declares {info.size:,} bytes, over the "
                           f"limit of {MAX_MEMBER_BYTES:,} per member")
    return info


class _Counted:
    """A binary stream that counts the (compressed) bytes read from it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.read_bytes = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.read_bytes += len(data)
        return data


def _check_ratio(tar: tarfile.TarFile, counted: _Counted) -> None:
    """A compressed shard decompressing beyond MAX_RATIO times what was read of it (a
    bz2/xz bomb) is refused; members are bounded one by one by _StrictInfo."""
    if getattr(tar.fileobj, "comptype", "tar") == "tar":
        return
    limit = counted.read_bytes * MAX_RATIO + RATIO_SLACK
    if tar.offset > limit:
        raise ShardRefused(f"it decompresses to over {MAX_RATIO}x its compressed size "
                           f"({tar.offset:,} bytes from {counted.read_bytes:,})")


def samples(name: str, stream: IO[bytes]) -> Iterator[Sample]:
    """(key, fields) of each sample in the shard, in tar order."""
    key: str | None = None
    fields: dict[str, bytes] = {}
    member = "(start)"
    counted = _Counted(stream)
    try:
        with tarfile.open(fileobj=cast("IO[bytes]", counted), mode="r|*",
                          tarinfo=_StrictInfo) as tar:
            for info in tar:
                _check_ratio(tar, counted)
                member = info.name
                vars(tar)["members"].clear()  # read once: keep no list of every member
                if not info.isreg() or _META.search(info.name):
                    continue
                found = _KEY.match(info.name)
                if not found:
                    continue  # no extension: not a field of any sample
                prefix, field = found.group(1), found.group(2).lower()
                data = tar.extractfile(info)
                content = data.read() if data is not None else b""
                if prefix != key:
                    if key is not None:
                        yield key, fields
                    key, fields = prefix, {}
                if field in fields:
                    raise DataError(f"shard {display(name)} member {member}: sample {key} "
                                    f"has two '{field}' fields", "rewrite the shard")
                fields[field] = content
    except ShardRefused as exc:
        raise DataError(f"shard {display(name)} is refused: {exc}", exc.fix) from None
    except (tarfile.TarError, EOFError, OSError, http.client.HTTPException) as exc:
        raise DataError(f"shard {display(name)} is truncated or not a tar (at member "
                        f"{member}: {summary(exc, with_type=False)})",
                        "recreate or re-download the shard") from None
    if key is not None:
        yield key, fields


def count(name: str, image_keys: tuple[str, ...]) -> int:
    """Samples with an image in the shard (a pass over it; headers only for local tars)."""
    if not is_url(name):
        path = _local(name)
        try:
            check_regular(path)
            with tarfile.open(path, mode="r:", tarinfo=_StrictInfo) as tar:  # headers only
                keys = [_KEY.match(m.name) for m in tar if m.isreg() and not _META.search(m.name)]
        except ShardRefused as exc:
            raise DataError(f"shard {display(name)} is refused: {exc}", exc.fix) from None
        except ShardTruncated as exc:
            raise DataError(f"shard {display(name)} is truncated or not a tar ({exc})",
                            "recreate or re-download the shard") from None
        except tarfile.ReadError:  # compressed: stream through it
            keys = None
        except (tarfile.TarError, EOFError) as exc:
            raise DataError(f"shard {display(name)} is truncated or not a tar "
                            f"({summary(exc, with_type=False)})",
                            "recreate or re-download the shard") from None
        except OSError as exc:
            raise DataError(f"cannot open shard {path} ({exc.strerror or summary(exc)})",
                            "check the path or the brace pattern after wds:") from None
        if keys is not None:
            return len({k.group(1) for k in keys if k and k.group(2).lower() in image_keys})
    with open_shard(name) as stream:
        return sum(1 for _, fields in samples(name, stream)
                   if any(k in fields for k in image_keys))


class _Paced:
    """An HTTP response that must keep delivering: at least MIN_BYTES_PER_WINDOW in every
    WINDOW_S seconds, or the read fails (the socket timeout alone is per read, so a server
    dripping a byte every few seconds would never time out). Reads use ``read1``, which
    returns what one receive got, so the pace is checked as bytes arrive."""

    def __init__(self, response: Any, name: str) -> None:
        self.response, self.name = response, name
        self.window_start, self.window_bytes = time.monotonic(), 0

    def read(self, size: int = -1) -> bytes:
        want = math.inf if size is None or size < 0 else size
        parts: list[bytes] = []
        got = 0
        while got < want:
            chunk = self.response.read1(int(min(want - got, 1 << 20)))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
            self._pace(len(chunk))
        return b"".join(parts)

    def _pace(self, n: int) -> None:
        self.window_bytes += n
        now = time.monotonic()
        if now - self.window_start < WINDOW_S:
            return
        if self.window_bytes < MIN_BYTES_PER_WINDOW:
            raise ShardRefused(f"the server sent {self.window_bytes:,} bytes in "
                               f"{now - self.window_start:.1f} s, below the minimum of "
                               f"{MIN_BYTES_PER_WINDOW:,} bytes per {WINDOW_S:g} s",
                               "retry later, or download the shards and use wds:PATH")
        self.window_start, self.window_bytes = now, 0

    def close(self) -> None:
        self.response.close()

    def __enter__(self) -> _Paced:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
