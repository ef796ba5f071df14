"""Losses: BCE from logits is exact and stable (±100, bf16 autocast); MSE is plain MSE."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import aezoo
from aezoo import registry


def make_loss(name: str) -> Any:
    desc = registry.loss(name)
    return desc.build(desc.params())


def reference_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """softplus(l) - l*t, the exact BCE of sigmoid(l), in float64."""
    logits, target = logits.double(), target.double()
    return (F.softplus(logits) - logits * target).mean()


@pytest.mark.parametrize("binary", [False, True], ids=["soft-targets", "binary-targets"])
def test_bce_from_logits_equals_bce_on_probabilities(binary: bool) -> None:
    bce = make_loss("bce")
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        logits = torch.randn(8, 1, 28, 28, generator=gen) * 4
        target = torch.rand(8, 1, 28, 28, generator=gen)
        if binary:
            target = target.round()
        got = bce(logits, target)
        # In float64 so the probability route's own rounding (1 - p near 1) is negligible.
        expected = F.binary_cross_entropy(torch.sigmoid(logits.double()), target.double())
        assert got.ndim == 0 and got.dtype == torch.float32
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got.double(), reference_bce(logits, target),
                                   rtol=1e-5, atol=1e-6)


def test_bce_survives_logits_of_100() -> None:
    bce = make_loss("bce")
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0, 0.0, 100.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.25])
    value = bce(logits, target)
    assert torch.isfinite(value)
    # Confident and right costs ~0, confident and wrong costs ~100 per element.
    torch.testing.assert_close(value.double(), reference_bce(logits.detach(), target),
                               rtol=1e-6, atol=1e-6)
    expected = (0 + 0 + 100 + 100 + torch.log(torch.tensor(2.0)).item() + 75) / 6
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    # d/dl = (sigmoid(l) - t) / N: exact and bounded, never 0/0.
    torch.testing.assert_close(logits.grad, (torch.sigmoid(logits.detach()) - target) / 6)


def test_bce_on_probabilities_would_not_survive() -> None:
    """Why the loss takes logits: at +-100 the probability route loses the value."""
    logits = torch.tensor([100.0])
    naive = F.binary_cross_entropy(torch.sigmoid(logits), torch.zeros(1))  # clamps log to -100
    assert make_loss("bce")(logits, torch.zeros(1)).item() == pytest.approx(100.0)
    assert naive.item() == pytest.approx(100.0)  # only thanks to torch's clamp...
    far = torch.tensor([1000.0])
    assert make_loss("bce")(far, torch.zeros(1)).item() == pytest.approx(1000.0)
    assert F.binary_cross_entropy(torch.sigmoid(far), torch.zeros(1)).item() == 100.0  # wrong


def test_mse_matches_direct_computation() -> None:
    mse = make_loss("mse")
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, 32, 32, generator=gen) * 3
    target = torch.rand(4, 3, 32, 32, generator=gen)
    got = mse(logits, target)
    expected = ((torch.sigmoid(logits.double()) - target.double()) ** 2).mean()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-7)
    extreme = mse(torch.tensor([100.0, -100.0]), torch.tensor([0.0, 0.0]))
    assert extreme.item() == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["bce", "mse"])
def test_losses_under_bfloat16_autocast_are_finite_float32(name: str) -> None:
    loss = make_loss(name)
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(4, 1, 28, 28, generator=gen) * 50).bfloat16()
    target = torch.rand(4, 1, 28, 28, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(logits, target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(value, loss(logits.float(), target))


def test_model_bce_loss_under_autocast_is_finite_float32_with_finite_grads() -> None:
    torch.manual_seed(3)
    model = aezoo.build("cae-upsample")
    x = torch.rand(8, 1, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.decode_logits(model.encode(x))
        value = model.loss(x)
    assert logits.dtype == torch.bfloat16  # autocast is really on
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
