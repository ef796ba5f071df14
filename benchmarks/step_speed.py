"""One training step of a variant, phase by phase, under each switch worth trying on a CPU.

usage: python benchmarks/step_speed.py [--variant cae-upsample] [--batch 256] [--steps 20]
                                       [--rounds 5] [--threads N] [--only A B ...]
                                       [--profile NAME] [--clock wall|cpu] [--json FILE]

Each configuration trains its own copy of the model (same init) on the same uint8 batch,
scaled as the trainer does; rounds interleave the configurations (A B C ... A B C ...) so
a drifting machine hurts them alike, and ratios against ``base`` are taken per round.
Phases are timed on the host around forward (+loss), backward and the optimiser step (CPU
ops are synchronous). ``--profile NAME`` prints torch.profiler's table for one config.

  base          what the trainer does today: channels_last, precision auto, foreach Adam
  adam-loop     torch's per-parameter Adam loop (foreach=False: the trainer's before)
  nchw          the default memory layout
  bf16          bf16 autocast (a default only where the CPU has native bf16)
  adam-foreach  Adam(foreach=True) (the same as base since it became the default)
  adam-fused    Adam(fused=True) (CPU kernel since torch 2.4)
  compile       torch.compile of the loss module (inductor, dynamic=False)
  compile-max   the same with mode="max-autotune-no-cudagraphs"
  compile-step  forward, backward and Adam step compiled as one function
  bf16-weights  bf16 parameters and activations, fp32 master weights in Adam
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_images, write_json  # noqa: E402

import aezoo  # noqa: E402
from aezoo.tensors import to_unit  # noqa: E402
from aezoo.training.precision import flush_denormals, resolve_precision  # noqa: E402

Phases = dict[str, float]
CLOCK = time.perf_counter  # --clock cpu: process_time (robust to a loaded machine)


class Config:
    """A model copy, its optimiser and a step function returning per-phase seconds."""

    def __init__(self, name: str, variant: str, init: dict[str, torch.Tensor],
                 batch: torch.Tensor) -> None:
        self.name = name
        model = aezoo.build(variant)
        model.load_state_dict(init)
        fmt = torch.contiguous_format if name == "nchw" else torch.channels_last
        self.model = model.to(memory_format=fmt)  # type: ignore[call-overload]
        self.x = to_unit(batch, fmt)
        auto = resolve_precision("auto", torch.device("cpu"))
        self.amp = torch.bfloat16 if name == "bf16" or (auto == "bf16" and name != "fp32") \
            else None
        opt_kwargs: dict[str, Any] = {"lr": 1e-3, "eps": 1e-7, "foreach": name != "adam-loop"}
        if name == "adam-fused":
            opt_kwargs = {**opt_kwargs, "foreach": None, "fused": True}
        self.master: list[torch.Tensor] | None = None
        if name == "bf16-weights":
            self.model.to(torch.bfloat16)
            self.x = self.x.to(torch.bfloat16)
            self.master = [p.detach().float().clone().requires_grad_()
                           for p in self.model.parameters()]
            self.opt = torch.optim.Adam(self.master, **opt_kwargs)
        else:
            self.opt = torch.optim.Adam(self.model.parameters(), **opt_kwargs)
        self.loss: Callable[[torch.Tensor], torch.Tensor] = lambda x: self.model.loss(x)
        self.whole: Callable[[torch.Tensor], torch.Tensor] | None = None
        if name in ("compile", "compile-max"):
            mode = "max-autotune-no-cudagraphs" if name == "compile-max" else None
            self.loss = torch.compile(self.loss, dynamic=False, mode=mode)
        if name == "compile-step":
            def whole(x: torch.Tensor) -> torch.Tensor:
                loss = self.model.loss(x)
                loss.backward()
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
                return loss.detach()
            self.whole = torch.compile(whole, dynamic=False)

    def step(self) -> Phases:
        if self.whole is not None:
            t0 = CLOCK()
            self.whole(self.x)
            return {"forward": 0.0, "backward": 0.0, "optimizer": 0.0,
                    "step": CLOCK() - t0}
        t0 = CLOCK()
        self.opt.zero_grad(set_to_none=True)
        if self.amp is not None:
            with torch.autocast("cpu", dtype=self.amp):
                loss = self.loss(self.x)
        else:
            loss = self.loss(self.x)
        t1 = CLOCK()
        loss.backward()
        t2 = CLOCK()
        if self.master is not None:
            for p, m in zip(self.model.parameters(), self.master, strict=True):
                m.grad = p.grad.float() if p.grad is not None else None
            self.opt.step()
            with torch.no_grad():
                for p, m in zip(self.model.parameters(), self.master, strict=True):
                    p.copy_(m)
            self.model.zero_grad(set_to_none=True)
        else:
            self.opt.step()
        t3 = CLOCK()
        loss.item()  # what the NaN guard reads each step on CPU
        t4 = CLOCK()
        return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2,
                "step": t4 - t0}


NAMES = ["base", "nchw", "bf16", "adam-loop", "adam-foreach", "adam-fused", "compile",
         "compile-max", "compile-step", "bf16-weights"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="cae-upsample")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per config and round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--only", nargs="+", default=None, choices=NAMES)
    p.add_argument("--profile", choices=NAMES)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="cpu: the process's CPU seconds (with --threads 1, the work itself, "
                   "whatever else runs on the machine)")
    p.add_argument("--json", default="benchmarks/results/step_speed.json")
    a = p.parse_args()
    global CLOCK
    if a.clock == "cpu":
        CLOCK = time.process_time
    flush_denormals()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    init = aezoo.build(a.variant).state_dict()
    batch = torch.from_numpy(make_images(a.batch))
    names = a.only or NAMES
    if "base" not in names:
        names = ["base", *names]
    info = machine()
    print(f"torch {info['torch']}, {torch.get_num_threads()} threads, batch {a.batch}, "
          f"precision auto = {resolve_precision('auto', torch.device('cpu'))}, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    configs: dict[str, Config] = {}
    for name in names:
        t = CLOCK()
        try:
            configs[name] = Config(name, a.variant, init, batch)
            for _ in range(a.warmup):  # compiles happen here
                configs[name].step()
        except Exception as exc:  # a switch this torch or CPU lacks: reported, not fatal
            print(f"{name}: unavailable ({type(exc).__name__}: {str(exc)[:200]})")
            configs.pop(name, None)
            continue
        print(f"{name}: ready in {CLOCK() - t:.1f} s", flush=True)
    if a.profile and a.profile in configs:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.steps):
                configs[a.profile].step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    rounds: dict[str, list[Phases]] = {n: [] for n in configs}
    for r in range(a.rounds):
        for name, cfg in configs.items():
            phases = [cfg.step() for _ in range(a.steps)]
            rounds[name].append({k: statistics.median(ph[k] for ph in phases)
                                 for k in phases[0]})
        print(f"round {r + 1} (load {os.getloadavg()[0]:.2f}): " + "  ".join(
            f"{n} {v[-1]['step'] * 1e3:.1f}" for n, v in rounds.items()), flush=True)
    base = rounds["base"]
    print(f"\n{'config':<14}{'step ms':>9}{'fwd':>8}{'bwd':>8}{'opt':>8}{'vs base':>9}")
    results = {}
    for name, per_round in rounds.items():
        med = {k: statistics.median(r[k] for r in per_round) for k in per_round[0]}
        ratio = statistics.median(b["step"] / r["step"] for b, r in zip(base, per_round,
                                                                            strict=True))
        results[name] = {"ms": {k: v * 1e3 for k, v in med.items()}, "speedup": ratio}
        print(f"{name:<14}{med['step'] * 1e3:>9.2f}{med['forward'] * 1e3:>8.2f}"
              f"{med['backward'] * 1e3:>8.2f}{med['optimizer'] * 1e3:>8.2f}{ratio:>8.2f}x")
    write_json(a.json, {"machine": info, "args": vars(a), "results": results})


if __name__ == "__main__":
    main()
