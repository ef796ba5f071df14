"""Datasets as in-memory uint8 tensors ``(N, C, H, W)``; scaled to [0, 1] per batch."""

from aezoo.data.base import ArrayDataset, load_dataset, stratified_split

__all__ = ["ArrayDataset", "load_dataset", "stratified_split"]
