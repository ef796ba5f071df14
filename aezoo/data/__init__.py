"""Datasets as in-memory uint8 tensors ``(N, C, H, W)``; scaled to [0, 1] per batch.

Sources (built-in and plugins) register in the ``aezoo.datasets`` entry-point group;
see ``aezoo.data.source`` for the contract and docs/data.md for the user guide.
Importing this package is cheap: numpy is imported on first use of the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aezoo.data.base import (
        ArrayDataset,
        declared_shape,
        load_dataset,
        split_indices,
        stratified_split,
    )

__all__ = ["ArrayDataset", "declared_shape", "load_dataset", "split_indices",
           "stratified_split"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from aezoo.data import base

        return getattr(base, name)
    raise AttributeError(f"module 'aezoo.data' has no attribute {name!r}")
