"""Start-up latency of `aezoo --help` and `aezoo list` in fresh processes.

usage: python benchmarks/startup.py [--runs 15] [--plugins 20] [--json FILE]

Measures each command as a new process (median of --runs), once with only the installed
plugins and once with --plugins extra fake plugin distributions (a variant and an
encoder each) put on the path, so the cost of discovery per plugin shows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, write_json  # noqa: E402

COMMANDS = {"--help": ["--help"], "list": ["list"], "--version": ["--version"]}


def fake_plugins(root: Path, count: int) -> None:
    """``count`` installed-looking distributions, each with a variant and an encoder."""
    for i in range(count):
        pkg = root / f"fakeplug{i}"
        pkg.mkdir()
        (pkg / "__init__.py").write_text(
            "from aezoo.protocols import Variant\n"
            f"variant = Variant(encoder='pool', decoder='upsample', loss='bce', "
            f"param_count=4385, description='fake plugin {i}')\n")
        info = root / f"fakeplug{i}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakeplug{i}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(
            f"[aezoo.variants]\nfake-{i} = fakeplug{i}:variant\n\n"
            f"[aezoo.encoders]\nfake-enc-{i} = fakeplug{i}.enc:encoder\n")


def time_command(args: list[str], runs: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aezoo", *args], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--plugins", type=int, default=20)
    p.add_argument("--json", default="benchmarks/results/startup.json")
    a = p.parse_args()

    env = dict(os.environ, COLUMNS="100")
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_only = median([_time_python(env) for _ in range(a.runs)])
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fake_plugins(Path(tmp), a.plugins)
        extra = dict(env, PYTHONPATH=os.pathsep.join(filter(None, [tmp, env.get("PYTHONPATH")])))
        for name, args in COMMANDS.items():
            plain = median(time_command(args, a.runs, env))
            loaded = median(time_command(args, a.runs, extra))
            results[name] = {"median_s": plain, f"median_s_with_{a.plugins}_plugins": loaded}
    print(f"python -c pass: {python_only * 1000:.0f} ms (interpreter start-up alone)")
    print(f"{'command':<16}{'median':>10}{f'+{a.plugins} plugins':>16}")
    for name, r in results.items():
        vals = list(r.values())
        print(f"{'aezoo ' + name:<16}{vals[0] * 1000:>8.0f}ms{vals[1] * 1000:>14.0f}ms")
    write_json(a.json, {"runs": a.runs, "python_start_s": python_only, "results": results})


def _time_python(env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
