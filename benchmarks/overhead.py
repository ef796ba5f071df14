"""Where the seed job's wall time goes: training steps against everything else.

usage: python benchmarks/overhead.py [--rounds 1] [--epochs 50] [--keras-python PY]
                                     [--json FILE] [-- EXTRA aezoo train FLAGS]

Runs the seed job (`aezoo train cae-upsample --device cpu`, its defaults, pictures on, on
mnist5k) as a whole process, as a user does. The child is this script with ``--child``:
it times phases by wrapping aezoo's functions (nothing in aezoo knows it is measured),
then calls the CLI. Reported per round:

  wall        spawn to exit, measured by the parent
  steps       the sum of the epochs' training seconds (EpochResult.seconds: the hot loop)
  overhead    wall - steps, and its share of wall (target < 10%)
  breakdown   start-up (interpreter and CLI import), to-run (spec, preflight, run-path
              imports), data, model, construction (Trainer.__init__, the optimiser
              included), validation, each callback's epoch hooks (by class and hook, so a
              new callback shows up by itself), the final save, the loop's rest, exit
With --keras-python PY (a Python with TensorFlow) each round also runs the Keras tutorial
on the same 4,500/500 split in its own process (keras_tutorial.py --npz) and reports
keras wall / aezoo wall. Rounds interleave aezoo and Keras; ratios are per round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLOCK = time.monotonic  # system-wide on Linux: parent and child share it


def after_import(patch: Any, name: str) -> None:
    """Call ``patch(module)`` once ``name`` has been imported (by whoever imports it)."""
    import importlib.abc
    import importlib.machinery

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname != name:
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or spec.loader is None:
                return spec
            exec_module = spec.loader.exec_module

            def run(module: Any) -> None:
                exec_module(module)
                patch(module)

            spec.loader.exec_module = run  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Finder())


def child(out_json: str, argv: list[str]) -> None:
    """Run ``aezoo ARGV`` in this process with timers around aezoo's phases."""
    marks: dict[str, float] = {"child_start": CLOCK()}
    spans: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)

    def timed(key: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = CLOCK()
            try:
                return fn(*args, **kwargs)
            finally:
                spans[key] += CLOCK() - t
                counts[key] += 1
        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapper

    import aezoo.cli

    marks["cli_imported"] = CLOCK()

    def patch_run(run: Any) -> None:
        run.load_dataset = timed("data", run.load_dataset)
        run.from_spec = timed("model", run.from_spec)
        run.save = timed("final save", run.save)

    def patch_validation(validation: Any) -> None:
        validation.evaluate_terms = timed("validation", validation.evaluate_terms)

    def patch_loop(loop: Any) -> None:
        init, fit = loop.Trainer.__init__, loop.Trainer.fit

        def trainer_init(self: Any, *a: Any, **k: Any) -> None:
            marks.setdefault("run_start", CLOCK())
            t = CLOCK()
            init(self, *a, **k)
            spans["construction"] += CLOCK() - t
            for hook, fns in self._hooks.items():  # every callback, by class and hook
                self._hooks[hook] = [timed(f"{type(getattr(fn, '__self__', fn)).__name__}"
                                           f".{hook}", fn) for fn in fns]

        def trainer_fit(self: Any) -> Any:
            t = CLOCK()
            try:
                return fit(self)
            finally:
                spans["fit"] += CLOCK() - t
                marks["fit_end"] = CLOCK()
                marks["steps"] = sum(r.seconds for r in self.history)
                marks["epochs"] = len(self.history)
                marks["final_val_loss"] = self.history[-1].val_loss if self.history else 0.0

        loop.Trainer.__init__ = trainer_init
        loop.Trainer.fit = trainer_fit

    # Patched as they are imported, so the run path is imported when the CLI imports it.
    after_import(patch_run, "aezoo.run")
    after_import(patch_validation, "aezoo.training.validation")
    after_import(patch_loop, "aezoo.training.loop")
    code = 0
    try:
        # The command is registered when the app is built (aezoo.cli.main): patch first.
        sys.argv = ["aezoo", *argv]
        aezoo.cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    marks["child_end"] = CLOCK()
    Path(out_json).write_text(json.dumps({"marks": marks, "spans": spans, "counts": counts,
                                          "exit": code}))
    sys.exit(code)


def run_aezoo(epochs: int, extra: list[str], src: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "timing.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(out), "--",
               "train", "cae-upsample", "--device", "cpu", "--epochs", str(epochs),
               "--out", str(Path(tmp) / "run"), *extra]
        env = dict(os.environ)
        if src:  # another checkout's aezoo and first-party plugins, ahead of this one
            env["PYTHONPATH"] = os.pathsep.join([src, str(Path(src) / "plugins")])
        start = CLOCK()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        end = CLOCK()
        if proc.returncode != 0:
            sys.exit(f"aezoo train failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        data = json.loads(out.read_text())
    m, s = data["marks"], data["spans"]
    wall = end - start
    steps = m["steps"]
    hooks = {k: v for k, v in s.items() if "." in k}
    # Step hooks (on_step_*) run inside the timed loop: they are part of `steps`.
    epoch_hooks = {k: v for k, v in hooks.items()
                   if not k.endswith((".on_step_start", ".on_step_end",
                                      ".on_before_optimizer_step"))}
    in_fit = s["validation"] + sum(v for k, v in epoch_hooks.items())
    breakdown = {
        "start-up (interpreter, CLI import)": m["cli_imported"] - start,
        "to-run (spec, preflight, run-path imports)": m["run_start"] - m["cli_imported"]
        - s.get("data", 0.0) - s.get("model", 0.0),
        "data": s.get("data", 0.0),
        "model": s.get("model", 0.0),
        "construction (Trainer.__init__)": s["construction"],
        "validation": s["validation"],
        **{f"callback {k}": v for k, v in sorted(epoch_hooks.items())},
        "loop rest (fit - steps - validation - callbacks)": s["fit"] - steps - in_fit,
        "after fit (final save, report)": m["child_end"] - m["fit_end"],
        "  of which: the final save": s.get("final save", 0.0),
        "exit (interpreter shut-down)": end - m["child_end"],
    }
    return {"wall": wall, "steps": steps, "overhead": wall - steps,
            "overhead_pct": 100 * (wall - steps) / wall, "epochs": m["epochs"],
            "final_val_loss": m["final_val_loss"], "breakdown": breakdown,
            "step_hooks": {k: v for k, v in hooks.items() if k not in epoch_hooks}}


def write_split(path: Path) -> None:
    """mnist5k's 4,500 / 500 split, as aezoo trains on it, for the Keras process."""
    import numpy as np

    from aezoo.data.embedded import load_mnist5k

    data = load_mnist5k()
    np.savez(path, train=data.train[:, 0], val=data.val[:, 0])


def run_keras(python: str, epochs: int, split: Path) -> float:
    start = CLOCK()
    subprocess.run([python, str(HERE / "keras_tutorial.py"), "--npz", str(split), "--epochs",
                    str(epochs)], check=True, capture_output=True)
    return CLOCK() - start


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        rest = sys.argv[3:]
        child(sys.argv[2], rest[1:] if rest[:1] == ["--"] else rest)
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--keras-python", help="a Python with TensorFlow: adds the Keras tutorial")
    p.add_argument("--baseline-src", help="a checkout of an earlier aezoo (e.g. `git archive "
                   "main | tar -x -C DIR`): each round runs it too, for a same-run before/after")
    p.add_argument("--json", default="benchmarks/results/overhead.json")
    p.add_argument("extra", nargs="*", help="more `aezoo train` flags (after --)")
    a = p.parse_args()
    rounds = []
    split = Path(tempfile.mkdtemp()) / "mnist5k-split.npz"
    if a.keras_python:
        write_split(split)
    for r in range(a.rounds):
        if a.baseline_src:
            base = run_aezoo(a.epochs, a.extra, a.baseline_src)
            print(f"round {r + 1} baseline (load {load()}): wall {base['wall']:.2f} s, steps "
                  f"{base['steps']:.2f} s, overhead {base['overhead']:.2f} s "
                  f"({base['overhead_pct']:.1f}%)", flush=True)
            for k, v in base["breakdown"].items():
                print(f"    {k:<52} {v * 1000:9.0f} ms")
        before = load()
        res = run_aezoo(a.epochs, a.extra)
        if a.baseline_src:
            res["baseline"] = base
        if a.keras_python:
            res["keras_wall"] = run_keras(a.keras_python, a.epochs, split)
            res["keras_over_aezoo"] = res["keras_wall"] / res["wall"]
        res["load"] = f"{before} -> {load()}"
        rounds.append(res)
        print(f"round {r + 1} (load {res['load']}): wall {res['wall']:.2f} s, steps "
              f"{res['steps']:.2f} s, overhead {res['overhead']:.2f} s "
              f"({res['overhead_pct']:.1f}%), val_loss {res['final_val_loss']:.5f}"
              + (f", keras {res['keras_wall']:.2f} s ({res['keras_over_aezoo']:.2f}x)"
                 if a.keras_python else ""), flush=True)
        for k, v in res["breakdown"].items():
            print(f"    {k:<52} {v * 1000:9.0f} ms")
        for k, v in res["step_hooks"].items():
            print(f"    (inside steps) {k:<37} {v * 1000:9.0f} ms")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"args": vars(a), "rounds": rounds}, indent=2))
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
