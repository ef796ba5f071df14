"""Equal quality: a seed study of aezoo's training against a bare loop on the same modules.

usage: python benchmarks/quality.py [--variant cae-upsample] [--epochs 50] [--seeds 5]
           [--configs aezoo aezoo-fp32 bare] [--jobs 1] [--threads 2]
           [--keras-python PY] [--json FILE] [--markdown FILE]

Every (config, seed) trains on the embedded mnist5k split (4,500 / 500), the variant's
batch size and learning rate; the final validation loss (BCE from logits, or the
variant's MSE) is measured by this script with one function for every config, in fp32.
Reported per config: mean, standard deviation and a 95% t-interval over seeds, the
mean curve per epoch, and Welch 95% intervals of each config's difference to ``bare``.

Configs are ``BASE[+MOD...]``:
  aezoo       aezoo's Trainer with the variant's defaults (precision auto: bf16 on CPUs with
              native bf16); +fp32 +bf16 +nchw (no channels_last) +eps8 (Adam eps 1e-8)
  aezoo-fp32  = aezoo+fp32
  bare        a hand-written loop on aezoo.build's encoder and decoder: its own Glorot-
              uniform init with zero biases (cae-upsample; cae-strided keeps PyTorch's
              default, as the variant declares), sigmoid + BCE on probabilities (as the
              tutorial and nn.BCELoss), torch.optim.Adam with the variant's lr and eps
              (PyTorch's placement: eps added to sqrt(v_hat), after bias correction),
              a randperm per epoch, the partial last batch kept, NCHW, fp32, denormals
              not flushed. Mods move one thing towards aezoo (or away from PyTorch):
              +logits (BCE from logits) +cl (channels_last) +flush (denormals to zero)
              +bf16 (autocast) +keras-adam (eps added to sqrt(v) before bias correction,
              as Keras) +eps8 +drop-last +same-init (keep the weights aezoo.build drew,
              so with the same seed the run starts where aezoo's does)
  keras       with --keras-python: the tutorial's Keras model verbatim (cae-upsample only)

Each config runs in its own process (its seeds one after another), because flushing
denormals is a per-thread CPU flag that torch's thread pool inherits when it starts.
Results depend on the seed only (2 intra-op threads pinned), not on machine load.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ALIASES = {"aezoo-fp32": "aezoo+fp32"}
MODS = {
    "aezoo": {"fp32", "bf16", "nchw", "eps8"},
    "bare": {"logits", "cl", "flush", "bf16", "keras-adam", "eps8", "drop-last", "same-init"},
    "keras": set(),
}
# t(0.975, df) for df = 1..30; beyond, the normal approximation's Cornish-Fisher correction.
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
REPORT_EPOCHS = (1, 5, 10, 20, 30, 40, 50)


def parse_config(name: str) -> tuple[str, set[str]]:
    base, *mods = ALIASES.get(name, name).split("+")
    if base not in MODS:
        raise SystemExit(f"unknown config {name!r}: the bases are {', '.join(MODS)}")
    unknown = set(mods) - MODS[base]
    if unknown:
        raise SystemExit(f"config {name!r}: {base} has no {', '.join(sorted(unknown))} "
                         f"(it has {', '.join(sorted(MODS[base])) or 'none'})")
    return base, set(mods)


# -- statistics -------------------------------------------------------------------------
def t975(df: float) -> float:
    """The 97.5% quantile of Student's t; a fractional df (Welch) is floored: conservative."""
    k = max(int(math.floor(df)), 1)
    if k <= len(T975):
        return T975[k - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * k) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * k**2)


def summarize(values: list[float]) -> dict[str, Any]:
    n = len(values)
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if n > 1 else float("nan")
    half = t975(n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"n": n, "mean": mean, "sd": sd, "ci95": [mean - half, mean + half],
            "min": min(values), "max": max(values)}


def welch(a: list[float], b: list[float]) -> dict[str, float]:
    """mean(a) - mean(b) and its 95% interval (Welch: unequal variances)."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if se == 0:
        return {"diff": diff, "low": diff, "high": diff, "df": float("inf")}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t975(df) * se
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": df}


# -- workers: one process per config ----------------------------------------------------
def worker(a: argparse.Namespace) -> None:
    base, mods = parse_config(a.worker)
    if base == "keras":
        run: Any = lambda a, mods, seed: keras_run(a, seed)  # noqa: E731
    else:
        import torch

        if base == "aezoo" or "flush" in mods:
            # What `aezoo train` does first, before torch's thread pool starts.
            torch.set_flush_denormal(True)
        torch.set_num_threads(a.threads)
        run = aezoo_run if base == "aezoo" else bare_run
    runs: list[dict[str, Any]] = []
    for seed in a.seed_list:
        runs.append(run(a, mods, seed))
        print(f"  {a.worker} seed {seed}: {runs[-1]['val'][-1]:.4f} "
              f"({runs[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
        # After every seed: a study cut short keeps what it finished (--merge reads it).
        Path(a.out).write_text(json.dumps({"config": a.worker, "variant": a.variant,
                                           "epochs": a.epochs, "runs": runs}) + "\n")


def load_split(path: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as npz:
        return npz["train"], npz["val"]


def val_metric(logits_fn: Any, val: Any, loss: str) -> float:
    """The one validation measure for every torch config: fp32, eval mode, whole split."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        logits = logits_fn(val).float()
        if loss == "bce":
            return float(F.binary_cross_entropy_with_logits(logits, val, reduction="sum")
                         .double() / val.numel())
        return float(F.mse_loss(torch.sigmoid(logits), val, reduction="sum").double()
                     / val.numel())


def aezoo_run(a: argparse.Namespace, mods: set[str], seed: int) -> dict[str, Any]:
    import torch

    import aezoo
    from aezoo.config import build_run_spec
    from aezoo.data import ArrayDataset
    from aezoo.training import Trainer

    train, val = load_split(a.data)
    overrides: dict[str, Any] = {"epochs": a.epochs, "seed": seed, "device": "cpu"}
    if "fp32" in mods:
        overrides["precision"] = "32"
    if "bf16" in mods:
        overrides["precision"] = "bf16"
    if "nchw" in mods:
        overrides["channels_last"] = False
    if "eps8" in mods:
        overrides["eps"] = 1e-8
    spec = build_run_spec(a.variant, [{"train": overrides}])
    loss = spec.model.loss.name
    val_x = torch.from_numpy(val).float().div_(255)
    curve: list[float] = []

    class Measure:  # the same measure as the bare loop's, after aezoo's own validation
        def on_epoch_end(self, trainer: Any, result: Any) -> None:
            m = trainer.model
            m.eval()
            curve.append(val_metric(lambda x: m.decoder(m.encoder(x)), val_x, loss))
            m.train()

    torch.manual_seed(seed)  # as aezoo.run: the init is part of the run
    model = aezoo.build(spec.model)
    t0 = time.perf_counter()
    history = Trainer(model, ArrayDataset("mnist5k", train, val), spec.train,
                      [Measure()]).fit()
    return {"seed": seed, "val": curve, "train": [h.train_loss for h in history],
            "aezoo_val": [h.val_loss for h in history], "seconds": time.perf_counter() - t0,
            "precision": spec.train.precision}


def bare_run(a: argparse.Namespace, mods: set[str], seed: int) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    import aezoo
    from aezoo.config import build_run_spec

    train, val = load_split(a.data)
    torch.manual_seed(seed)
    built = aezoo.build(a.variant)
    net = nn.Sequential(built.encoder, built.decoder)  # logits; the sigmoid is in the loss
    spec, tspec = built.spec, build_run_spec(a.variant).train
    if spec.init == "glorot" and "same-init" not in mods:  # Keras' Conv2D defaults
        torch.manual_seed(seed)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
    loss_name = spec.loss.name
    fmt = torch.channels_last if "cl" in mods else torch.contiguous_format
    net = net.to(memory_format=fmt)  # type: ignore[call-overload]
    x = torch.from_numpy(train).float().div_(255).contiguous(memory_format=fmt)
    val_x = torch.from_numpy(val).float().div_(255)
    eps = 1e-8 if "eps8" in mods else tspec.eps
    opt: torch.optim.Optimizer
    if "keras-adam" in mods:
        opt = keras_adam(net.parameters(), lr=tspec.lr, betas=tspec.betas, eps=eps)
    else:
        opt = torch.optim.Adam(net.parameters(), lr=tspec.lr, betas=tspec.betas, eps=eps)

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if loss_name == "mse":
            return F.mse_loss(torch.sigmoid(logits), target)
        if "logits" in mods:
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.binary_cross_entropy(torch.sigmoid(logits), target)  # == nn.BCELoss()

    n, bs = x.shape[0], tspec.batch_size
    stop = n - n % bs if "drop-last" in mods else n
    gen = torch.Generator().manual_seed(seed)
    curve, train_curve = [], []
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        net.train()
        for s in range(0, stop, bs):
            xb = x[perm[s:s + bs]]
            if "cl" in mods:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            if "bf16" in mods:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    logits = net(xb)
            else:
                logits = net(xb)
            loss = loss_fn(logits, xb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            count += len(xb)
        train_curve.append(total / count)
        net.eval()
        curve.append(val_metric(net, val_x, loss_name))
    return {"seed": seed, "val": curve, "train": train_curve,
            "seconds": time.perf_counter() - t0}


def _keras_adam_class() -> Any:
    import torch

    class _KerasAdam(torch.optim.Optimizer):
        """Adam as Keras 3 computes it: ``p -= lr_t * m / (sqrt(v) + eps)`` with
        ``lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)``, i.e. eps added before the bias
        correction (PyTorch adds it to sqrt(v_hat))."""

        def __init__(self, params: Any, lr: float, betas: tuple[float, float],
                     eps: float) -> None:
            super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

        @torch.no_grad()
        def step(self, closure: Any = None) -> None:  # type: ignore[override]
            for group in self.param_groups:
                b1, b2 = group["betas"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    st = self.state[p]
                    if not st:
                        st["t"] = 0
                        st["m"] = torch.zeros_like(p)
                        st["v"] = torch.zeros_like(p)
                    st["t"] += 1
                    t, m, v, g = st["t"], st["m"], st["v"], p.grad
                    m.add_((g - m) * (1 - b1))
                    v.add_((g * g - v) * (1 - b2))
                    lr_t = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                    p.sub_(lr_t * m / (v.sqrt() + group["eps"]))

    return _KerasAdam


def keras_adam(params: Any, lr: float, betas: tuple[float, float], eps: float) -> Any:
    return _keras_adam_class()(params, lr, betas, eps)


def keras_run(a: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The tutorial's model verbatim, compiled and fitted as the tutorial does."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    sys.path.insert(0, str(HERE))
    from keras_tutorial import tutorial_model

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    train, val = load_split(a.data)
    x = train.transpose(0, 2, 3, 1).astype("float32") / 255.0  # NHWC
    v = val.transpose(0, 2, 3, 1).astype("float32") / 255.0
    keras.utils.set_random_seed(seed)
    model = tutorial_model()  # Keras' defaults: Glorot uniform, zero biases
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3),
                  loss="binary_crossentropy")
    curve: list[float] = []

    class Measure(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            p = np.clip(model.predict(v, batch_size=500, verbose=0).astype(np.float64),
                        1e-7, 1 - 1e-7)
            curve.append(float(-np.mean(v * np.log(p) + (1 - v) * np.log1p(-p))))

    t0 = time.perf_counter()
    hist = model.fit(x, x, epochs=a.epochs, batch_size=256, shuffle=True, verbose=0,
                     validation_data=(v, v), callbacks=[Measure()])
    return {"seed": seed, "val": curve, "train": hist.history["loss"],
            "keras_val": hist.history["val_loss"], "seconds": time.perf_counter() - t0,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__}}


# -- the study ---------------------------------------------------------------------------
def run_configs(a: argparse.Namespace, data: str, tmp: Path) -> dict[str, Any]:
    """One worker process per config, ``--jobs`` at a time; their JSON by config."""
    pending, running, done = list(a.configs), [], {}
    seeds = ",".join(str(a.seed0 + i) for i in range(a.seeds))
    while pending or running:
        while pending and len(running) < a.jobs:
            name = pending.pop(0)
            base, _ = parse_config(name)
            python = a.keras_python if base == "keras" else sys.executable
            out = tmp / f"{len(done) + len(running)}.json"
            cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--data", data,
                   "--out", str(out), "--variant", a.variant, "--epochs", str(a.epochs),
                   "--seed-list", seeds, "--threads", str(a.threads)]
            running.append((name, out, subprocess.Popen(cmd)))
        time.sleep(0.05)
        for item in list(running):
            name, out, proc = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                raise SystemExit(f"config {name} failed (exit {proc.returncode})")
            done[name] = json.loads(out.read_text())
            finals = [r["val"][-1] for r in done[name]["runs"]]
            print(f"{name}: " + " ".join(f"{v:.4f}" for v in finals), flush=True)
    return {name: done[name] for name in a.configs}


def analyse(raw: dict[str, Any], reference: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, res in raw.items():
        runs = res["runs"]
        finals = [r["val"][-1] for r in runs]
        curves = np.array([r["val"] for r in runs])
        results[name] = {
            "final": summarize(finals), "finals": finals,
            "seeds": [r["seed"] for r in runs],
            "mean_curve": curves.mean(axis=0).tolist(),
            "mean_train_curve": np.array([r["train"] for r in runs]).mean(axis=0).tolist(),
            "seconds": [r["seconds"] for r in runs],
            "runs": runs,
        }
        if reference and name != reference and reference in raw and len(runs) > 1:
            ref = [r["val"][-1] for r in raw[reference]["runs"]]
            if len(ref) > 1:
                results[name]["vs_" + reference] = welch(finals, ref)
        # A same-init bare loop starts where aezoo's run of its seed starts and sees the same
        # batches: their per-seed differences measure the recipe alone, without init noise.
        twin = next((n for n in ("aezoo", "aezoo-fp32", "aezoo+fp32") if n in raw), None)
        if "same-init" in parse_config(name)[1] and twin:
            ours = {r["seed"]: r["val"][-1] for r in raw[twin]["runs"]}
            diffs = [r["val"][-1] - ours[r["seed"]] for r in runs if r["seed"] in ours]
            if len(diffs) > 1:
                results[name]["paired_vs_" + twin] = {**summarize(diffs), "diffs": diffs}
    return results


def markdown(results: dict[str, Any], metric: str, reference: str | None,
             epochs: int) -> str:
    versus = f" - {reference} (95%) |" if reference else ""
    lines = [f"| config | seeds | final val {metric}: mean | sd | 95% interval | "
             f"min - max |{versus}", "|---|---:|---:|---:|---|---|" + ("---|" if versus else "")]
    for name, res in results.items():
        f = res["final"]
        d = res.get(f"vs_{reference}")
        diff = (f" {d['diff']:+.4f} ({d['low']:+.4f}, {d['high']:+.4f}) |" if d
                else " |" if versus else "")
        lines.append(f"| `{name}` | {f['n']} | {f['mean']:.4f} | {f['sd']:.4f} | "
                     f"{f['ci95'][0]:.4f} - {f['ci95'][1]:.4f} | "
                     f"{f['min']:.4f} - {f['max']:.4f} |{diff}")
    for name, res in results.items():
        for key, d in res.items():
            if key.startswith("paired_vs_"):
                lines.append(f"\n`{name}` - `{key[10:]}`, seed by seed (same init, same "
                             f"batches): mean {d['mean']:+.4f}, sd {d['sd']:.4f}, 95% "
                             f"{d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f} (n = {d['n']})")
    shown = [e for e in REPORT_EPOCHS if e < epochs] + [epochs]
    lines += ["", "| mean val " + metric + " after epoch | " + " | ".join(map(str, shown))
              + " |", "|---|" + "---:|" * len(shown)]
    for name, res in results.items():
        curve = res["mean_curve"]
        lines.append(f"| `{name}` | " + " | ".join(f"{curve[e - 1]:.4f}" for e in shown) + " |")
    return "\n".join(lines) + "\n"


def report(a: argparse.Namespace, raw: dict[str, Any], metric: str, info: dict[str, Any]
           ) -> None:
    reference = a.reference if a.reference in raw else None
    results = analyse(raw, reference)
    table = markdown(results, metric, reference, a.epochs)
    print("\n" + table)
    if a.markdown:
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(table)
    sys.path.insert(0, str(HERE))
    from _common import write_json

    write_json(a.json, {"machine": info, "args": {k: v for k, v in vars(a).items()
                                                   if k not in ("worker", "out")},
                        "metric": f"val_{metric}", "results": results})


def merge(a: argparse.Namespace, chosen: list[str] | None) -> None:
    raw: dict[str, Any] = {}
    metric, info, epochs = "", {}, set()
    for path in a.merge:
        d = json.loads(Path(path).read_text())
        if "runs" in d:  # one worker's file (a study cut short)
            d = {"metric": "", "machine": {}, "args": {"epochs": d["epochs"]},
                 "results": {d["config"]: d}}
        metric, info = d["metric"].removeprefix("val_") or metric, d["machine"] or info
        epochs.add(d["args"]["epochs"])
        for name, res in d["results"].items():
            runs = raw.setdefault(name, {"config": name, "runs": []})["runs"]
            seen = {r["seed"] for r in runs}
            runs += [r for r in res["runs"] if r["seed"] not in seen]
    if len(epochs) != 1:
        raise SystemExit(f"cannot pool runs of different lengths: {sorted(epochs)} epochs")
    a.epochs = epochs.pop()
    if not metric:
        import aezoo

        metric = "bce" if aezoo.build(a.variant).spec.loss.name.endswith("bce") else "mse"
    names = [n for n in chosen if n in raw] if chosen else list(raw)
    report(a, {n: raw[n] for n in names}, metric, info)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="cae-upsample")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (from --seed0)")
    p.add_argument("--seed0", type=int, default=0)
    p.add_argument("--configs", nargs="+", help="default: aezoo aezoo-fp32 bare")
    p.add_argument("--reference", default="bare", help="differences are taken to this config")
    p.add_argument("--jobs", type=int, default=1, help="configs trained at the same time")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of each run")
    p.add_argument("--limit", type=int, help="train on the first N images (a quick check)")
    p.add_argument("--keras-python", help="a Python with TensorFlow: adds the Keras tutorial")
    p.add_argument("--json", default="benchmarks/results/quality.json")
    p.add_argument("--markdown", help="also write the tables here")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="train nothing: pool the runs of earlier --json files (e.g. more seeds "
                   "with --seed0) and report them; --configs picks and orders")
    # internal: one config's worker process
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--seed-list", type=lambda s: [int(v) for v in s.split(",")],
                   help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        worker(a)
        return

    chosen, a.configs = a.configs, a.configs or ["aezoo", "aezoo-fp32", "bare"]
    for name in a.configs:
        parse_config(name)
    if a.merge:
        merge(a, chosen)
        return
    if a.keras_python and "keras" not in a.configs and a.variant == "cae-upsample":
        a.configs.append("keras")
    if "keras" in a.configs and not a.keras_python:
        raise SystemExit("config keras needs --keras-python (a Python with TensorFlow)")

    sys.path.insert(0, str(HERE))
    from _common import machine

    import aezoo
    from aezoo.config import build_run_spec
    from aezoo.data import load_dataset

    spec = build_run_spec(a.variant)
    dataset = load_dataset(spec.data)
    metric = "bce" if aezoo.build(a.variant).spec.loss.name.endswith("bce") else "mse"
    n_train = min(a.limit or len(dataset.train), len(dataset.train))
    print(f"{a.variant} on {dataset.name} ({n_train} / {len(dataset.val)}), "
          f"{a.epochs} epochs, batch {spec.train.batch_size}, lr {spec.train.lr}, "
          f"{a.threads} threads, seeds {a.seed0}..{a.seed0 + a.seeds - 1}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "split.npz")
        train = dataset.train[: a.limit] if a.limit else dataset.train
        np.savez(data, train=train, val=dataset.val)  # every config, Keras too
        raw = run_configs(a, data, Path(tmp))
    report(a, raw, metric, machine())


if __name__ == "__main__":
    main()
