"""Checkpoints: safetensors files with the validated spec in the header. No pickle.

Header metadata (all strings, as safetensors requires):
``format`` = ``pt``; ``aezoo.spec`` = the ModelSpec as JSON; ``aezoo.version``;
``aezoo.plugins`` = JSON ``{kind: {"name", "dist", "version"}}`` for each component.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo import registry
from aezoo._safetensors import (
    check_tensors,
    data_bytes,
    dtype_name,
    encode_tensors,
    load_tensors,
    metadata_of,
    read_header,
    read_metadata,
    write_files,
)
from aezoo._version import __version__
from aezoo.config import COMPONENT_KINDS
from aezoo.errors import (
    AezooError,
    AezooWarning,
    CheckpointError,
    ShapeError,
    SpecError,
    UnknownNameError,
    UsageError,
)
from aezoo.protocols import format_shape
from aezoo.rundir import model_path
from aezoo.specs import MAX_SPEC_BYTES, ModelSpec, validate

if TYPE_CHECKING:
    import torch

    from aezoo.model import Autoencoder

__all__ = ["InitReport", "encode", "load", "load_matching", "provenance", "read_metadata",
           "read_spec", "save"]

# What torch raises for an op the meta device lacks (a plugin's module may use one); other
# exceptions are bugs and surface as such.
_META_FAILURES = (RuntimeError, NotImplementedError, TypeError, ValueError)


def provenance(spec: ModelSpec) -> dict[str, dict[str, str]]:
    """Which distribution (and version) provides each component of ``spec``."""
    out = {}
    for kind in COMPONENT_KINDS:
        entry = registry.find(kind, getattr(spec, kind).name)
        out[kind] = {"name": entry.name, "dist": entry.dist, "version": entry.version}
    return out


def save(model: Autoencoder, path: str | Path) -> Path:
    """Write ``model``'s weights and spec to ``path`` (a ``.safetensors`` file)."""
    path = Path(path)
    write_files([(path, encode(model))])
    return path


def encode(model: Autoencoder) -> bytes:
    """The bytes ``save`` writes: weights, spec and provenance (refused as ``save`` does)."""
    from aezoo.model import Autoencoder

    if not isinstance(model, Autoencoder):
        raise UsageError(f"cannot save a {type(model).__name__}: it is not an aezoo model",
                         "save what aezoo.build or aezoo.load returned")
    metadata = {
        "format": "pt",
        "aezoo.spec": model.spec.model_dump_json(),
        "aezoo.version": __version__,
        "aezoo.plugins": json.dumps(provenance(model.spec)),
    }
    state = model.state_dict()
    _check_dtypes(model, state, (metadata["aezoo.spec"], metadata["aezoo.plugins"]))
    return encode_tensors(state, metadata)


# The dtypes a spec builds (None: not buildable on meta), by (spec, providing plugins):
# a trainer saving every epoch builds its skeleton once, not once per file.
_BUILT_DTYPES: dict[tuple[str, str], dict[str, torch.dtype] | None] = {}


def _check_dtypes(model: Autoencoder, state: dict[str, torch.Tensor],
                  key: tuple[str, str]) -> None:
    """Refuse to write weights ``load`` would refuse: a dtype other than the built one."""
    if key not in _BUILT_DTYPES:
        try:
            skeleton = _build(Path("model"), model.spec, on_meta=True, check=False)
            built: dict[str, torch.dtype] | None = {
                k: v.dtype for k, v in skeleton.state_dict().items()}
        except (AezooError, *_META_FAILURES):  # not buildable on meta: nothing to compare
            built = None
        if len(_BUILT_DTYPES) >= 64:
            _BUILT_DTYPES.clear()
        _BUILT_DTYPES[key] = built
    expected = _BUILT_DTYPES[key]
    if expected is None:
        return
    for name, tensor in state.items():
        want = expected.get(name)
        if want is not None and want != tensor.dtype:
            raise CheckpointError(
                f"cannot save: tensor {name!r} is {dtype_name(tensor.dtype)}, "
                f"the model is built with {dtype_name(want)}",
                "convert it back (e.g. model.float()) before saving; aezoo.load never casts")


def _not_a_model(path: str | Path) -> CheckpointError:
    return CheckpointError(f"{path} is not an aezoo model (no spec in its header)",
                           "load it with safetensors directly, or save it with aezoo.save")


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored in a checkpoint's header."""
    return _spec_of(path, read_metadata(path, ("aezoo.spec", _not_a_model(path))))


def _spec_of(path: str | Path, meta: dict[str, str]) -> ModelSpec:
    if "aezoo.spec" not in meta:
        raise _not_a_model(path)
    if len(meta["aezoo.spec"]) > MAX_SPEC_BYTES:  # before parsing: bounded cost
        raise CheckpointError(f"{path} holds a spec of {len(meta['aezoo.spec']):,} "
                              f"characters, over the limit of {MAX_SPEC_BYTES:,}",
                              "the file is corrupt or was edited; save the model again")
    try:
        raw = json.loads(meta["aezoo.spec"])
    except (ValueError, RecursionError):  # ValueError: bad JSON, or a 5,000-digit integer
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
    except (ValueError, RecursionError):
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
    except (ValueError, RecursionError, AttributeError):
        dist = None
    fix = (f"pip install {dist}" if isinstance(dist, str) and dist
           else "install the plugin that provides it") + " (see `aezoo list --components`)"
    return CheckpointError(f"{path} needs {kind} '{name}', which no installed plugin provides",
                           fix)


def _build(path: Path, spec: ModelSpec, on_meta: bool, check: bool = True,
           training_parts: bool = True) -> Autoencoder:
    """``from_spec``, with a spec the file got wrong reported as a bad file."""
    from aezoo.model import from_spec
    from aezoo.model import on_meta as meta_build

    try:
        if on_meta:  # imports the plugin modules first, off the meta device
            return meta_build(spec, check=check, training_parts=training_parts)
        return from_spec(spec, check=check, training_parts=training_parts)
    except (ShapeError, SpecError) as exc:
        raise CheckpointError(f"{path} holds a spec that cannot be built ({exc.problem})",
                              "the file is corrupt or was edited; save the model again") from None


_OBJECTIVE_KEYS = ("loss_fn.", "objective.")  # the tensors of training-only parts


def _absent_training_parts(spec: ModelSpec) -> list[str]:
    """The loss and regularisers of ``spec`` that no installed plugin provides."""
    wanted = [("loss", spec.loss.name), *(("regularizer", r.name) for r in spec.regularizers)]
    absent = []
    for kind, name in wanted:
        try:
            registry.find(kind, name)
        except UnknownNameError:
            absent.append(f"{kind} '{name}'")
    return absent


def _without_objective(tensors: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tensors.items() if not k.startswith(_OBJECTIVE_KEYS)}


def load(path: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """Rebuild the model from the file alone: spec from the header, then the weights.

    ``path`` may be a run directory, as on the command line: its ``model.safetensors``,
    else its ``last.safetensors``.

    Nothing is allocated until the header has been checked against the spec (built on
    the meta device first), and the weights must be the exact dtype the model uses:
    no silent casts.
    """
    from aezoo.device import resolve_device

    # Names as the CLI takes them (auto, cuda:N, ...); a missing GPU is a DeviceError now,
    # not a torch assertion after the model was built.
    target = resolve_device(device) if isinstance(device, str) else device
    path = model_path(Path(path))  # a run directory: its model, else its last checkpoint
    header = read_header(path, ("aezoo.spec", _not_a_model(path)))  # parsed once
    meta = metadata_of(path, header)
    spec = _own_components(_spec_of(path, meta), meta)
    for kind in ("encoder", "decoder"):
        name = getattr(spec, kind).name
        try:
            registry.find(kind, name)
        except UnknownNameError:
            raise _missing_component(path, kind, name, meta) from None
    absent = _absent_training_parts(spec)
    if absent:  # encode, reconstruct and sample still work; training and loss values don't
        hint = _missing_component(path, "loss", spec.loss.name, meta).fix
        warnings.warn(AezooWarning(
            f"{path}: {', '.join(absent)} not installed; the model loads for inference only "
            f"(encode, reconstruct, sample), without its objective ({hint})"), stacklevel=2)
    parts = not absent
    size = data_bytes(path)
    try:  # the tensors first, on the meta device: a hostile spec allocates nothing
        skeleton: Autoencoder | None = _build(path, spec, on_meta=True, check=False,
                                              training_parts=parts)
    except AezooError:
        raise
    except _META_FAILURES:  # a plugin that cannot build on meta: check after the real build
        skeleton = None
    header = header if parts else _without_objective(header)
    if skeleton is not None:
        check_tensors(path, header, skeleton.state_dict(), size, exact=parts)
    model = _build(path, spec, on_meta=False, training_parts=parts)  # huge inputs: on meta
    if skeleton is None:
        check_tensors(path, header, model.state_dict(), size, exact=parts)
    state = load_tensors(path, "save the model again")
    state = state if parts else _without_objective(state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        raise CheckpointError(f"{path} does not match its spec ({detail})",
                              "the file is corrupt; save the model again") from None
    return model.to(target)


@dataclass(frozen=True)
class InitReport:
    """What ``load_matching`` took from a file: tensors loaded, and those it left (why)."""

    source: str
    loaded: int
    skipped: tuple[str, ...]


def load_matching(model: Autoencoder, path: Path, source: str, strict: bool = True
                  ) -> InitReport:
    """Copy the weights of ``path`` into ``model`` (fine-tuning's start).

    ``strict``: every tensor of the model (its objective's aside) must be in the file with
    the same shape and dtype, and the file must hold no other; else one ShapeError naming
    the tensors that differ. Not strict: load the tensors that match, report the rest.
    """
    read_header(path)  # a regular file with a sane header, before the library reads it
    own = _without_objective(model.state_dict())
    theirs = _without_objective(load_tensors(path, "give an aezoo model file"))
    differ: list[str] = []
    for name, tensor in own.items():
        other = theirs.get(name)
        if other is None:
            differ.append(f"{name} is not in it")
        elif other.shape != tensor.shape:
            differ.append(f"{name} is {format_shape(other.shape) or 'scalar'} there, "
                          f"{format_shape(tensor.shape) or 'scalar'} here")
        elif other.dtype != tensor.dtype:
            differ.append(f"{name} is {dtype_name(other.dtype)} there, "
                          f"{dtype_name(tensor.dtype)} here")
    differ.extend(f"{name} is only there" for name in theirs if name not in own)
    if differ and strict:
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise ShapeError(f"the weights of {source} do not fit this model: "
                         f"{'; '.join(differ[:3])}{more}",
                         "train the spec they were trained with (see `aezoo info` of it), "
                         "or pass --init-strict false to load only the tensors that match")
    matching = {k: v for k, v in theirs.items() if k in own and v.shape == own[k].shape
                and v.dtype == own[k].dtype}
    if not matching:
        raise ShapeError(f"no tensor of {source} fits this model",
                         "start from weights of the same encoder and decoder")
    model.load_state_dict(matching, strict=False)
    return InitReport(source, len(matching), tuple(differ))
