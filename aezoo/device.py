"""Device names (``auto|cpu|cuda|cuda:N|mps``) to torch devices, with clear failures."""

from __future__ import annotations

import torch

from aezoo.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """The torch device ``name`` stands for on this machine, or a DeviceError saying why not."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
            raise DeviceError(f"CUDA is not available here (torch {torch.__version__}, {build})",
                              "use --device cpu (or auto), or install a CUDA build of torch")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device {name} does not exist: this machine has {count} GPU(s)",
                              f"use cuda:0 to cuda:{count - 1}")
        return torch.device("cuda", index)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError("MPS is not available here", "use --device cpu (or auto)")
        return torch.device("mps")
    raise DeviceError(f"unknown device '{name}'", "use auto, cpu, cuda, cuda:N or mps")
