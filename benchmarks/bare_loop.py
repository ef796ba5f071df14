"""The project's own bare-loop baseline: what a user would hand-write in PyTorch.

Same recipe as shared/reference/torch_cae.py: float32 data in memory, a randperm per
epoch, sliced batches (last partial batch kept), ``loss.item()`` every step.
"""

from __future__ import annotations

import time

import torch


def train_bare(model: torch.nn.Module, loss_fn, images: torch.Tensor, epochs: int,
               batch: int = 256, channels_last: bool = False, lr: float = 1e-3) -> list[float]:
    """Train ``model`` on float32 ``images``; returns images/s of each epoch."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = images.contiguous(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = x.shape[0]
    speeds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        total = 0.0
        for s in range(0, n, batch):
            xb = x[perm[s:s + batch]]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), xb)
            loss.backward()
            opt.step()
            total += loss.item()
        speeds.append(n / (time.perf_counter() - t0))
    return speeds
