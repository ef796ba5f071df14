"""An exponential moving average of a model's weights (``train.ema``).

The average covers every floating-point parameter and buffer (BatchNorm statistics too),
lives on the training device, and is updated after each optimiser step by torch's own EMA
update (``torch.optim.swa_utils.get_ema_multi_avg_fn``: one foreach ``lerp_`` over all of
them). ``swapped_in()`` puts it into the model for validation, checkpoints
and the final save; the raw weights stay what the optimiser trains (and what resume needs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.sources = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
        self.averages = [t.detach().clone() for t in self.sources]
        self._update = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(self) -> None:
        if self.averages:
            self._update(self.averages, self.sources, None)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged weights inside this block, its own after it."""
        with torch.no_grad():
            raw = [t.detach().clone() for t in self.sources]
            for target, value in zip(self.sources, self.averages, strict=True):
                target.copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for target, value in zip(self.sources, raw, strict=True):
                    target.copy_(value)

    def tensors(self) -> dict[str, torch.Tensor]:
        """For the training state: ``ema.<i>`` in the order of the model's tensors."""
        return {f"ema.{i}": t for i, t in enumerate(self.averages)}

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`tensors` (exact shapes and dtypes); a state without them
        (saved without ``ema``) starts the average from the weights it restored."""
        from aezoo.errors import CheckpointError

        with torch.no_grad():
            for i, (average, source) in enumerate(zip(self.averages, self.sources, strict=True)):
                saved = tensors.get(f"ema.{i}")
                if saved is None:
                    average.copy_(source)
                elif saved.shape != average.shape or saved.dtype != average.dtype:
                    raise CheckpointError(
                        f"the training state's ema.{i} is {saved.dtype} {list(saved.shape)}, "
                        f"the model's {average.dtype} {list(average.shape)}",
                        "resume from an earlier copy or start the run again")
                else:
                    average.copy_(saved)
