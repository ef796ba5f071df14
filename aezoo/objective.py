"""The objective as a value: the loss and the weighted latent regularisers as named terms.

A plain loss ``loss(logits, target) -> scalar`` is the term ``recon``. A loss that sets
``sees_forward = True`` gets the whole :class:`aezoo.protocols.Forward` and may return
named terms itself. Each regulariser adds ``weight * penalty(forward)`` under its name.
The total, what is minimised, checkpointed on and guarded, is the sum of the terms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import nn

from aezoo import registry
from aezoo.config import part_params
from aezoo.errors import AezooError, PluginError, SpecError
from aezoo.protocols import Forward, Shape, builder
from aezoo.specs import ComponentSpec, RegularizerSpec, RunSpec

RECON = "recon"  # the term a plain (logits, target) loss produces


class Objective(nn.Module):
    """``objective(forward, loss) -> {term: scalar}``; ``total(terms)`` is minimised.

    The loss module stays the model's own attribute (``model.loss_fn``: checkpoint keys
    unchanged, and it may be replaced); the regularisers live here."""

    def __init__(self, regularizers: list[tuple[str, float, nn.Module]]) -> None:
        super().__init__()
        self.regularizers = nn.ModuleList([module for _, _, module in regularizers])
        self.reg_names = [name for name, _, _ in regularizers]
        self.reg_weights = [weight for _, weight, _ in regularizers]
        # train.anneal: factors of named terms, set by the trainer before each step. A
        # tensor updated in place, so compiled steps read new values without recompiling;
        # not a buffer: no checkpoint, EMA or state file sees it.
        self.scaled: list[str] = []
        self.factors = torch.ones(0)

    def scale(self, factors: Mapping[str, float], device: torch.device | str = "cpu") -> None:
        """Multiply the named terms by ``factors`` from now on (``{}``: by nothing)."""
        names = list(factors)
        values = torch.tensor([float(factors[n]) for n in names], dtype=torch.float32)
        want, have = torch.device(device), self.factors.device
        moved = want.type != have.type or want.index not in (None, have.index)
        if names != self.scaled or moved:
            self.scaled = names
            self.factors = values.to(device)
        elif names:
            self.factors.copy_(values)  # in place: a compiled graph keeps reading it

    def forward(self, fwd: Forward, loss: nn.Module) -> dict[str, torch.Tensor]:
        sees_forward = bool(getattr(loss, "sees_forward", False))
        out = loss(fwd) if sees_forward else loss(fwd.logits, fwd.target)
        if isinstance(out, Mapping):
            terms = {str(k): v for k, v in out.items()}
            if not terms:
                raise PluginError("the loss returned no terms", "return a scalar or a dict of them")
        else:
            terms = {RECON: out}
        for name, weight, module in zip(self.reg_names, self.reg_weights, self.regularizers,
                                        strict=True):
            key = name if name not in terms else f"{name}_{len(terms)}"
            terms[key] = module(fwd) * weight
        for j, name in enumerate(self.scaled):
            if name in terms:
                terms[name] = terms[name] * self.factors[j]
        return terms


class UnavailableLoss(nn.Module):
    """Stands in for a loss whose plugin is not installed: the model still encodes and
    decodes; asking it for its objective is a clear error."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, *args: Any) -> torch.Tensor:
        raise PluginError(f"loss '{self.name}' is not installed: this model was loaded for "
                          "inference only", "install the plugin that provides it to train "
                          "or evaluate the loss")


def metric_values(metric: Any, fwd: Forward, recon: torch.Tensor) -> torch.Tensor:
    """A metric descriptor's per-image values ``(N,)`` on one batch: ``compute(recon,
    target)``, or ``compute(forward)`` for one that ``sees_forward``. A scalar counts as
    the batch's mean; anything else that is not one value per image is a ``ValueError``."""
    n = len(fwd.target)
    out = (metric.compute(fwd) if getattr(metric, "sees_forward", False)
           else metric.compute(recon, fwd.target))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"compute returned a {type(out).__name__}, not a tensor")
    if out.dim() == 0:
        return out.expand(n)
    if out.numel() != n:
        raise ValueError(f"compute returned shape {list(out.shape)}, not one value per "
                         f"image ({n})")
    return out.reshape(n)


def total(terms: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The sum of the terms (the objective's value)."""
    values = list(terms.values())
    out = values[0]
    for value in values[1:]:
        out = out + value
    return out


def build_loss(spec: ComponentSpec, input_shape: Shape) -> nn.Module:
    """The loss a (resolved) spec names; shape-aware losses get the input shape."""
    descriptor = registry.loss(spec.name)
    params = part_params("loss", spec.name, spec.params, "model.loss.params")
    built = (builder(descriptor)(params, input_shape) if descriptor.shape_aware
             else builder(descriptor)(params))
    if not isinstance(built, nn.Module):
        raise PluginError(f"loss '{spec.name}' builder did not return a torch.nn.Module",
                          "fix the plugin's builder")
    return built


def build_regularizers(specs: list[RegularizerSpec]) -> list[tuple[str, float, nn.Module]]:
    """(name, weight, module) for each regulariser of a spec."""
    out = []
    for i, reg in enumerate(specs):
        descriptor = registry.load("regularizer", reg.name)
        params = part_params("regularizer", reg.name, reg.params,
                             f"model.regularizers.{i}.params")
        module = builder(descriptor)(params)
        if not isinstance(module, nn.Module):
            raise PluginError(f"regularizer '{reg.name}' builder did not return a "
                              "torch.nn.Module", "fix the plugin's builder")
        out.append((reg.name.rpartition(":")[2], reg.weight, module))
    return out


def check_needs(specs: list[RegularizerSpec], extras: Mapping[str, Any], encoder: str) -> None:
    """Every regulariser finds the encoder outputs it reads (e.g. KL: mean and logvar)."""
    for i, reg in enumerate(specs):
        needs = registry.load("regularizer", reg.name).needs
        missing = [key for key in needs if key not in extras]
        if not missing:
            continue
        has = (f"its code and {', '.join(sorted(extras))}" if extras else "only its code")
        drop = f"or drop it (model.regularizers.{i})"
        if set(missing) <= {"mean", "logvar"}:  # a Gaussian's: what a KL term reads
            fix = ("use a stochastic encoder, one returning {'mean': ..., 'logvar': ...} "
                   f"(e.g. the 'gaussian-pool' of cae-vae), {drop}")
        else:
            keys = ", ".join(f"'{k}': ..." for k in missing)
            fix = (f"use an encoder whose forward returns {{'latent': ..., {keys}}} (the "
                   f"one regularizer '{reg.name}' was written for), {drop}")
        raise SpecError(f"regularizer '{reg.name}' needs the encoder to return "
                        f"{' and '.join(missing)}, which encoder '{encoder}' does not "
                        f"(it returns {has})", fix)


# How a run turns a part on, per kind: what the fix of a missing companion says.
_TURN_ON = {"encoder": "--set model.encoder.name={}", "decoder": "--set model.decoder.name={}",
            "loss": "--set model.loss.name={}", "regularizer": "add {{'name': '{}'}} to "
            "model.regularizers", "transform": "--set train.corrupt.name={}",
            "optimizer": "--set train.optimizer={}", "schedule": "--set train.scheduler={}",
            "metric": "add {} to train.metrics", "callback": "--callback {}"}


def used_parts(spec: RunSpec) -> dict[str, list[str]]:
    """kind -> the names of the parts ``spec`` uses, as written."""
    model, train = spec.model, spec.train
    return {"encoder": [model.encoder.name], "decoder": [model.decoder.name],
            "loss": [model.loss.name], "regularizer": [r.name for r in model.regularizers],
            "transform": [train.corrupt.name] if train.corrupt else [],
            "optimizer": [train.optimizer], "schedule": [train.scheduler],
            "metric": list(train.metrics), "callback": list(train.callbacks)}


def check_requires(spec: RunSpec) -> None:
    """Each regulariser's and callback's declared companions (``requires``: ``"KIND:NAME"``,
    or ``"KIND:DIST:NAME"`` for that distribution's part) are in the run; else one line
    naming both parts. Spec-level: runs before any data."""
    used = {kind: [_provider(kind, n) for n in names] for kind, names in used_parts(spec).items()}
    owners = [("regularizer", r.name, f"model.regularizers.{i}")
              for i, r in enumerate(spec.model.regularizers)]
    owners += [("callback", n, f"--no-callback {n}") for n in spec.train.callbacks]
    for kind, name, drop in owners:
        for need in getattr(registry.load(kind, name), "requires", ()):
            other, _, wanted = need.partition(":")
            dist, _, bare = wanted.rpartition(":")
            if any(b == bare and (not dist or d == registry.canonical(dist))
                   for d, b in used.get(other, [])):
                continue
            raise SpecError(f"{kind} '{name}' belongs with {other} '{wanted}', which this run "
                            "does not use",
                            f"{_TURN_ON.get(other, '{}').format(wanted)}, or drop {kind} "
                            f"'{name}' ({drop})")


def _provider(kind: str, name: str) -> tuple[str, str]:
    """(canonical distribution, bare name) of the part ``name`` (bare or ``DIST:NAME``)
    resolves to; the distribution as written (or "") where it does not resolve."""
    try:
        entry = registry.find(kind, name)
    except AezooError:
        dist, _, bare = name.rpartition(":")
        return registry.canonical(dist), bare
    return registry.canonical(entry.dist), entry.name


def build_transform(spec: ComponentSpec) -> Callable[[torch.Tensor, torch.Generator],
                                                      torch.Tensor]:
    """The input corruption ``t(x, generator) -> x'`` a (resolved) ``train.corrupt`` names."""
    descriptor = registry.load("transform", spec.name)
    params = part_params("transform", spec.name, spec.params, "train.corrupt.params")
    built = builder(descriptor)(params)
    if not callable(built):
        raise PluginError(f"transform '{spec.name}' builder did not return a callable",
                          "fix the plugin's builder")
    return cast(Callable[[torch.Tensor, torch.Generator], torch.Tensor], built)
