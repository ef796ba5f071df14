"""The epoch's validation forward (fp32, eval, the whole split), in each form worth trying.

usage: python benchmarks/val_forward.py [--variant cae-upsample] [--n 500] [--rounds 20]
                                        [--only A B ...] [--json FILE]

Validation is one forward of the validation split per epoch: after torch's import, the
largest fixed part of the seed job that is not a training step. Each form computes the
same reconstructions (the largest difference from eager is reported); rounds interleave
the forms and the table gives each one's first call (what tracing or compiling costs,
paid every run) and its median after three warm-up calls.

  eager        what the trainer does: one batch of the whole split, channels_last
  chunk-256    the same in batches of 256
  nchw         the default memory layout
  jit          torch.jit.trace (no freezing: the live weights, so no re-trace per epoch)
  jit-onednn   the same with oneDNN graph fusion (torch.jit.enable_onednn_fusion)
  compile      torch.compile (inductor, dynamic=False), no freezing
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_images, write_json  # noqa: E402

import aezoo  # noqa: E402
from aezoo.tensors import to_unit  # noqa: E402
from aezoo.training.precision import flush_denormals  # noqa: E402

NAMES = ["eager", "chunk-256", "nchw", "jit", "jit-onednn", "compile"]
Forward = Callable[[torch.Tensor], torch.Tensor]


class Net(torch.nn.Module):
    """Encoder then decoder: the logits validation computes, as one traceable module."""

    def __init__(self, model: aezoo.Autoencoder) -> None:
        super().__init__()
        self.encoder, self.decoder = model.encoder, model.decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def form(name: str, model: aezoo.Autoencoder, x: torch.Tensor) -> Forward:
    fmt = torch.contiguous_format if name == "nchw" else torch.channels_last
    # Its own copy: .to(memory_format) converts a module's weights in place.
    net = Net(copy.deepcopy(model)).to(memory_format=fmt).eval()  # type: ignore[call-overload]
    if name == "chunk-256":
        return lambda xb: torch.cat([net(xb[s:s + 256]) for s in range(0, len(xb), 256)])
    if name in ("jit", "jit-onednn"):
        torch.jit.enable_onednn_fusion(name == "jit-onednn")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(net, x.contiguous(memory_format=fmt))
        return traced  # type: ignore[no-any-return]
    if name == "compile":
        return torch.compile(net, dynamic=False)  # type: ignore[return-value]
    return net


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="cae-upsample")
    p.add_argument("--n", type=int, default=500, help="validation images (mnist5k: 500)")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--only", nargs="+", default=None, choices=NAMES)
    p.add_argument("--json", default="benchmarks/results/val_forward.json")
    args = p.parse_args()
    flush_denormals()
    model = aezoo.build(args.variant)
    images = torch.from_numpy(make_images(args.n))
    names = args.only or NAMES
    inputs = {n: to_unit(images, torch.contiguous_format if n == "nchw"
                         else torch.channels_last) for n in names}
    forms: dict[str, Forward] = {}
    first: dict[str, float] = {}
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        reference = Net(model).eval()(inputs[names[0]].contiguous())
    for name in names:
        forms[name] = form(name, model, inputs[name])
        with torch.no_grad():
            t0 = time.perf_counter()
            out = forms[name](inputs[name])
            first[name] = time.perf_counter() - t0
            for _ in range(3):
                forms[name](inputs[name])
        diff = float((out - reference).abs().max())
        print(f"{name}: first call {first[name] * 1e3:.1f} ms, max |diff| {diff:.1e}")
    for _ in range(args.rounds):
        for name in names:
            with torch.no_grad():
                t0 = time.perf_counter()
                forms[name](inputs[name])
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times[names[0]])
    print(f"\n{args.variant}, {args.n} images, {torch.get_num_threads()} threads; "
          f"medians of {args.rounds} interleaved rounds")
    print(f"{'form':12s}{'first call':>14s}{'median':>10s}{'vs ' + names[0]:>12s}")
    rows: dict[str, Any] = {}
    for name in names:
        med = statistics.median(times[name])
        rows[name] = {"first_ms": first[name] * 1e3, "median_ms": med * 1e3,
                      "speedup": base / med}
        print(f"{name:12s}{first[name] * 1e3:12.1f} ms{med * 1e3:7.1f} ms{base / med:11.2f}x")
    write_json(args.json, {"machine": machine(), "variant": args.variant, "n": args.n,
                           "forms": rows})


if __name__ == "__main__":
    main()
