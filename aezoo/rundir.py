"""The run directory: every file name in it, finding a model in it, creating and reading it.

A run directory holds ``run.json`` (the resolved RunSpec), ``metrics.jsonl`` and
``metrics.csv`` (one row per epoch), ``last.safetensors``, ``best.safetensors`` (lowest
val_loss), ``state.safetensors`` (everything ``--resume`` needs), ``status.json`` (how
training ended), ``images/`` (a reconstruction grid per epoch and ``curves.png``) and,
once training has finished, ``model.safetensors``.
No other module spells these names.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from datetime import datetime
from pathlib import Path

from aezoo.errors import (
    CheckpointError,
    OutputExistsError,
    RunDirBusyError,
    SpecError,
    UsageError,
    summary,
)
from aezoo.fileio import atomic_write, fsync_dir, probe_writable, read_bounded
from aezoo.specs import DataSpec, RunSpec, validate

MODEL_FILE = "model.safetensors"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
STATE_FILE = "state.safetensors"
RUN_FILE = "run.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
IMAGES_DIR = "images"
CURVES_FILE = "curves.png"  # in IMAGES_DIR: the loss curves, redrawn every few seconds
STATUS_FILE = "status.json"  # how the last training process ended (aezoo runs reads it)
TENSORBOARD_DIR = "tensorboard"
DATA_PREFIX = "data-"  # data-HASH.npz: images aezoo.fit was given in memory (run.json names it)
INIT_FILE = "init.safetensors"  # the built model aezoo.fit started from (train.init)
TRIAL_FILE = "trial.json"  # a sweep's trial: its sweep, study, trial number and params
LOCK_FILE = ".aezoo.lock"  # exists while a process writes the run (flock), holds its pid


class RunLock:
    """An exclusive OS lock on a run directory, held while one process writes it.

    ``flock`` locks die with their process, so a crashed run leaves a stale lock file that
    the next process simply takes; a clean exit removes the file. Where the OS has no
    ``flock`` (Windows), the lock is a no-op.
    """

    def __init__(self, run_dir: Path, resuming: bool = False) -> None:
        self.path = run_dir / LOCK_FILE
        self._fd: int | None = None
        # Where another process holds it: a new run can go elsewhere; a resume cannot.
        self.busy_fix = ("wait for it to finish (`aezoo runs` shows it running), then "
                         "resume" if resuming else "wait for it to finish, or choose another "
                         "--out")

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        for _ in range(5):  # the file can be unlinked by a finishing holder: retry
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UsageError(f"output directory {self.path.parent} is not writable "
                                 f"({exc.strerror})", "choose a writable --out with free space"
                                 ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise RunDirBusyError(
                    f"{self.path.parent} is in use by another aezoo process{who}",
                    self.busy_fix) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                with contextlib.suppress(OSError):  # the pid is for messages; a full disk
                    os.ftruncate(fd, 0)            # is reported by check_writable
                    os.pwrite(fd, str(os.getpid()).encode(), 0)
                self._fd = fd
                return self
            os.close(fd)  # we locked a file its holder had just removed
        raise RunDirBusyError(f"{self.path.parent} is in use by other aezoo processes",
                              self.busy_fix)

    def release(self) -> None:
        if self._fd is not None:
            # Unlinked while still held, so the directory is left as the run left it.
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_locks() -> set[tuple[int, int]] | None:
    """(device, inode) of every file some process holds a flock on, from /proc/locks, or
    None where the OS has no such table."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    held: set[tuple[int, int]] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK" or parts[0].endswith("->"):
            continue
        with contextlib.suppress(ValueError):
            major, minor, inode = parts[5].split(":")
            held.add((os.makedev(int(major, 16), int(minor, 16)), int(inode)))
    return held


def is_running(run_dir: Path, held: set[tuple[int, int]] | None) -> bool:
    """Whether another process holds ``run_dir``'s lock (the run is training now)."""
    lock = run_dir / LOCK_FILE
    try:
        st = lock.stat()
    except OSError:
        return False
    if held is not None:
        return (st.st_dev, st.st_ino) in held
    try:  # no lock table: try a shared lock and let it go at once
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # drops our lock, if we got it
    return False


def claim_new_dir(base: Path) -> tuple[Path, list[Path]]:
    """Create a directory named ``base`` or, if that exists, ``base-2``, ``base-3``...:
    two runs started in the same second never share one. Returns it and the directories
    created (deepest first)."""
    created = [p for p in base.parents if not p.exists()]
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {base.parent} ({exc.strerror})",
                         "choose a writable --out") from None
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise UsageError(f"cannot create output directory {candidate} ({exc.strerror})",
                             "choose a writable --out") from None
        return candidate, [candidate, *created]
    raise UsageError(f"{base}: too many runs started at once", "pass --out")


def default_out_dir(spec: RunSpec) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{spec.model.variant or spec.model.encoder.name}-{stamp}"


def check_writable(directory: Path) -> None:
    """Fail now, not after an hour of training, if ``directory`` cannot take a write."""
    try:
        probe_writable(directory)
    except OSError as exc:
        raise UsageError(f"output directory {directory} is not writable ({exc.strerror})",
                         "choose a writable --out with free space") from None


def epoch_image(epoch: int) -> str:
    """The name, in IMAGES_DIR, of ``epoch``'s reconstruction grid."""
    return f"epoch-{epoch:04d}.png"


RUN_FILES = (MODEL_FILE, BEST_FILE, LAST_FILE, STATE_FILE, RUN_FILE, METRICS_JSONL,
             METRICS_CSV, STATUS_FILE, IMAGES_DIR, TENSORBOARD_DIR)
SET_ASIDE_PREFIX = ".replaced-"  # the previous run of a --force run, until it finishes


def prepare_out_dir(out: Path, force: bool, lock: RunLock | None = None) -> list[Path]:
    """Create ``out`` (if needed), lock it, and refuse to clobber a saved run unless
    ``force``. Nothing is deleted here: see :func:`set_aside`. Fails now, not after
    training, if the directory is unwritable. Returns the directories it created,
    deepest first (removed again if this fails)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"output {out} exists and is not a directory", "choose another --out")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create output directory {out} ({exc.strerror})",
                         "choose a writable --out") from None
    try:
        if lock is not None:  # before the checks: two runs never both pass them
            lock.acquire()
        if (out / MODEL_FILE).exists() and not force:
            raise OutputExistsError(f"{out / MODEL_FILE} already exists",
                                    "choose another --out, or pass --force to overwrite it")
        if (out / STATE_FILE).exists() and not force:
            raise OutputExistsError(f"{out} holds an unfinished run ({STATE_FILE})",
                                    f"continue it with `aezoo train --resume {out}`, or pass "
                                    "--force to start over")
        saved = [name for name in (BEST_FILE, LAST_FILE) if (out / name).exists()]
        if saved and not force:
            raise OutputExistsError(f"{out} holds another run's checkpoints ({saved[0]})",
                                    "choose another --out, or pass --force to replace them")
        check_writable(out)
    except BaseException:
        if lock is not None:
            lock.release()
        for p in created:  # leave no trace of a run that never started
            with contextlib.suppress(OSError):
                (p / LOCK_FILE).unlink(missing_ok=True)
                p.rmdir()
        raise
    return created


def set_aside(out: Path) -> Path | None:
    """Move a previous run's files into ``out/.replaced-N/`` (a ``--force`` run calls this
    once it has started: nothing is lost if it fails before). They are deleted by
    :func:`drop_set_aside` when the new run has finished. Returns the directory, or None
    when there was nothing to move."""
    # images/ and tensorboard/ are only ours in a directory an aezoo run wrote (run.json).
    ours = RUN_FILES if (out / RUN_FILE).exists() else tuple(
        n for n in RUN_FILES if n not in (IMAGES_DIR, TENSORBOARD_DIR))
    present = [name for name in ours if (out / name).exists()]
    if not present:
        return None
    aside = out / f"{SET_ASIDE_PREFIX}{secrets.token_hex(4)}"
    aside.mkdir()
    for name in present:  # each rename is atomic; the run files are never copied
        os.replace(out / name, aside / name)
    fsync_dir(out)
    return aside


def drop_set_aside(out: Path) -> None:
    """Delete what :func:`set_aside` kept, once the run that replaced it has finished."""
    for aside in out.glob(f"{SET_ASIDE_PREFIX}*"):
        shutil.rmtree(aside, ignore_errors=True)


def write_run_spec(spec: RunSpec, out: Path) -> None:
    atomic_write(out / RUN_FILE, (spec.model_dump_json(indent=2) + "\n").encode())


def read_run_spec(run_dir: Path) -> RunSpec:
    """The RunSpec saved in ``run_dir/run.json``; anything wrong with it is a UsageError."""
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory", "give the --out of a run")
    path = run_dir / RUN_FILE
    try:
        raw = json.loads(read_bounded(path))
    except FileNotFoundError:
        raise UsageError(f"{run_dir} has no {RUN_FILE}: not a run directory",
                         "give the --out directory of an aezoo train run") from None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or UTF-8
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else summary(
            exc, with_type=False, limit=200)
        raise UsageError(f"cannot read {path} ({reason})", "restore run.json") from None
    try:
        spec: RunSpec = validate(RunSpec, raw)
    except SpecError as exc:
        raise UsageError(f"{path} is not a valid run spec ({exc.problem})",
                         "restore run.json") from None
    return spec


def data_spec_beside(model_file: Path, data: str | None) -> DataSpec:
    """The dataset to evaluate ``model_file`` on: ``data`` if given, else the run's own (from
    a readable, valid ``run.json`` beside it), else the default dataset."""
    if data:
        return DataSpec(name=data)
    if (model_file.parent / RUN_FILE).exists():
        with contextlib.suppress(UsageError):
            return read_run_spec(model_file.parent).data
    return DataSpec()


def model_path(target: Path) -> Path:
    """MODEL as given: a file, or a run directory's final (else latest) checkpoint."""
    if not target.is_dir():
        return target
    for name in (MODEL_FILE, LAST_FILE):
        if (target / name).exists():
            return target / name
    raise CheckpointError(f"{target} holds no {MODEL_FILE} or {LAST_FILE}",
                          "give a model file or the directory of a training run")
