"""Checkpoints: safetensors files with the validated spec in the header. No pickle.

Header metadata (all strings, as safetensors requires):
``format`` = ``pt``; ``aezoo.spec`` = the ModelSpec as JSON; ``aezoo.version``;
``aezoo.plugins`` = JSON ``{kind: {"name", "dist", "version"}}`` for each component.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo import registry
from aezoo.config import COMPONENT_KINDS
from aezoo.errors import AezooError, CheckpointError, ShapeError, SpecError, UnknownNameError
from aezoo.specs import ModelSpec, validate

if TYPE_CHECKING:
    import torch

    from aezoo.model import Autoencoder

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit; refuse before reading


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        # os.open with 0o666 honours the umask, unlike mkstemp's 0o600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:  # name the file the caller asked for, not our temp file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _version() -> str:
    from aezoo import __version__

    return __version__


def provenance(spec: ModelSpec) -> dict[str, dict[str, str]]:
    """Which distribution (and version) provides each component of ``spec``."""
    out = {}
    for kind in COMPONENT_KINDS:
        entry = registry.find(kind, getattr(spec, kind).name)
        out[kind] = {"name": entry.name, "dist": entry.dist, "version": entry.version}
    return out


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path,
                 metadata: dict[str, str]) -> None:
    """Atomically write a safetensors file (contiguous CPU copies of ``tensors``)."""
    from safetensors.torch import save

    if Path(path).is_dir():
        raise CheckpointError(f"{path} is a directory",
                              f"give a file path, e.g. {Path(path) / 'model.safetensors'}")
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        atomic_write(path, save(cpu, metadata=metadata))
    except OSError as exc:
        raise CheckpointError(f"cannot write {path} ({exc.strerror or exc})",
                              "check the directory exists, is writable and has space") from None


def save(model: Autoencoder, path: str | Path) -> Path:
    """Write ``model``'s weights and spec to ``path`` (a ``.safetensors`` file)."""
    from aezoo.errors import UsageError
    from aezoo.model import Autoencoder

    if not isinstance(model, Autoencoder):
        raise UsageError(f"cannot save a {type(model).__name__}: it is not an aezoo model",
                         "save what aezoo.build or aezoo.load returned")
    path = Path(path)
    _check_dtypes(model)
    metadata = {
        "format": "pt",
        "aezoo.spec": model.spec.model_dump_json(),
        "aezoo.version": _version(),
        "aezoo.plugins": json.dumps(provenance(model.spec)),
    }
    save_tensors(model.state_dict(), path, metadata)
    return path


def _check_dtypes(model: Autoencoder) -> None:
    """Refuse to write weights ``load`` would refuse: a dtype other than the built one."""
    try:
        skeleton = _build(Path("model"), model.spec, on_meta=True, check=False)
    except Exception:  # not buildable on meta: nothing to compare against
        return
    expected = skeleton.state_dict()
    for name, tensor in model.state_dict().items():
        want = expected.get(name)
        if want is not None and want.dtype != tensor.dtype:
            raise CheckpointError(
                f"cannot save: tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')}, "
                f"the model is built with {str(want.dtype).removeprefix('torch.')}",
                "convert it back (e.g. model.float()) before saving; aezoo.load never casts")


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, read with bounded memory."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory",
                              "give the model file, e.g. runs/NAME/model.safetensors")
    try:
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
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: [[[[...
        raise CheckpointError(f"{path} is not a safetensors file (header is not JSON)",
                              "the file is corrupt or not a model; save it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a malformed safetensors header",
                              "the file is corrupt; save it again")
    return header


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file's header."""
    return _metadata_of(path, read_header(path))


def _metadata_of(path: str | Path, header: dict[str, Any]) -> dict[str, str]:
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has malformed metadata", "save the model again")
    return {str(k): str(v) for k, v in meta.items()}


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored in a checkpoint's header."""
    return _spec_of(path, read_metadata(path))


def _spec_of(path: str | Path, meta: dict[str, str]) -> ModelSpec:
    if "aezoo.spec" not in meta:
        raise CheckpointError(f"{path} is not an aezoo model (no spec in its header)",
                              "load it with safetensors directly, or save it with aezoo.save")
    try:
        raw = json.loads(meta["aezoo.spec"])
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path} holds a spec that is not JSON",
                              "the file is corrupt; save the model again") from None
    try:
        spec: ModelSpec = validate(ModelSpec, raw, "model")
    except AezooError as exc:
        raise CheckpointError(f"{path} holds an invalid spec ({exc.problem})",
                              "the file is corrupt, or comes from a newer aezoo: upgrade "
                              "aezoo") from None
    return spec


def _own_components(spec: ModelSpec, meta: dict[str, str]) -> ModelSpec:
    """Bare names as the saving plugin meant them, even if another plugin took the name
    since (the header records which distribution provided each component)."""
    try:
        plugins = json.loads(meta.get("aezoo.plugins", "{}"))
    except (json.JSONDecodeError, RecursionError):
        return spec
    if not isinstance(plugins, dict):
        return spec
    updates = {}
    for kind in COMPONENT_KINDS:
        comp = getattr(spec, kind)
        dist = plugins.get(kind, {}).get("dist") if isinstance(plugins.get(kind), dict) else None
        if isinstance(dist, str):
            name = registry.own_component(kind, comp.name, dist)
            if name != comp.name:
                updates[kind] = comp.model_copy(update={"name": name})
    return spec.model_copy(update=updates) if updates else spec


def _missing_component(path: Path, kind: str, name: str, meta: dict[str, str]) -> CheckpointError:
    try:
        plugins = json.loads(meta.get("aezoo.plugins", "{}"))
        recorded = plugins.get(kind, {})
        # Only trust the hint when it describes this very component.
        dist = recorded.get("dist") if recorded.get("name") == name else None
    except (json.JSONDecodeError, RecursionError, AttributeError):
        dist = None
    fix = (f"pip install {dist}" if isinstance(dist, str) and dist
           else "install the plugin that provides it") + " (see `aezoo list --components`)"
    return CheckpointError(f"{path} needs {kind} '{name}', which no installed plugin provides",
                           fix)


# safetensors' dtype names for the torch dtypes a model holds.
_DTYPE_NAMES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
                "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
                "bool": "BOOL"}
_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
             "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}


def _build(path: Path, spec: ModelSpec, on_meta: bool, check: bool = True) -> Autoencoder:
    """``from_spec``, with a spec the file got wrong reported as a bad file."""
    import torch

    from aezoo.model import from_spec

    try:
        with torch.device("meta") if on_meta else contextlib.nullcontext():
            return from_spec(spec, check=check)
    except (ShapeError, SpecError) as exc:
        raise CheckpointError(f"{path} holds a spec that cannot be built ({exc.problem})",
                              "the file is corrupt or was edited; save the model again") from None


def check_tensors(path: Path, header: dict[str, Any], expected: Mapping[str, torch.Tensor],
                  data_bytes: int) -> None:
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
        want_dtype = _DTYPE_NAMES.get(str(want.dtype).removeprefix("torch."))
        if want_dtype is not None and dtype != want_dtype:
            raise CheckpointError(
                f"{path}: tensor {name!r} is {dtype}, the model expects {want_dtype}",
                "convert it with the model's dtype and save it with aezoo.save")
        if shape != list(want.shape):
            raise CheckpointError(
                f"{path}: tensor {name!r} has shape {shape}, the model expects "
                f"{list(want.shape)}", "the file does not match its spec; save the model again")
        size = _ITEMSIZE.get(str(dtype), 0) * want.numel()
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) for o in offsets)
                or offsets[1] - offsets[0] != size or not 0 <= offsets[0] <= offsets[1]
                or offsets[1] > data_bytes):
            raise CheckpointError(f"{path}: tensor {name!r} points outside the file",
                                  "the file is truncated or corrupt; save the model again")
    # safetensors packs the tensors back to back: they must tile the data exactly.
    spans = sorted(tuple(tensors[name]["data_offsets"]) for name in expected)
    end = 0
    for start, stop in spans:
        if start != end:
            raise CheckpointError(f"{path} has overlapping or gapped tensor data",
                                  "the file is corrupt; save the model again")
        end = stop
    if end != data_bytes:
        raise CheckpointError(f"{path} has {data_bytes - end} bytes beyond its tensors",
                              "the file is corrupt; save the model again")


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild the model from the file alone: spec from the header, then the weights.

    Nothing is allocated until the header has been checked against the spec (built on
    the meta device first), and the weights must be the exact dtype the model uses:
    no silent casts.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from aezoo.device import resolve_device

    # Names as the CLI takes them (auto, cuda:N, ...); a missing GPU is a DeviceError now,
    # not a torch assertion after the model was built.
    target = resolve_device(device) if isinstance(device, str) else device
    path = Path(path)
    header = read_header(path)  # read and parsed once: it may be up to 100 MB
    meta = _metadata_of(path, header)
    spec = _own_components(_spec_of(path, meta), meta)
    for kind in COMPONENT_KINDS:
        name = getattr(spec, kind).name
        try:
            registry.find(kind, name)
        except UnknownNameError:
            raise _missing_component(path, kind, name, meta) from None
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        data_bytes = os.fstat(f.fileno()).st_size - 8 - length
    try:  # the tensors first, on the meta device: a hostile spec allocates nothing
        skeleton: Autoencoder | None = _build(path, spec, on_meta=True, check=False)
    except AezooError:
        raise
    except Exception:  # a plugin that cannot build on meta: check after the real build
        skeleton = None
    if skeleton is not None:
        check_tensors(path, header, skeleton.state_dict(), data_bytes)
    model = _build(path, spec, on_meta=False)  # a huge input's shape check runs on meta
    if skeleton is None:
        check_tensors(path, header, model.state_dict(), data_bytes)
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt ({str(exc).splitlines()[0]})",
                              "save the model again") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CheckpointError(f"{path} does not match its spec ({detail})",
                              "the file is corrupt; save the model again") from None
    return model.to(target)
