"""Numeric precision: which autocast dtype a run trains in, and denormal flushing.

The memory layout (channels_last or not) is decided by ``aezoo.tensors``.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import torch

from aezoo.errors import UsageError


def flush_denormals() -> None:
    """Flush denormal floats to zero on CPU, as TensorFlow does by default.

    A model whose activations die or whose gradients get tiny produces denormals, and x86
    computes on them up to 4x slower (measured: a cae-strided run that fell from 6,000 to
    1,600 img/s in its second epoch). Threads inherit the setting when they are created,
    so call this before the first parallel torch op of the process; the trainer calls it
    too, which covers its own thread at least.
    """
    torch.set_flush_denormal(True)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags the OS reports for this CPU (Linux' /proc/cpuinfo; empty
    elsewhere, where ``auto`` then stays fp32)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def native_cpu_bf16() -> bool:
    """Whether bf16 autocast is the faster choice on this CPU: only with AMX tiles.

    Measured on the three CPU kinds the project has met (docs/benchmarks.md): with AMX,
    bf16 trains these models ~2.4x faster than fp32 to the same loss; with AVX512-BF16 but
    no AMX it is 1.17x *slower*; on AVX2 bf16 is emulated and far slower. So the rule is
    AMX, not "computes bf16 natively".
    """
    return "amx_bf16" in cpu_flags()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> the fastest precision that trains as well as fp32 on ``device``."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cpu" and native_cpu_bf16() else "32"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or a clear UsageError."""
    precision = resolve_precision(precision, device)
    if precision == "32":
        return None
    if precision == "16":
        if device.type == "cpu":
            raise UsageError("--precision 16 is not supported on CPU (float16 autocast there "
                             "is slower than float32)", "use --precision bf16 or 32 on CPU")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"{torch.cuda.get_device_name(device)} does not support bfloat16",
                         "use --precision 16 or 32")
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None
             ) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device``; nothing for full precision (``None``)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
