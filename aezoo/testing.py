"""Conformance kit: the checks a plugin author runs in their own CI.

One call checks a whole variant (and the encoder, decoder and loss it uses)::

    from aezoo.testing import check_variant

    def test_my_variant_conforms():
        check_variant("my-variant")

``check_variant`` runs every check below and raises one ``AssertionError`` that lists
each failed check with what is wrong. The checks are also plain functions taking a
model or descriptor, for finer-grained tests:

- ``check_descriptor``: the entry point imports, is the right descriptor type, valid
  fields; the descriptor module does not import torch (``aezoo list`` stays fast).
- ``check_params_model``: defaults valid, JSON round trip, unknown keys and wrongly
  typed values rejected (plus any ``bad`` examples you give), JSON schema renders.
- ``check_shapes``: encode/decode round trip at every claimed shape (the variant's
  ``input_shape`` and ``example_shapes``); ``check_shape_errors``: shapes a model
  cannot serve raise ``aezoo.errors.ShapeError`` (or another AezooError), never a raw
  torch error.
- ``check_gradients``: every parameter gets a finite, non-zero gradient.
- ``check_determinism``: same seed, same weights and same first optimiser step.
- ``check_save_load``: save -> load is bit-exact, outputs identical.
- ``check_bf16``: a bf16 autocast forward/backward on CPU works and stays close to fp32.
- ``check_loss``: a scalar, finite for logits of +-100, lower for a perfect prediction.
- ``check_param_count``: the declared ``param_count`` is the real one.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from aezoo import registry
from aezoo.errors import AezooError, summary
from aezoo.protocols import format_shape

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

    from aezoo.model import Autoencoder

Shape = tuple[int, int, int]
# Shapes most convolutional models cannot serve: building at them must either work
# exactly or fail with an AezooError that says why.
PROBE_SHAPES: tuple[Shape, ...] = ((1, 1, 1), (1, 2, 3), (3, 5, 7))
_PROBE_KEY = "__aezoo_conformance_probe__"
_WRONG_VALUES: tuple[Any, ...] = ({_PROBE_KEY: [1, 2]}, _PROBE_KEY)

__all__ = [
    "PROBE_SHAPES",
    "check_bf16",
    "check_descriptor",
    "check_determinism",
    "check_gradients",
    "check_loss",
    "check_param_count",
    "check_params_model",
    "check_save_load",
    "check_shape_errors",
    "check_shapes",
    "check_torch_free",
    "check_variant",
    "component_names",
    "variant_names",
]


# --- discovery helpers for parametrised tests --------------------------------------


def variant_names(dist: str | None = None) -> list[str]:
    """Variant names (qualified ``DIST:NAME``), optionally only those ``dist`` provides."""
    return _qualified("variant", dist)


def component_names(kind: str, dist: str | None = None) -> list[str]:
    """``encoder``/``decoder``/``loss`` names (``DIST:NAME``), optionally of one ``dist``."""
    return _qualified(kind, dist)


def _qualified(kind: str, dist: str | None) -> list[str]:
    return [e.qualified for e in registry.entries(kind)
            if dist is None or registry.canonical(e.dist) == registry.canonical(dist)]


# --- descriptors and params ---------------------------------------------------------


def check_descriptor(kind: str, name: str, *, torch_free: bool = True) -> Any:
    """``name`` loads as a valid ``kind`` descriptor; returns it.

    With ``torch_free``, also ``check_torch_free([(kind, name)])``.
    """
    try:
        obj = registry.load(kind, name)
    except AezooError as exc:
        raise AssertionError(str(exc)) from None
    if torch_free:
        check_torch_free([(kind, name)])
    return obj


def check_torch_free(refs: Iterable[tuple[str, str]]) -> None:
    """A fresh interpreter loads each ``(kind, name)`` descriptor without importing torch.

    Descriptor modules are what ``aezoo list`` and ``aezoo info`` import: torch belongs
    inside the build functions.
    """
    refs = list(refs)
    code = ("import sys; from aezoo import registry\n"
            f"for kind, name in {refs!r}:\n"
            "    registry.load(kind, name)\n"
            "    if 'torch' in sys.modules:\n"
            "        print(kind, name); break\n")
    # The child sees what this interpreter sees (a test may have extended sys.path).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    if run.returncode != 0:
        detail = (run.stderr.strip().splitlines() or ["no output"])[-1]
        raise AssertionError(f"loading {refs} in a fresh interpreter failed: {detail}")
    if run.stdout.strip():
        kind, name = run.stdout.split()[:2]
        raise AssertionError(
            f"importing the module behind {kind} '{name}' imports torch; import torch "
            "inside the build function so `aezoo list` stays fast")


def check_params_model(params: type[BaseModel], values: Mapping[str, Any] | None = None, *,
                       bad: Iterable[Mapping[str, Any]] = (),
                       unchecked_fields: Iterable[str] = ()) -> None:
    """A component's params model validates ``values`` (default: its defaults), survives
    a JSON round trip, and rejects unknown keys, wrongly typed values and each ``bad``.

    ``unchecked_fields``: fields that legitimately accept any value (e.g. ``Any``).
    """
    from pydantic import BaseModel, ValidationError

    label = params.__name__
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise AssertionError(f"{params!r} is not a pydantic model class")
    values = dict(values or {})
    try:
        good = params.model_validate(values)
    except ValidationError as exc:
        what = "its defaults" if not values else f"the values {values}"
        raise AssertionError(f"{label} rejects {what}: {_first_error(exc)}") from None
    dumped = good.model_dump(mode="json")
    try:
        again = params.model_validate(json.loads(json.dumps(dumped)))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{label} does not survive a JSON round trip ({exc}); specs "
                             "store params as JSON, so use JSON-compatible types") from None
    if again != good:
        raise AssertionError(f"{label} changes in a JSON round trip: {good!r} -> {again!r}")

    def rejects(data: Mapping[str, Any]) -> bool:
        try:
            params.model_validate(data)
        except ValidationError:
            return True
        except Exception as exc:  # a validator that crashes instead of rejecting
            raise AssertionError(f"{label} raised {type(exc).__name__} for {dict(data)!r} "
                                 f"instead of a ValidationError: {exc}") from None
        return False

    if not rejects({**dumped, _PROBE_KEY: 1}):
        raise AssertionError(f"{label} accepts unknown keys; set "
                             "model_config = ConfigDict(extra='forbid') so typos are errors")
    skip = set(unchecked_fields)
    for field in params.model_fields:
        if field in skip:
            continue
        if not any(rejects({**dumped, field: wrong}) for wrong in _WRONG_VALUES):
            raise AssertionError(
                f"{label}.{field} accepts any value (tried {list(_WRONG_VALUES)!r}); give it "
                "a precise type, or list it in unchecked_fields")
    for example in bad:
        if not rejects({**dumped, **example}):
            raise AssertionError(f"{label} accepts the bad value {dict(example)!r}")
    try:
        params.model_json_schema()
    except Exception as exc:
        raise AssertionError(f"{label} has no JSON schema ({type(exc).__name__}: {exc}); "
                             "`aezoo schema` and `aezoo info --json` need one") from None


def _first_error(exc: Any) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])


# --- models -------------------------------------------------------------------------


def _shape(value: Sequence[int]) -> Shape:
    c, h, w = value
    return (int(c), int(h), int(w))


def _batch(shape: Sequence[int], n: int = 2, seed: int = 0) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=gen)


def _build(name: str, seed: int = 0, **overrides: Any) -> Autoencoder:
    import torch

    import aezoo

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return aezoo.build(name, **overrides)


def check_shapes(model: Autoencoder) -> None:
    """Encode/decode round trip at the model's input shape, with consistent shape attrs."""
    import torch

    shape = tuple(model.input_shape)
    x = _batch(shape, n=3)
    model.eval()
    with torch.no_grad():
        z = model.encode(x)
        logits = model.decode_logits(z)
        recon = model(x)
    if tuple(z.shape) != (3, *model.latent_shape):
        raise AssertionError(f"at {format_shape(shape)} the encoder returns "
                             f"{format_shape(z.shape[1:])} latents but declares latent_shape "
                             f"{format_shape(model.latent_shape)}")
    declared = getattr(model.decoder, "output_shape", None)
    if declared is not None and tuple(declared) != shape:
        raise AssertionError(f"at {format_shape(shape)} the decoder declares output_shape "
                             f"{format_shape(declared)}")
    if tuple(logits.shape) != (3, *shape) or tuple(recon.shape) != (3, *shape):
        raise AssertionError(f"{format_shape(shape)} inputs come back as "
                             f"{format_shape(logits.shape[1:])}")
    if not bool(torch.isfinite(logits).all()):
        raise AssertionError(f"at {format_shape(shape)} the decoder returns non-finite logits")
    if float(recon.min()) < 0 or float(recon.max()) > 1:
        raise AssertionError("reconstructions leave [0, 1]")


def check_shape_errors(build: Callable[[Shape], Autoencoder],
                       shapes: Iterable[Shape] = PROBE_SHAPES) -> None:
    """At each shape, ``build(shape)`` either round-trips or raises an AezooError."""
    for shape in shapes:
        try:
            model = build(shape)
        except AezooError:
            continue
        except Exception as exc:
            raise AssertionError(
                f"building at {format_shape(shape)} raised {summary(exc)}; raise "
                "aezoo.errors.ShapeError naming what the component needs instead") from None
        check_shapes(model)


def check_gradients(model: Autoencoder, x: torch.Tensor | None = None) -> None:
    """One backward pass reaches every trainable parameter with a finite, non-zero grad."""
    import torch

    x = _batch(model.input_shape, n=4) if x is None else x
    model.train()
    model.zero_grad(set_to_none=True)
    loss = model.loss(x)
    if loss.dim() != 0:
        raise AssertionError(f"the loss is not a scalar (shape {tuple(loss.shape)})")
    loss.backward()
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            raise AssertionError(f"parameter {pname} gets no gradient (is it used in forward?)")
        if not bool(torch.isfinite(p.grad).all()):
            raise AssertionError(f"parameter {pname} gets a non-finite gradient")
        if not bool(p.grad.ne(0).any()):
            raise AssertionError(f"parameter {pname} gets an all-zero gradient")
    model.zero_grad(set_to_none=True)


def _one_step(model: Autoencoder, x: torch.Tensor) -> None:
    """A plain SGD step by hand (a torch optimiser would import torch._dynamo: seconds)."""
    import torch

    model.train()
    model.zero_grad(set_to_none=True)
    model.loss(x).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.sub_(p.grad, alpha=0.1)
    model.zero_grad(set_to_none=True)


def _same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> str | None:
    """Why two state dicts differ, or None if bit-identical."""
    import torch

    if set(a) != set(b):
        return f"different keys: {sorted(set(a) ^ set(b))[:5]}"
    for key in a:
        if a[key].dtype != b[key].dtype or a[key].shape != b[key].shape:
            return f"{key}: {a[key].dtype}{tuple(a[key].shape)} vs {b[key].dtype}" \
                   f"{tuple(b[key].shape)}"
        if not torch.equal(a[key], b[key]):
            return f"{key} differs"
    return None


def check_determinism(build: Callable[[int], Autoencoder], seed: int = 0) -> None:
    """Two builds with ``seed`` have identical weights, and stay identical after a step
    (each step from the same torch RNG state, so a stochastic encoder samples alike)."""
    import torch

    a, b = build(seed), build(seed)
    why = _same_tensors(a.state_dict(), b.state_dict())
    if why:
        raise AssertionError(f"two builds with seed {seed} differ ({why}); draw all random "
                             "numbers from torch's global generator")
    x = _batch(a.input_shape, n=2, seed=seed)
    for model in (a, b):  # a stochastic encoder samples from torch's RNG: the same draw
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            _one_step(model, x)
    why = _same_tensors(a.state_dict(), b.state_dict())
    if why:
        raise AssertionError(f"the same training step on two identical models differs ({why})")


def check_save_load(model: Autoencoder, directory: str | Path | None = None) -> None:
    """``aezoo.save`` then ``aezoo.load`` gives bit-identical weights, spec and outputs."""
    import torch

    import aezoo

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(directory or tmp) / "conformance.safetensors"
        aezoo.save(model, path)
        loaded = aezoo.load(path)
    if loaded.spec != model.spec:
        raise AssertionError(f"the loaded spec differs: {loaded.spec} vs {model.spec}")
    why = _same_tensors(model.state_dict(), loaded.state_dict())
    if why:
        raise AssertionError(f"save -> load is not bit-exact ({why}); keep all state in "
                             "parameters and buffers")
    x = _batch(model.input_shape)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        if not torch.equal(model(x), loaded(x)):
            raise AssertionError("the loaded model gives different outputs")


def check_bf16(model: Autoencoder, rtol: float = 0.05) -> None:
    """A forward/backward under CPU bf16 autocast is finite and its loss near fp32's."""
    import torch

    x = _batch(model.input_shape, n=4)
    model.eval()
    with torch.no_grad():
        ref = float(model.loss(x))
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.decode_logits(model.encode(x))
        loss = model.loss_fn(logits, x)
    if tuple(logits.shape) != (4, *model.input_shape):
        raise AssertionError(f"under bf16 autocast the output shape is {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()) or not math.isfinite(float(loss.detach())):
        raise AssertionError("a bf16 autocast forward gives non-finite values")
    loss.backward()
    model.zero_grad(set_to_none=True)
    if abs(float(loss.detach()) - ref) > rtol * abs(ref) + 1e-3:
        raise AssertionError(f"bf16 autocast loss {float(loss.detach()):.5f} is far from fp32 "
                             f"{ref:.5f}; compute the loss in float32 (e.g. logits.float())")


def check_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
               shape: Shape = (1, 8, 8)) -> None:
    """A loss takes (logits, target in [0, 1]): scalar, finite at +-100, minimal when right."""
    import torch

    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(4, *shape, generator=gen) > 0.5).float()
    logits = (target * 2 - 1) * 100  # confidently right: large logits
    for name, value in (("+-100 logits", logits), ("-+100 logits", -logits)):
        out = loss_fn(value, target)
        if not isinstance(out, torch.Tensor) or out.dim() != 0:
            raise AssertionError(f"the loss of {name} is not a scalar tensor")
        if not math.isfinite(float(out)):
            raise AssertionError(f"the loss of {name} is {float(out)}; compute it from logits "
                                 "stably (e.g. binary_cross_entropy_with_logits)")
    right = float(loss_fn((target * 2 - 1) * 10, target))
    neutral = float(loss_fn(torch.zeros_like(target), target))
    wrong = float(loss_fn((1 - target * 2) * 10, target))
    if not right < neutral < wrong:
        raise AssertionError(f"the loss does not rank predictions (right {right:.4g}, neutral "
                             f"{neutral:.4g}, wrong {wrong:.4g}); it must take logits, not "
                             "probabilities")
    z = torch.zeros_like(target, requires_grad=True)
    loss_fn(z, target).backward()
    if z.grad is None or not bool(z.grad.ne(0).any()):
        raise AssertionError("the loss does not pass a gradient to the logits")


def check_param_count(model: Autoencoder, declared: int | None) -> None:
    """The variant's declared ``param_count`` matches the built model."""
    actual = model.num_parameters()
    if declared is not None and declared != actual:
        raise AssertionError(f"declares param_count={declared:,} but the model at "
                             f"{format_shape(model.input_shape)} has {actual:,} parameters")


# --- everything for one variant -----------------------------------------------------


def check_variant(name: str, *, shapes: Iterable[Shape] = (), seed: int = 0,
                  bad_params: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                  probe_shapes: Iterable[Shape] = PROBE_SHAPES,
                  torch_free: bool = True) -> list[str]:
    """Run every check on variant ``name`` and its components; returns the checks run.

    ``shapes``: extra input shapes to round-trip, beside the variant's ``input_shape``
    and ``example_shapes``. ``bad_params``: per kind (``"encoder"``...) params that must
    be rejected, e.g. ``{"encoder": [{"channels": []}]}``. Raises one AssertionError
    listing every failed check.
    """
    import torch

    threads = torch.get_num_threads()
    # Tiny batches: one thread is faster and immune to oversubscribed CI machines.
    torch.set_num_threads(1)
    try:
        return _check_variant(name, shapes, seed, bad_params, probe_shapes, torch_free)
    finally:
        torch.set_num_threads(threads)


def _check_variant(name: str, shapes: Iterable[Shape], seed: int,
                   bad_params: Mapping[str, Iterable[Mapping[str, Any]]] | None,
                   probe_shapes: Iterable[Shape], torch_free: bool) -> list[str]:
    failed: list[str] = []
    ran: list[str] = []

    def run(label: str, check: Callable[[], Any]) -> Any:
        ran.append(label)
        try:
            return check()
        except (AssertionError, AezooError) as exc:
            failed.append(f"{label}: {exc}")
        except Exception as exc:  # the plugin crashed: a failure to report, not to raise
            failed.append(f"{label}: {summary(exc)}")
        return None

    variant = run("variant descriptor",
                  lambda: check_descriptor("variant", name, torch_free=False))
    if variant is None:
        _raise(name, failed)
    variant = registry.variant(name)
    bad = dict(bad_params or {})
    for kind in registry.COMPONENT_KINDS:
        ref = getattr(variant, kind)
        desc = run(f"{kind} '{ref}' descriptor",
                   partial(check_descriptor, kind, ref, torch_free=False))
        if desc is None:
            continue
        run(f"{kind} '{ref}' params",
            partial(check_params_model, desc.params, getattr(variant, f"{kind}_params"),
                    bad=bad.get(kind, ())))
    if torch_free:
        refs = [("variant", name), *((k, getattr(variant, k)) for k in registry.COMPONENT_KINDS)]
        run("torch-free descriptors", lambda: check_torch_free(refs))
    if failed:
        _raise(name, failed)

    model = run("build", lambda: _build(name, seed))
    if model is None:
        _raise(name, failed)
    all_shapes: dict[Shape, None] = dict.fromkeys(
        _shape(s) for s in (variant.input_shape, *variant.example_shapes, *shapes))
    for shape in all_shapes:
        run(f"shape round trip {format_shape(shape)}",
            partial(_check_shape, name, seed, shape))
    run("impossible shapes", lambda: check_shape_errors(
        lambda s: _build(name, seed, input_shape=s), probe_shapes))
    run("param_count", lambda: check_param_count(model, variant.param_count))
    run("gradients", lambda: check_gradients(model))
    run("loss", lambda: check_loss(model.loss_fn, model.input_shape))
    run("seed determinism", lambda: check_determinism(lambda s: _build(name, s), seed))
    run("save/load", lambda: check_save_load(_build(name, seed)))
    run("bf16 autocast", lambda: check_bf16(_build(name, seed)))
    if failed:
        _raise(name, failed)
    return ran


def _check_shape(name: str, seed: int, shape: Shape) -> None:
    check_shapes(_build(name, seed, input_shape=shape))


def _raise(name: str, failed: list[str]) -> NoReturn:
    lines = "\n".join(f"  - {f}" for f in failed)
    raise AssertionError(f"variant '{name}' failed {len(failed)} conformance "
                         f"check{'s' if len(failed) != 1 else ''}:\n{lines}")
