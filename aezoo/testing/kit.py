"""Conformance checks for the other kinds of parts, and an exact-resume check of a variant.

    from aezoo.testing import (check_callback, check_command, check_dataset, check_metric,
                               check_regularizer, check_resume)

    def test_my_parts():
        check_metric("my-metric")
        check_regularizer("my-penalty")
        check_dataset("my-digits", limit=64)
        check_command("my-command")
        check_callback("my-logger")

    def test_my_variant_resumes_exactly(tmp_path):
        check_resume("my-variant", tmp_path)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aezoo.protocols import CallbackComponent, Forward, builder
from aezoo.testing.descriptors import check_descriptor, check_params_model, check_torch_free
from aezoo.testing.models import Shape, _batch


def check_metric(name: str, shape: Shape = (1, 28, 28), torch_free: bool = True) -> None:
    """A metric: descriptor, torch-free module; ``compute`` returns one finite value per
    image (or a finite scalar), the same for the same images, and a perfect
    reconstruction scores at least as well as a poor one (``higher_is_better`` says
    which way is better)."""
    import torch

    descriptor = check_descriptor("metric", name, torch_free=torch_free)
    target = _batch(shape, n=4)
    poor = (1 - target).clamp(0, 1)

    def score(recon: torch.Tensor) -> torch.Tensor:
        if descriptor.sees_forward:
            logits = torch.logit(recon.clamp(1e-4, 1 - 1e-4))
            latent = torch.zeros(len(target), 4, 2, 2)
            out = descriptor.compute(Forward(target, target, latent, logits,
                                             {"mean": latent, "logvar": latent}))
        else:
            out = descriptor.compute(recon, target)
        if not isinstance(out, torch.Tensor) or out.dim() > 1 or (
                out.dim() == 1 and len(out) != len(target)):
            raise AssertionError(f"metric {name} must return one value per image (N,) or a "
                                 f"scalar, got {getattr(out, 'shape', type(out).__name__)}")
        if not bool(torch.isfinite(out).all()):
            raise AssertionError(f"metric {name} is not finite on images in [0, 1]")
        return out.float().mean()

    perfect, bad = score(target), score(poor)
    if not torch.equal(score(target), perfect):
        raise AssertionError(f"metric {name} gives two values for the same images")
    better = perfect >= bad if descriptor.higher_is_better else perfect <= bad
    if not bool(better):
        raise AssertionError(f"metric {name} scores a perfect reconstruction worse than its "
                             f"inverse ({float(perfect):.4g} vs {float(bad):.4g}): check "
                             "higher_is_better")


def check_regularizer(name: str, extras: Mapping[str, Any] | None = None,
                      latent_shape: Shape = (8, 4, 4), torch_free: bool = True) -> None:
    """A regulariser: descriptor, params model, torch-free module; on a Forward carrying
    what it ``needs`` (``extras``, default: random values of the latent's shape) it
    returns a finite scalar that passes a gradient to the latent or those extras."""
    import torch

    descriptor = check_descriptor("regularizer", name, torch_free=False)
    check_params_model(descriptor.params)
    if torch_free:
        check_torch_free([("regularizer", name)])
    module = builder(descriptor)(descriptor.params())
    g = torch.Generator().manual_seed(0)  # the same probe every run
    latent = torch.randn(4, *latent_shape, generator=g).requires_grad_()
    given = dict(extras) if extras is not None else {
        key: (0.5 * torch.randn(4, *latent_shape, generator=g)).requires_grad_()
        for key in descriptor.needs}
    x = _batch((1, 28, 28), n=4)
    value = module(Forward(x, x, latent, torch.zeros_like(x), given))
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        raise AssertionError(f"regularizer {name} must return a scalar tensor")
    if not math.isfinite(float(value.detach())):
        raise AssertionError(f"regularizer {name} is {float(value.detach())}")
    inputs = [t for t in (latent, *given.values()) if isinstance(t, torch.Tensor)
              and t.requires_grad]
    grads = torch.autograd.grad(value, inputs, allow_unused=True)
    if not any(g is not None and bool(g.ne(0).any()) for g in grads):
        raise AssertionError(f"regularizer {name} passes no gradient to the latent or the "
                             "extras it needs")


def check_dataset(name: str, limit: int = 64, torch_free: bool = True,
                  params: Mapping[str, Any] | None = None) -> Any:
    """A dataset: descriptor, params model (if it declares one), torch-free module; it
    loads (the first ``limit`` images, with ``params``) as uint8 ``(N, C, H, W)`` splits
    with the declared shape, labels one per image."""
    import numpy as np

    from aezoo.data import load_dataset
    from aezoo.specs import DataSpec

    descriptor = check_descriptor("dataset", name, torch_free=False)
    if descriptor.params is not None:
        check_params_model(descriptor.params, params)
    if torch_free:
        check_torch_free([("dataset", name)])
    data = load_dataset(DataSpec(name=name, limit=limit, params=dict(params or {})))
    for split in ("train", "val"):
        images = np.asarray(getattr(data, split)[:limit])
        if images.dtype != np.uint8 or images.ndim != 4:
            raise AssertionError(f"dataset {name}'s {split} split is {images.dtype} "
                                 f"{images.shape}, not uint8 (N, C, H, W)")
        labels = getattr(data, f"{split}_labels", None)
        if labels is not None and len(labels) < len(images):
            raise AssertionError(f"dataset {name}'s {split} labels are fewer than its images")
    if descriptor.shape is not None and tuple(data.shape) != tuple(descriptor.shape):
        raise AssertionError(f"dataset {name} declares {descriptor.shape}, loads {data.shape}")
    return data


def check_command(name: str) -> None:
    """A command entry: ``register(app)`` adds at least one command to a typer app, whose
    ``--help`` renders; the module imports without torch (every command module is imported
    at ``aezoo`` start-up)."""
    import typer
    from typer.testing import CliRunner

    register = check_descriptor("command", name, torch_free=True)
    app = typer.Typer()
    register(app)
    if not (app.registered_commands or app.registered_groups):
        raise AssertionError(f"command {name}'s register(app) adds no command")
    result = CliRunner().invoke(app, ["--help"])
    if result.exit_code != 0:
        raise AssertionError(f"--help of command {name} fails: {result.output[-300:]}")


def check_callback(name: str, directory: str | Path | None = None,
                   params: Mapping[str, Any] | None = None) -> Any:
    """A callback entry: a :class:`~aezoo.protocols.CallbackComponent` (its params model
    checked, built with ``params``) or a plain factory taking the run directory; either
    returns an object whose hooks are callables; torch-free module. Returns the callback."""
    import tempfile

    from aezoo.callbacks import load_callback
    from aezoo.training.hooks import HOOKS

    descriptor = check_descriptor("callback", name, torch_free=True)
    if isinstance(descriptor, CallbackComponent):
        check_params_model(descriptor.params, params)
    with tempfile.TemporaryDirectory() as tmp:
        callback = load_callback(name, Path(directory or tmp), params)
    hooks = [h for h in HOOKS if hasattr(callback, h)]
    if not hooks:
        raise AssertionError(f"callback {name} defines none of the hooks ({', '.join(HOOKS)})")
    for hook in hooks:
        if not callable(getattr(callback, hook)):
            raise AssertionError(f"callback {name}'s {hook} is not callable")
    return callback


def check_resume(variant: str, directory: str | Path, *, limit: int = 128,
                 batch_size: int = 32) -> None:
    """Two epochs straight, and one epoch then ``--resume`` to two, end with the same
    weights, bit for bit (fp32, tiny data): the variant's random draws, extras and
    callbacks' state all come back from the checkpoint."""
    import torch

    from aezoo.config import build_run_spec
    from aezoo.run import resume, train

    base = Path(directory)
    overrides = {"train": {"epochs": 2, "precision": "32", "batch_size": batch_size,
                           "images": False, "device": "cpu"}, "data": {"limit": limit}}
    straight = train(build_run_spec(variant, [overrides]), base / "straight").model
    first = build_run_spec(variant, [overrides, {"train": {"epochs": 1}}])
    train(first, base / "resumed")
    resumed = resume(base / "resumed", {"epochs": 2}).model
    a, b = straight.state_dict(), resumed.state_dict()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    if differ:
        raise AssertionError(f"{variant} does not resume exactly: {', '.join(differ[:5])} "
                             "differ after 1 + 1 epochs from 2 straight")
