"""Run directories as records: find them, read what state they are in, compare them.

Reads small files only (``run.json``, ``metrics.jsonl``, ``status.json``, a safetensors
header at most) and never imports torch or pydantic validation: listing 1,000 runs takes
a fraction of a second. "Running" means another process holds the run's lock
(``aezoo.rundir.RunLock``), looked up without touching the lock.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from aezoo._safetensors import read_header
from aezoo.epochs import best, finite, read_rows
from aezoo.errors import CheckpointError, UsageError, summary
from aezoo.fileio import read_json
from aezoo.outputs import refuse_overwrite
from aezoo.rundir import (
    BEST_FILE,
    IMAGES_DIR,
    LAST_FILE,
    METRICS_JSONL,
    MODEL_FILE,
    RUN_FILE,
    SET_ASIDE_PREFIX,
    STATE_FILE,
    STATUS_FILE,
    TENSORBOARD_DIR,
    TRIAL_FILE,
    held_locks,
    is_running,
)

SORT_KEYS = ("name", "variant", "data", "epochs", "status", "val_loss", "best_epoch",
             "time", "params", "modified")
_SKIP = {IMAGES_DIR, TENSORBOARD_DIR, "__pycache__", "node_modules"}


@dataclass
class RunInfo:
    """One run directory as ``aezoo runs`` shows it (``None``: not known)."""

    name: str  # the path below the listed directory (or as given)
    path: str
    variant: str | None = None
    data: str | None = None
    epochs_done: int = 0
    epochs: int | None = None
    status: str = "not started"
    val_loss: float | None = None  # the val_loss of the best epoch (by train.monitor)
    best_epoch: int | None = None
    last_val_loss: float | None = None
    seconds: float = 0.0  # training and validation time, summed over the epochs
    params: int | None = None
    modified: float = 0.0
    problem: str | None = None  # why a file could not be read
    trial: int | None = None  # a sweep's trial (trial.json): its number and params
    trial_params: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    spec: dict[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["rows"], out["spec"]
        return out


def find_runs(root: Path) -> Iterator[Path]:
    """Every directory under ``root`` (``root`` included) holding a ``run.json``, in name
    order; a run directory's own subdirectories and hidden ones are not searched."""
    if (root / RUN_FILE).is_file():
        yield root
        return
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or entry.name in _SKIP:
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                yield from find_runs(Path(entry.path))


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _text(v: Any, what: str) -> str | None:
    """A name from run.json: a string, or absent; anything else makes the run unreadable."""
    if v is None or isinstance(v, str):
        return v
    raise ValueError(f"{what} is {json.dumps(v)[:40]}, not a name")


def header_params(path: Path) -> int | None:
    """Parameter count from a model file's header: the float tensors' sizes, less the
    buffers aezoo's parts keep (BatchNorm statistics)."""
    try:
        header = read_header(path)
    except CheckpointError:
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        shape = entry.get("shape")
        if isinstance(shape, list) and all(isinstance(s, int) for s in shape):
            total += math.prod(shape)
    return total


def _fresh(run_dir: Path) -> bool:
    """Whether status.json was written after the last metrics.jsonl row."""
    try:
        return (run_dir / STATUS_FILE).stat().st_mtime_ns >= (
            run_dir / METRICS_JSONL).stat().st_mtime_ns
    except OSError:
        return False


def _take_summary(info: RunInfo, summary_: dict[str, Any]) -> None:
    def number(key: str) -> Any:
        value = summary_.get(key)
        return value if finite(value) else None

    info.epochs_done = _int(number("epochs_done")) or 0
    info.seconds = float(number("seconds") or 0.0)
    info.val_loss, info.best_epoch = number("val_loss"), _int(number("best_epoch"))
    info.last_val_loss = number("last_val_loss")
    if info.val_loss is not None:
        info.val_loss = float(info.val_loss)


def _monitor(spec: dict[str, Any], status: dict[str, Any]) -> tuple[str, Literal["min", "max"]]:
    """What picks a run's best epoch: as its trainer resolved it (status.json), else as its
    run.json says (``auto``: min; a run from before status.json said so)."""
    train = spec.get("train")
    train = train if isinstance(train, dict) else {}
    monitor = status.get("monitor", train.get("monitor"))
    mode = status.get("mode", train.get("mode"))
    return (monitor if isinstance(monitor, str) else "val_loss",
            "max" if mode == "max" else "min")


def _take_rows(info: RunInfo, rows: list[dict[str, Any]],
               monitor: tuple[str, Literal["min", "max"]]) -> None:
    latest: dict[int, dict[str, Any]] = {}
    for row in rows:  # an epoch trained again after a resume: its last row counts
        latest[row["epoch"]] = row
    info.rows = [latest[e] for e in sorted(latest)]
    if info.rows:
        info.epochs_done = info.rows[-1]["epoch"]
        seconds = sum(float(r["seconds"]) for r in info.rows if finite(r.get("seconds")))
        info.seconds = seconds if math.isfinite(seconds) else 0.0
        found = best(info.rows, *monitor)
        if found:
            val_loss = found[0].get("val_loss")
            info.val_loss = float(val_loss) if finite(val_loss) else None
            info.best_epoch = found[0]["epoch"]
        last: Any = info.rows[-1].get("val_loss")
        info.last_val_loss = float(last) if finite(last) else None


def read_run(run_dir: Path, name: str | None = None,
             held: set[tuple[int, int]] | None = None, rows: bool = False) -> RunInfo:
    """What ``run_dir`` holds and what state it is in; unreadable files are noted, not
    raised (one bad run must not hide the others). A run that has ended is summarised
    from its status.json; ``rows`` (or a run without one) reads metrics.jsonl."""
    info = RunInfo(name=name or str(run_dir), path=str(run_dir))
    try:
        info.modified = (run_dir / RUN_FILE).stat().st_mtime
        spec = read_json(run_dir / RUN_FILE)
        if not isinstance(spec, dict):
            raise ValueError("not an object")
        info.spec = spec
        model = spec.get("model") or {}
        info.variant = _text(model.get("variant") or (model.get("encoder") or {}).get("name"),
                             "model.variant")
        info.data = _text((spec.get("data") or {}).get("name"), "data.name")
        info.epochs = _int((spec.get("train") or {}).get("epochs"))
    except (OSError, ValueError, AttributeError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else summary(
            exc, with_type=False, limit=200)
        info.status, info.problem = "unreadable", reason
        return info
    status: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError, RecursionError):
        loaded = read_json(run_dir / STATUS_FILE)
        status = loaded if isinstance(loaded, dict) else {}
    summary_ = status.get("summary")
    if not rows and isinstance(summary_, dict) and _fresh(run_dir):
        _take_summary(info, summary_)  # what the trainer said when it ended: no parsing
    else:
        try:
            _take_rows(info, read_rows(run_dir / METRICS_JSONL), _monitor(spec, status))
        except OSError as exc:  # a FIFO, a directory, a huge file: this run alone is bad
            info.status = "unreadable"
            info.problem = f"{METRICS_JSONL}: {exc.strerror or summary(exc, with_type=False)}"
            return info
    info.params = _int(status.get("params"))
    with contextlib.suppress(OSError, ValueError, RecursionError):
        trial = read_json(run_dir / TRIAL_FILE) if (run_dir / TRIAL_FILE).is_file() else None
        if isinstance(trial, dict) and isinstance(trial.get("params"), dict):
            info.trial, info.trial_params = _int(trial.get("trial")), trial["params"]
    if info.params is None:
        for file in (MODEL_FILE, BEST_FILE, LAST_FILE):
            if (run_dir / file).is_file():
                info.params = header_params(run_dir / file)
                break
    info.status = _status(run_dir, status.get("outcome"), held)
    return info


def _status(run_dir: Path, outcome: Any, held: set[tuple[int, int]] | None) -> str:
    if is_running(run_dir, held):
        return "running"
    if outcome in ("completed", "stopped", "interrupted", "diverged", "failed"):
        if outcome in ("completed", "stopped") and not (run_dir / MODEL_FILE).exists():
            return "interrupted"  # finished once, then resumed for more epochs and stopped
        return str(outcome)
    # No status.json (a run from before it existed), or "running" with nobody holding the
    # lock (the process was killed): what the files say.
    if (run_dir / MODEL_FILE).exists():
        return "completed"
    if (run_dir / STATE_FILE).exists():
        return "interrupted"
    return "failed" if outcome == "running" else "not started"


def epoch_of(model_file: Path) -> int | None:
    """The epoch a run directory's model file holds: ``best``'s best epoch (by the run's
    ``train.monitor``), else the last epoch logged (``None`` outside a run directory)."""
    if not (model_file.parent / RUN_FILE).is_file():
        return None
    info = read_run(model_file.parent, rows=True)
    if not info.rows:
        return None
    return info.best_epoch if model_file.name == BEST_FILE else int(info.rows[-1]["epoch"])


def list_runs(root: str | os.PathLike[str] = "runs", pattern: str | None = None,
              sort: str = "name") -> list[RunInfo]:
    """Every run under ``root``, those whose name or variant matches ``pattern`` (fnmatch;
    a plain word matches anywhere), sorted by ``sort`` (one of ``SORT_KEYS``; unknown
    values last)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory", "give the directory your runs are in "
                         "(default: runs)")
    if sort not in SORT_KEYS:
        raise UsageError(f"cannot sort by '{sort}'", f"use one of {', '.join(SORT_KEYS)}")
    glob = pattern if pattern is None or any(c in pattern for c in "*?[") else f"*{pattern}*"
    held = held_locks()
    runs = []
    for path in find_runs(root):
        if SET_ASIDE_PREFIX in path.as_posix():
            continue
        name = path.relative_to(root).as_posix() if path != root else path.name
        info = read_run(path, name or path.name, held)
        if glob is None or any(fnmatch.fnmatchcase(v, glob) for v in
                               (info.name, info.variant or "")):
            runs.append(info)
    key = {"val_loss": "val_loss", "time": "seconds", "epochs": "epochs_done"}.get(sort, sort)
    reverse = sort in ("modified",)  # newest first
    known = [r for r in runs if getattr(r, key) is not None]
    unknown = [r for r in runs if getattr(r, key) is None]
    return sorted(known, key=lambda r: getattr(r, key), reverse=reverse) + unknown


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested spec as dotted keys (``train.lr``); lists stay values."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: value}


MISSING = object()


def spec_diff(specs: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[Any]]]:
    """The dotted keys whose values differ between ``specs`` (``MISSING`` where a spec
    lacks the key), in the order the first spec has them. A key that is a table in one
    spec and a value (or absent) in another is one row with the whole tables (turning on
    ``train.corrupt`` is one change, not a row per parameter)."""
    out: list[tuple[str, list[Any]]] = []

    def walk(values: list[Any], prefix: str) -> None:
        if prefix and not all(isinstance(v, Mapping) for v in values):
            shown = {"\0missing" if v is MISSING else json.dumps(v, sort_keys=True)
                     for v in values}
            if len(shown) > 1:
                out.append((prefix, values))
            return
        keys = list(dict.fromkeys(k for v in values for k in v))
        for key in keys:
            walk([v.get(key, MISSING) for v in values], f"{prefix}.{key}" if prefix else key)

    walk(list(specs), "")
    return out


def comparable_notes(runs: Sequence[RunInfo]) -> list[str]:
    """Why the runs' val_loss may not rank them: corrupted validation inputs in some runs
    only (a denoiser's val_loss is measured on noisy inputs), or different losses."""
    notes = []

    def corrupt(r: RunInfo) -> str | None:
        train = r.spec.get("train") or {}
        c = train.get("corrupt") if isinstance(train, Mapping) else None
        if not isinstance(c, Mapping) or train.get("corrupt_val") is False:
            return None
        return str(c.get("name"))

    kinds = [corrupt(r) for r in runs]
    if len(set(kinds)) > 1:
        noisy = [f"{r.name} ({k})" for r, k in zip(runs, kinds, strict=True) if k]
        notes.append(f"val_loss of {', '.join(noisy)} is measured on corrupted inputs "
                     "(train.corrupt), of the others on clean ones: it does not rank them; "
                     "compare `aezoo eval RUN` (add --corrupt NAME for denoising) instead")
    losses = {json.dumps((r.spec.get("model") or {}).get("loss"), sort_keys=True)
              for r in runs}
    if len(losses) > 1:
        notes.append("the runs use different losses (model.loss): val_loss does not rank "
                     "them; compare PSNR or SSIM with `aezoo eval RUN` instead")
    return notes


def open_run(path: str | os.PathLike[str]) -> RunInfo:
    """A run directory named on the command line; anything else is a UsageError."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory", "give the --out of an aezoo "
                         "train run (see `aezoo runs`)")
    if not (run_dir / RUN_FILE).is_file():
        raise UsageError(f"{run_dir} has no {RUN_FILE}: not a run directory",
                         "give the --out directory of an aezoo train run")
    info = read_run(run_dir, str(path), held_locks(), rows=True)
    if info.problem:
        name = METRICS_JSONL if info.problem.startswith(METRICS_JSONL) else RUN_FILE
        problem = info.problem.removeprefix(f"{METRICS_JSONL}: ")
        raise UsageError(f"cannot read {run_dir / name} ({problem})", f"restore {name}")
    return info


@dataclass
class Comparison:
    runs: list[RunInfo]
    diff: list[tuple[str, list[Any]]]  # the spec keys that differ, a value per run
    picture: Path | None
    notes: list[str] = field(default_factory=list)  # why val_loss may not rank them


def compare_runs(paths: Sequence[str | os.PathLike[str]], out: Path | None = None,
                 force: bool = False) -> Comparison:
    """Two or more runs side by side: the spec keys that differ, and (``out``) one PNG of
    their val_loss curves overlaid."""
    if len(paths) < 2:
        raise UsageError("compare needs at least two runs", "give two or more run directories")
    if out is not None and out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} must end in .png", "name the picture NAME.png")
    runs = [open_run(p) for p in paths]
    if out is not None:
        refuse_overwrite(out, force)
    diff = spec_diff([r.spec for r in runs])
    picture = None
    if out is not None:
        from aezoo.curves import overlay_curves, write_picture

        picture = write_picture(out, overlay_curves(
            {r.name: r.rows for r in runs}, title="val_loss",
            best_epochs={r.name: r.best_epoch for r in runs}))
    return Comparison(runs, diff, picture, comparable_notes(runs))
