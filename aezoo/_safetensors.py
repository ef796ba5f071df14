"""The safetensors container: writing, reading headers with bounded cost, checking tensors.

Knows the file format only (an 8-byte little-endian header length, a JSON header, the
tensor bytes). What a header *means* for a model is ``aezoo.checkpoint``'s business, for
a training state ``aezoo.training.state``'s.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.errors import CheckpointError, summary
from aezoo.fileio import atomic_write_many

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit; refuse before reading
MAX_HEADER_STRING = 16 * 1024 * 1024  # one metadata value (a spec is at most 1 MiB)
QUICK_HEADER = 1 << 20  # headers up to 1 MiB are parsed as they are (at worst ~20 MB, ~30 ms)

# safetensors' dtype names for the torch dtypes a model holds.
DTYPE_NAMES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
               "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
               "bool": "BOOL"}
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}

def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``float32``."""
    return str(dtype).removeprefix("torch.")


def encode_tensors(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes: ``safetensors.torch.save`` of contiguous CPU copies of
    ``tensors``. Tensors sharing memory (which the library refuses) are each written
    whole, as their own copy."""
    from safetensors.torch import save

    cpu: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for name, tensor in tensors.items():
        value = tensor.detach().to("cpu").contiguous()
        storage = value.untyped_storage()
        if storage.nbytes():
            if storage.data_ptr() in storages:
                value = value.clone()
            storages.add(value.untyped_storage().data_ptr())
        cpu[name] = value
    return save(cpu, metadata=metadata or None)


def save_tensors(tensors: Mapping[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, str]) -> None:
    """Atomically write a safetensors file (contiguous CPU copies of ``tensors``)."""
    write_files([(Path(path), encode_tensors(tensors, metadata))])


def write_files(writes: Sequence[tuple[Path, bytes]]) -> None:
    """Atomically write encoded files, committed together (``aezoo.fileio.atomic_write_many``:
    the same bytes object for several paths is written once)."""
    for path, _ in writes:
        if path.is_dir():
            raise CheckpointError(f"{path} is a directory",
                                  f"give a file path, e.g. {path / 'model.safetensors'}")
    try:
        atomic_write_many(writes)
    except OSError as exc:
        raise CheckpointError(f"cannot write {exc.filename or writes[0][0]} "
                              f"({exc.strerror or exc})",
                              "check the directory exists, is writable and has space") from None


def read_header(path: str | Path, require: tuple[str, CheckpointError] | None = None
                ) -> dict[str, Any]:
    """The JSON header of a safetensors file, read with bounded memory and time.

    ``require``: (metadata key, error): a header that does not even mention the key is
    refused with that error before it is parsed, in milliseconds whatever its size.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory",
                              "give the model file, e.g. runs/NAME/model.safetensors")
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or device would block or never end
            raise CheckpointError(f"{path} is not a regular file",
                                  "give a model file saved by aezoo")
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is not a safetensors file (too short)",
                                      "give a model saved by aezoo")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path} is not a safetensors file (bad header length)",
                                      "the file is corrupt or not a model; save it again")
            raw = f.read(length)
    except FileNotFoundError:
        raise CheckpointError(f"model file {path} does not exist", "check the path") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({exc.strerror or exc})",
                              "check the path and permissions") from None
    if len(raw) > QUICK_HEADER:
        _check_large_header(path, raw, require)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, 5,000-digit ints; [[[[...
        raise CheckpointError(f"{path} is not a safetensors file (header is not JSON)",
                              "the file is corrupt or not a model; save it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a malformed safetensors header",
                              "the file is corrupt; save it again")
    return header


def _check_large_header(path: Path, raw: bytes,
                        require: tuple[str, CheckpointError] | None) -> None:
    """Cheap byte-level checks before a large header is parsed, so what no aezoo file
    holds costs milliseconds, not seconds and gigabytes."""
    if require is not None and json.dumps(require[0]).encode() not in raw:
        raise require[1]
    longest, nested = _scan_json(raw)
    # No string aezoo writes comes near MAX_HEADER_STRING; a 50 MB one (a padding key in
    # the spec) once cost 23 s and 6 GB to refuse.
    if longest > MAX_HEADER_STRING:
        raise CheckpointError(f"{path} has a malformed safetensors header (a value of over "
                              f"{MAX_HEADER_STRING:,} bytes)", "the file is corrupt or not "
                              "a model; do not load it")
    # Parsing builds a Python object per JSON value: millions of tiny values ("[],[],..."),
    # which no real header has (a tensor entry is ~60 bytes with 3 brackets), would cost
    # ~25x the header's size. Brackets inside strings (the spec, the history) do not count.
    if nested > len(raw) // 8:
        raise CheckpointError(f"{path} has a malformed safetensors header (far more nested "
                              "values than tensors)", "the file is corrupt; save it again")


def _scan_json(raw: bytes, chunk: int = 1 << 20) -> tuple[int, int]:
    """(the longest string, the ``[`` and ``{`` outside strings) of JSON text, without
    parsing it: escapes removed, then a chunk at a time with numpy, so the cost is a few
    copies of ``raw`` whatever it holds (a regular expression over a spec's escaped quotes
    once took seconds and 100 MB; a list of pieces of a header of ``""`` would take GBs)."""
    import numpy as np

    data = np.frombuffer(raw.replace(b"\\\\", b"").replace(b'\\"', b""), np.uint8)
    inside, run, longest, nested = False, 0, 0, 0
    for start in range(0, len(data), chunk):
        part = data[start:start + chunk]
        quotes = np.flatnonzero(part == ord('"'))
        # Segments between quotes; segment i is inside a string iff inside ^ (i odd).
        lengths = np.diff(np.concatenate(([-1], quotes, [len(part)]))) - 1
        within = (np.arange(len(lengths)) % 2 == 1) ^ inside
        if inside:
            lengths[0] += run
        if within.any():
            longest = max(longest, int(lengths[within].max()))
        brackets = np.flatnonzero((part == ord("[")) | (part == ord("{")))
        nested += int((~within[np.searchsorted(quotes, brackets)]).sum())
        inside = bool(within[-1])
        run = int(lengths[-1]) if inside else 0
    return longest, nested


def metadata_of(path: str | Path, header: dict[str, Any]) -> dict[str, str]:
    """The string metadata of a parsed header."""
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has malformed metadata", "save the model again")
    return {str(k): str(v) for k, v in meta.items()}


def read_metadata(path: str | Path, require: tuple[str, CheckpointError] | None = None
                  ) -> dict[str, str]:
    """The string metadata of a safetensors file's header (``require``: see read_header)."""
    return metadata_of(path, read_header(path, require))


def data_bytes(path: str | Path) -> int:
    """Bytes of tensor data after the header (the file's size minus the header)."""
    with Path(path).open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        return os.fstat(f.fileno()).st_size - 8 - length


def load_tensors(path: str | Path, fix: str) -> dict[str, torch.Tensor]:
    """Every tensor of the file on the CPU; a damaged file is one CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt ({summary(exc, with_type=False)})",
                              fix) from None


def check_tensors(path: Path, header: dict[str, Any], expected: Mapping[str, torch.Tensor],
                  data_size: int, exact: bool = True) -> None:
    """The header's tensors must be exactly ``expected``: names, shapes, dtypes, in bounds.

    Checked from the header alone, so a hostile file is refused before anything is read
    or allocated, and the weights we then allocate are bounded by the file's size.
    """
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        what = (f"missing tensor {missing[0]!r}" if missing else f"unexpected tensor {extra[0]!r}")
        more = len(missing) + len(extra) - 1
        raise CheckpointError(f"{path} does not match its spec ({what}"
                              f"{f' and {more} more' if more else ''})",
                              "the file is corrupt or was edited; save the model again")
    for name, want in expected.items():
        info = tensors[name]
        if not isinstance(info, dict):
            raise CheckpointError(f"{path} has a malformed entry for tensor {name!r}",
                                  "the file is corrupt; save the model again")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        want_dtype = DTYPE_NAMES.get(dtype_name(want.dtype))
        if want_dtype is not None and dtype != want_dtype:
            raise CheckpointError(
                f"{path}: tensor {name!r} is {dtype}, the model expects {want_dtype}",
                "convert it with the model's dtype and save it with aezoo.save")
        if shape != list(want.shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {shape}, the model expects "
                f"{list(want.shape)}", "the file does not match its spec; save the model again")
        size = ITEMSIZE.get(str(dtype), 0) * want.numel()
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)
                or offsets[1] - offsets[0] != size or not 0 <= offsets[0] <= offsets[1]
                or offsets[1] > data_size):
            raise CheckpointError(f"{path}: tensor {name!r} points outside the file",
                                  "the file is truncated or corrupt; save the model again")
    # safetensors packs the tensors back to back: they must tile the data exactly.
    spans = sorted(tuple(tensors[name]["data_offsets"]) for name in expected)
    end = 0
    for start, stop in spans:
        if start < end or (start != end and exact):
            raise CheckpointError(f"{path} has overlapping or gapped tensor data",
                                  "the file is corrupt; save the model again")
        end = stop
    if end != data_size and exact:  # not exact: some tensors were left out on purpose
        raise CheckpointError(f"{path} has {data_size - end} bytes beyond its tensors",
                              "the file is corrupt; save the model again")
