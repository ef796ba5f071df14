"""``check_variant``: every conformance check for one variant, one AssertionError."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, NoReturn

from aezoo import registry
from aezoo.errors import AezooError, summary
from aezoo.protocols import format_shape
from aezoo.testing import models
from aezoo.testing.descriptors import check_descriptor, check_params_model, check_torch_free
from aezoo.testing.models import PROBE_SHAPES, Shape, _build, _shape


def check_variant(name: str, *, shapes: Iterable[Shape] = (), seed: int = 0,
                  bad_params: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
                  probe_shapes: Iterable[Shape] = PROBE_SHAPES,
                  torch_free: bool = True, skip: Iterable[str] = (),
                  overrides: Mapping[str, Any] | None = None) -> list[str]:
    """Run every check on variant ``name`` and its components; returns the checks run.

    ``shapes``: extra input shapes to round-trip, beside the variant's ``input_shape``
    and ``example_shapes``. ``bad_params``: per kind (``"encoder"``...) params that must
    be rejected, e.g. ``{"encoder": [{"channels": []}]}``. ``skip``: labels of checks not
    to run (e.g. ``{"bf16 autocast"}``; a prefix like ``"shape round trip"`` skips all of
    its kind). ``overrides``: ``aezoo.build`` overrides for every model the checks build
    (e.g. ``{"encoder_params": {"channels": [8, 8]}}`` to keep a big model quick).
    Raises one AssertionError listing every failed check.
    """
    import torch

    threads = torch.get_num_threads()
    # Tiny batches: one thread is faster and immune to oversubscribed CI machines.
    torch.set_num_threads(1)
    try:
        return _check_variant(name, shapes, seed, bad_params, probe_shapes, torch_free,
                              tuple(skip), dict(overrides or {}))
    finally:
        torch.set_num_threads(threads)


def _check_variant(name: str, shapes: Iterable[Shape], seed: int,
                   bad_params: Mapping[str, Iterable[Mapping[str, Any]]] | None,
                   probe_shapes: Iterable[Shape], torch_free: bool, skip: tuple[str, ...],
                   overrides: dict[str, Any]) -> list[str]:
    failed: list[str] = []
    ran: list[str] = []

    def build(seed: int, **more: Any) -> Any:
        return _build(name, seed, **{**overrides, **more})

    def run(label: str, check: Callable[[], Any]) -> Any:
        if any(label.startswith(s) for s in skip):
            return None
        ran.append(label)
        try:
            return check()
        except (AssertionError, AezooError) as exc:
            failed.append(f"{label}: {exc}")
        except Exception as exc:  # the plugin crashed: a failure to report, not to raise
            failed.append(f"{label}: {summary(exc)}")
        return None

    variant = run("variant descriptor",
                  lambda: check_descriptor("variant", name, torch_free=False))
    if variant is None:
        _raise(name, failed)
    variant = registry.variant(name)
    bad = dict(bad_params or {})
    for kind in registry.COMPONENT_KINDS:
        ref = getattr(variant, kind)
        desc = run(f"{kind} '{ref}' descriptor",
                   partial(check_descriptor, kind, ref, torch_free=False))
        if desc is None:
            continue
        run(f"{kind} '{ref}' params",
            partial(check_params_model, desc.params, getattr(variant, f"{kind}_params"),
                    bad=bad.get(kind, ())))
    if torch_free:
        refs = [("variant", name), *((k, getattr(variant, k)) for k in registry.COMPONENT_KINDS)]
        run("torch-free descriptors", lambda: check_torch_free(refs))
    if failed:
        _raise(name, failed)

    model = run("build", lambda: build(seed))
    if model is None:
        _raise(name, failed)
    all_shapes: dict[Shape, None] = dict.fromkeys(
        _shape(s) for s in (variant.input_shape, *variant.example_shapes, *shapes))
    for shape in all_shapes:
        run(f"shape round trip {format_shape(shape)}",
            partial(lambda s: models.check_shapes(build(seed, input_shape=s)), shape))
    run("impossible shapes", lambda: models.check_shape_errors(
        lambda s: build(seed, input_shape=s), probe_shapes))
    if not overrides:  # the declared count is the default model's
        run("param_count", lambda: models.check_param_count(model, variant.param_count))
    run("gradients", lambda: models.check_gradients(model))
    if not getattr(model.loss_fn, "sees_forward", False):  # a (logits, target) loss
        run("loss", lambda: models.check_loss(model.loss_fn, model.input_shape))
    run("seed determinism", lambda: models.check_determinism(build, seed))
    run("save/load", lambda: models.check_save_load(build(seed)))
    run("bf16 autocast", lambda: models.check_bf16(build(seed)))
    if failed:
        _raise(name, failed)
    return ran


def _raise(name: str, failed: list[str]) -> NoReturn:
    lines = "\n".join(f"  - {f}" for f in failed)
    raise AssertionError(f"variant '{name}' failed {len(failed)} conformance "
                         f"check{'s' if len(failed) != 1 else ''}:\n{lines}")
