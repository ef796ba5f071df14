"""Multi-process training under ``torchrun``: rank discovery, process group, collectives.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with a world size above
one, :func:`setup` joins the process group (nccl on CUDA, gloo on CPU) and each process
uses ``cuda:LOCAL_RANK``. A single process never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from aezoo.device import resolve_device
from aezoo.errors import AezooError, DeviceError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """The ranks torchrun gives this process (one process when not under torchrun)."""
    try:
        return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise DeviceError("RANK, WORLD_SIZE or LOCAL_RANK is not an integer",
                          "launch with torchrun, or unset these variables") from None


def device_for(name: str, dist: Dist) -> torch.device:
    """The device this rank trains on: ``cuda``/``auto`` become ``cuda:LOCAL_RANK``."""
    device = resolve_device(name)
    if not dist.enabled:
        return device
    if device.type == "mps":
        raise DeviceError("distributed training does not support MPS",
                          "use --device cpu with torchrun, or train in one process")
    if device.type == "cuda":
        if ":" in name:
            raise DeviceError(f"--device {name} under torchrun: each process uses "
                              "cuda:LOCAL_RANK", "pass --device cuda (or auto)")
        if dist.local_rank >= torch.cuda.device_count():
            raise DeviceError(f"local rank {dist.local_rank} has no GPU "
                              f"({torch.cuda.device_count()} visible)",
                              "start at most one process per GPU (--nproc-per-node)")
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device


def setup(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; the device this rank uses."""
    dist = from_env()
    device = device_for(device_name, dist)
    if dist.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            torch.distributed.init_process_group(backend, rank=dist.rank,
                                                 world_size=dist.world_size)
        except (RuntimeError, ValueError) as exc:
            raise DeviceError(f"cannot join the {backend} process group "
                              f"({str(exc).splitlines()[0]})",
                              "check torchrun's --rdzv-endpoint / MASTER_ADDR and the "
                              "network between nodes (docs/distributed.md)") from None
    return dist, device


def shutdown(dist: Dist) -> None:
    if dist.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In place across ranks (``sum``, ``min`` or ``max``); a no-op in one process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor, op=getattr(torch.distributed.ReduceOp, op.upper()))
    return tensor


def broadcast_text(text: str, dist: Dist, device: torch.device) -> str:
    """Rank 0's ``text`` on every rank (as bytes in a tensor: no pickle)."""
    if not dist.enabled:
        return text
    data = text.encode() if dist.is_main else b""
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    torch.distributed.broadcast(size, 0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if dist.is_main and data:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    if len(buf):
        torch.distributed.broadcast(buf, 0)
    return bytes(buf.cpu().tolist()).decode()


def on_main(fn: Callable[[], T], dist: Dist, device: torch.device) -> T | None:
    """Run ``fn`` on rank 0 only; if it fails, every rank raises (no rank is left waiting)."""
    result: T | None = None
    problem = ""
    error: Exception | None = None
    if dist.is_main:
        try:
            result = fn()
        except Exception as exc:  # re-raised below, after telling the other ranks
            error, problem = exc, str(exc) or type(exc).__name__
    problem = broadcast_text(problem, dist, device)
    if error is not None:
        raise error
    if problem:
        raise AezooError(f"rank 0 failed: {problem}")
    return result
