"""Checkpoints: safetensors files with the validated spec in the header. No pickle.

Header metadata (all strings, as safetensors requires):
``format`` = ``pt``; ``aezoo.spec`` = the ModelSpec as JSON; ``aezoo.version``;
``aezoo.plugins`` = JSON ``{kind: {"name", "dist", "version"}}`` for each component.
"""

from __future__ import annotations

import json
import os
import secrets
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo import registry
from aezoo.config import COMPONENT_KINDS
from aezoo.errors import AezooError, CheckpointError, UnknownNameError
from aezoo.specs import ModelSpec, validate

if TYPE_CHECKING:
    import torch

    from aezoo.model import Autoencoder

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit; refuse before reading


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
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

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    try:
        atomic_write(path, save(cpu, metadata=metadata))
    except OSError as exc:
        raise CheckpointError(f"cannot write {path} ({exc.strerror or exc})",
                              "check the directory exists, is writable and has space") from None


def save(model: Autoencoder, path: str | Path) -> Path:
    """Write ``model``'s weights and spec to ``path`` (a ``.safetensors`` file)."""
    path = Path(path)
    metadata = {
        "format": "pt",
        "aezoo.spec": model.spec.model_dump_json(),
        "aezoo.version": _version(),
        "aezoo.plugins": json.dumps(provenance(model.spec)),
    }
    save_tensors(model.state_dict(), path, metadata)
    return path


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
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is not a safetensors file (header is not JSON)",
                              "the file is corrupt or not a model; save it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a malformed safetensors header",
                              "the file is corrupt; save it again")
    return header


def read_metadata(path: str | Path) -> dict[str, str]:
    meta = read_header(path).get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has malformed metadata", "save the model again")
    return {str(k): str(v) for k, v in meta.items()}


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored in a checkpoint's header."""
    meta = read_metadata(path)
    if "aezoo.spec" not in meta:
        raise CheckpointError(f"{path} is not an aezoo model (no spec in its header)",
                              "load it with safetensors directly, or save it with aezoo.save")
    try:
        raw = json.loads(meta["aezoo.spec"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} holds a spec that is not JSON",
                              "the file is corrupt; save the model again") from None
    try:
        spec: ModelSpec = validate(ModelSpec, raw, "model")
    except AezooError as exc:
        raise CheckpointError(f"{path} holds an invalid spec ({exc.problem})",
                              "the file may come from a newer aezoo; upgrade aezoo") from None
    return spec


def _missing_component(path: Path, kind: str, name: str, meta: dict[str, str]) -> CheckpointError:
    try:
        plugins = json.loads(meta.get("aezoo.plugins", "{}"))
        dist = plugins.get(kind, {}).get("dist")
    except (json.JSONDecodeError, AttributeError):
        dist = None
    fix = (f"pip install {dist}" if dist else "install the plugin that provides it") + \
        " (see `aezoo list --components`)"
    return CheckpointError(f"{path} needs {kind} '{name}', which no installed plugin provides",
                           fix)


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild the model from the file alone: spec from the header, then the weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from aezoo.model import from_spec

    path = Path(path)
    spec = read_spec(path)
    meta = read_metadata(path)
    for kind in COMPONENT_KINDS:
        name = getattr(spec, kind).name
        try:
            registry.find(kind, name)
        except UnknownNameError:
            raise _missing_component(path, kind, name, meta) from None
    model = from_spec(spec)
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
    return model.to(device)
