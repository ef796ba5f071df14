"""WebDataset tar shards, read with the standard library: names, opening, samples.

The format (the ``webdataset`` package's): a shard is a tar file; consecutive members
sharing a key (the member's path up to the first dot of its file name) form one sample,
and what follows the dot is the field (``0001.png`` + ``0001.cls`` -> ``{"png": ...,
"cls": b"3"}``; fields lower-cased, ``__*__`` metadata and non-files skipped). Shards are
streamed (``tarfile`` mode ``r|*``, gzip too), never extracted, from local paths,
``file://`` or ``http(s)://`` URLs. Why not import ``webdataset`` to read them: its HTTP
goes through a ``curl`` subprocess, its errors do not name the member, and exact resume
needs a known sample count per shard and a deterministic skip; the reader is ~100 lines.
"""

from __future__ import annotations

import http.client
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from aezoo._io import check_regular, open_regular
from aezoo._version import __version__
from aezoo.data.download import TIMEOUT_S, offline_mode
from aezoo.errors import DataError, UsageError, summary

BRACE = re.compile(r"\{([^{}]*)\}")
RANGE = re.compile(r"^(\d+)\.\.(\d+)$")
MAX_SHARDS = 1_000_000
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
            out += _braces(part)
        if len(out) > MAX_SHARDS:
            raise UsageError(f"the pattern {pattern} names over {MAX_SHARDS:,} shards",
                             "check the brace ranges")
    if not out:
        raise UsageError("wds: needs shard paths or URLs", "write wds:PATH or wds:URL")
    return out


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
    return [x for option in options for x in _braces(head + option + tail)]


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
    return response


def samples(name: str, stream: IO[bytes]) -> Iterator[Sample]:
    """(key, fields) of each sample in the shard, in tar order."""
    key: str | None = None
    fields: dict[str, bytes] = {}
    member = "(start)"
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for info in tar:
                member = info.name
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
            with tarfile.open(path, mode="r:") as tar:  # seeks past data: headers only
                keys = {m.name for m in tar if m.isreg() and not _META.search(m.name)}
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
            prefixes = set()
            for member in keys:
                found = _KEY.match(member)
                if found and found.group(2).lower() in image_keys:
                    prefixes.add(found.group(1))
            return len(prefixes)
    with open_shard(name) as stream:
        return sum(1 for _, fields in samples(name, stream)
                   if any(k in fields for k in image_keys))
