"""Conformance checks of a built model: shapes, gradients, determinism, save/load, bf16,
the loss, the declared parameter count. Each takes a model (or a builder) and raises an
AssertionError that says what is wrong."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aezoo.errors import AezooError, summary
from aezoo.protocols import format_shape

if TYPE_CHECKING:
    import torch

    from aezoo.model import Autoencoder

Shape = tuple[int, int, int]
# Shapes most convolutional models cannot serve: building at them must either work
# exactly or fail with an AezooError that says why.
PROBE_SHAPES: tuple[Shape, ...] = ((1, 1, 1), (1, 2, 3), (3, 5, 7))


def _shape(value: Sequence[int]) -> Shape:
    c, h, w = value
    return (int(c), int(h), int(w))


def _batch(shape: Sequence[int], n: int = 2, seed: int = 0) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=gen)


def _build(name: str, seed: int = 0, **overrides: Any) -> Autoencoder:
    import torch

    from aezoo.model import build  # what aezoo.build does without pretrained=

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build(name, **overrides)


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
    """Backward passes reach every trainable parameter with finite, non-zero gradients.

    A parameter whose gradient is all zeros at init because a zero-initialised one
    downstream blocks it (a residual branch's last conv, say) passes if it gets a
    gradient once one SGD step has moved the zeros."""

    x = _batch(model.input_shape, n=4) if x is None else x
    zero = _zero_grads(model, x)
    if zero:
        _one_step(model, x)
        zero = _zero_grads(model, x, zero)
    if zero:
        raise AssertionError(f"parameter {zero[0]} gets an all-zero gradient")


def _zero_grads(model: Autoencoder, x: torch.Tensor, only: list[str] | None = None
                ) -> list[str]:
    """Names of the parameters (of ``only``) whose gradient is all zeros."""
    import torch

    model.train()
    model.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # a stochastic model samples the same noise each time
        loss = model.loss(x)
    if loss.dim() != 0:
        raise AssertionError(f"the loss is not a scalar (shape {tuple(loss.shape)})")
    loss.backward()
    zero = []
    for pname, p in model.named_parameters():
        if not p.requires_grad or (only is not None and pname not in only):
            continue
        if p.grad is None:
            raise AssertionError(f"parameter {pname} gets no gradient (is it used in forward?)")
        if not bool(torch.isfinite(p.grad).all()):
            raise AssertionError(f"parameter {pname} gets a non-finite gradient")
        if not bool(p.grad.ne(0).any()):
            zero.append(pname)
    model.zero_grad(set_to_none=True)
    return zero


def _one_step(model: Autoencoder, x: torch.Tensor) -> None:
    """A plain SGD step by hand (constructing a torch optimiser costs seconds of imports)."""
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

    from aezoo.checkpoint import load, save  # aezoo.save / aezoo.load of a file path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(directory or tmp) / "conformance.safetensors"
        save(model, path)
        loaded = load(path)
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
    """Under CPU bf16 autocast the objective is finite and near fp32's, compared in the same
    mode (eval: no dropout, no sampling, BatchNorm statistics as they are); a train-mode
    backward under autocast works too."""
    import torch

    x = _batch(model.input_shape, n=4)
    model.eval()
    with torch.no_grad():
        ref = float(model.loss(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model.forward_pass(x).logits
            low = float(model.loss(x))
    if tuple(logits.shape) != (4, *model.input_shape):
        raise AssertionError(f"under bf16 autocast the output shape is {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()) or not math.isfinite(low):
        raise AssertionError("a bf16 autocast forward gives non-finite values")
    if abs(low - ref) > rtol * abs(ref) + 1e-3:
        raise AssertionError(f"bf16 autocast loss {low:.5f} is far from fp32 {ref:.5f}; "
                             "compute the loss in float32 (e.g. logits.float())")
    model.train()
    model.zero_grad(set_to_none=True)
    with torch.random.fork_rng(devices=[]), torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(0)
        loss = model.loss(x)
    if not math.isfinite(float(loss.detach())):
        raise AssertionError("a bf16 autocast training step gives a non-finite loss")
    loss.backward()
    model.zero_grad(set_to_none=True)


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
        number = float(out.detach())
        if not math.isfinite(number):
            raise AssertionError(f"the loss of {name} is {number}; compute it from logits "
                                 "stably (e.g. binary_cross_entropy_with_logits)")
    with torch.no_grad():  # values only (a loss with parameters would carry a graph)
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


