"""The project's own bare-loop baselines: what a user would hand-write in PyTorch.

``train_bare``: the recipe of shared/reference/torch_cae.py: float32 data in memory, a
randperm per epoch, sliced batches (last partial batch kept), ``loss.item()`` every step.
``train_expert``: the same job written by someone who knows the CPU tricks aezoo uses.
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


def train_expert(model: torch.nn.Module, loss_fn, images: torch.Tensor, epochs: int,
                 batch: int = 256, amp_dtype: torch.dtype | None = None,
                 lr: float = 1e-3) -> list[float]:
    """What an expert hand-writes for the same precision and layout as aezoo's defaults:
    uint8 ``images`` scaled per batch, channels_last, foreach Adam (eps 1e-7, as the
    tutorial), bf16 autocast when asked, the loss summed on the device and read once per
    epoch, denormals flushed (the caller). Returns images/s of each epoch."""
    fmt = torch.channels_last
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7, foreach=True)
    n = images.shape[0]
    speeds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(n)
        total = torch.zeros(())
        for s in range(0, n, batch):
            xb = images[perm[s:s + batch]].to(torch.float32, memory_format=fmt).div_(255)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=amp_dtype or torch.bfloat16,
                                enabled=amp_dtype is not None):
                loss = loss_fn(model(xb), xb)
            loss.backward()
            opt.step()
            total += loss.detach()
        float(total)
        speeds.append(n / (time.perf_counter() - t0))
    return speeds
