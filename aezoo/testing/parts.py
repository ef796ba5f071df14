"""Conformance checks for plugins that ship a single part: only a loss, only a transform.

    from aezoo.testing import check_loss_component, check_transform

    def test_my_loss():
        check_loss_component("my-loss")

    def test_my_noise():
        check_transform("my-noise")
"""

from __future__ import annotations

import math

from aezoo.protocols import Forward, builder
from aezoo.testing.descriptors import check_descriptor, check_params_model, check_torch_free
from aezoo.testing.models import Shape, _batch, check_loss


def check_loss_component(name: str, shape: Shape = (1, 28, 28), torch_free: bool = True
                         ) -> None:
    """A loss plugin on its own: descriptor, params model, torch-free module, and the loss
    contract — ``(logits, target)`` losses via :func:`check_loss`; a ``sees_forward`` loss
    gets a Forward and must return a finite scalar or named finite scalars that reach
    the logits with a gradient."""
    import torch

    descriptor = check_descriptor("loss", name, torch_free=False)
    check_params_model(descriptor.params)
    if torch_free:
        check_torch_free([("loss", name)])
    params = descriptor.params()
    build = builder(descriptor)
    loss = build(params, shape) if descriptor.shape_aware else build(params)
    if not getattr(loss, "sees_forward", False):
        check_loss(loss, shape)
        return
    target = _batch(shape, n=4)
    logits = torch.zeros_like(target, requires_grad=True)
    latent = torch.zeros(4, 4, 2, 2)
    out = loss(Forward(target, target, latent, logits,
                       {"mean": latent, "logvar": torch.zeros_like(latent)}))
    terms = dict(out) if isinstance(out, dict) else {"loss": out}
    for term, value in terms.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise AssertionError(f"term '{term}' is not a scalar tensor")
        number = float(value.detach())  # a term with a graph: read its value only
        if not math.isfinite(number):
            raise AssertionError(f"term '{term}' is {number}")
    sum(terms.values()).backward()  # type: ignore[union-attr]
    if logits.grad is None or not bool(logits.grad.ne(0).any()):
        raise AssertionError("the loss does not pass a gradient to the logits")


def check_transform(name: str, shape: Shape = (1, 28, 28), torch_free: bool = True) -> None:
    """A transform plugin on its own: descriptor, params, torch-free module; ``t(x, g)``
    keeps shape and dtype, stays in [0, 1], leaves ``x`` and torch's global RNG alone, and
    draws only from ``g`` (the same state, the same output; another state, another)."""
    import torch

    descriptor = check_descriptor("transform", name, torch_free=False)
    check_params_model(descriptor.params)
    if torch_free:
        check_torch_free([("transform", name)])
    transform = builder(descriptor)(descriptor.params())
    x = _batch(shape, n=8)
    before, rng = x.clone(), torch.get_rng_state()
    outs = [transform(x, torch.Generator().manual_seed(seed)) for seed in (1, 1, 2)]
    if not torch.equal(torch.get_rng_state(), rng):
        raise AssertionError("the transform draws from torch's global RNG; use the "
                             "generator it is given (resume would not be exact)")
    if not torch.equal(x, before):
        raise AssertionError("the transform changed its input in place; return a new tensor")
    first = outs[0]
    if not isinstance(first, torch.Tensor) or first.shape != x.shape or first.dtype != x.dtype:
        raise AssertionError("the transform must return a tensor of its input's shape and dtype")
    if float(first.min()) < 0 or float(first.max()) > 1:
        raise AssertionError("the transform's output leaves [0, 1]")
    if not torch.equal(outs[0], outs[1]):
        raise AssertionError("the same generator state gives different outputs")
    if torch.equal(outs[0], outs[2]):
        raise AssertionError("another generator state gives the same output: is it random?")
