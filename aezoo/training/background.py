"""The run directory's files, written on one background thread, in the order asked.

An epoch's files (metrics, pictures, checkpoints) are made on the training thread and
handed over as ready bytes; their writes, fsyncs and renames happen here while the next
epoch trains, so the training thread never waits for a disk. Each write is still atomic
and durable exactly as ``aezoo._io`` says, and in order: a later write never lands
before an earlier one (the training state is never ahead of the model files it follows).

What changes is *when* a file is durable: shortly after the callback returns rather than
before. ``drain`` waits for every write handed over so far; the trainer drains before
``fit`` returns (whatever the outcome), so a run that ends, stops or is interrupted has
all its files in place. A process killed outright loses at most the writes still
pending, which is the same as having been killed a moment earlier: every file is its
old or its new self.

A write that fails stops the writes queued after it (they could depend on it) and its
error is raised on the training thread, at the next hand-over or at ``drain``; unless the
run already fails for a reason of its own (``quiet``), which is then the error reported.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

Job = Callable[[], object]
MAX_PENDING = 8  # hand-overs block beyond this: at most a few epochs of files in memory


class BackgroundWriter:
    """One daemon thread that runs write jobs in order; started on the first job."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._quiet = False
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        """Run ``job`` after every job submitted before it (raises an earlier job's error)."""
        self.raise_error()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="aezoo-writer",
                                                daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def drain(self) -> None:
        """Wait until every submitted job has run; raise the first error one met."""
        if self._thread is not None:
            self._jobs.join()
        self.raise_error()

    def raise_error(self) -> None:
        error, self._error = self._error, None
        if error is not None and not self._quiet:
            raise error

    def quiet(self) -> None:
        """Until ``close``, drop write errors instead of raising them (a run that already
        fails reports its own error, not a write's that followed it)."""
        self._quiet = True

    def close(self) -> None:
        """Drain, then stop the thread (a later ``submit`` starts a new one)."""
        try:
            self.drain()
        finally:
            if self._thread is not None and self._thread.is_alive():
                self._jobs.put(None)
                self._thread.join()
            self._thread = None
            self._quiet = False

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None:  # after a failure, later writes are dropped
                    job()
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                self._error = exc
            finally:
                self._jobs.task_done()
