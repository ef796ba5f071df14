"""Files of the run directory written on one background thread, in the order handed over.

The epoch pictures (``images/epoch-NNNN.png``) and ``status.json`` are made on the
training thread and handed over, ``images/curves.png`` is drawn here whole (matplotlib);
encoding and writing (PNG, fsyncs, renames) happen here while the next epoch trains.
Each write is still atomic and durable exactly as ``aezoo.fileio`` says, and in order.
Checkpoints and metrics are not handed over: they are durable when the epoch's callbacks
return, as resuming after a kill needs.

``drain`` waits for every write handed over so far; the trainer closes the writer before
``fit`` returns, whatever the outcome. A process killed outright loses at most the writes
still queued (a few epochs' pictures at worst), each file staying its old or new self.

A write that fails does not stop the ones after it (each stands alone); the first error
is raised on the training thread at the next hand-over or at ``drain``. While the run's
end-of-run hooks run (``hold``), errors wait for ``close``, which returns the first one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

Job = Callable[[], object]
MAX_PENDING = 8  # hand-overs block beyond this: at most a few epochs of pictures in memory


class BackgroundWriter:
    """One daemon thread that runs write jobs in order; started on the first job."""

    def __init__(self, max_pending: int = MAX_PENDING) -> None:
        self._jobs: queue.Queue[Job | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None  # the first failure, until close
        self._reported = False  # raised on the training thread already
        self._holding = False

    def submit(self, job: Job) -> None:
        """Run ``job`` after every job submitted before it (raises an earlier job's error)."""
        if threading.current_thread() is self._thread:
            job()  # a job handing over a write: it is next in line anyway
            return
        self._raise_pending()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="aezoo-writer", daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def drain(self) -> None:
        """Wait until every submitted job has run; raise the first error one met."""
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._jobs.join()
        self._raise_pending()

    def hold(self) -> None:
        """Until ``close``, keep errors instead of raising them (the end-of-run hooks all
        run; ``close`` returns the error for the caller to raise, or not)."""
        self._holding = True

    def close(self) -> BaseException | None:
        """Wait for every job, stop the thread; the first error not raised yet, if any.
        A later ``submit`` starts afresh."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._jobs.join()
            self._jobs.put(None)
            thread.join()
        with self._lock:
            error = None if self._reported else self._error
            self._thread, self._error, self._reported, self._holding = None, None, False, False
        return error

    def _raise_pending(self) -> None:
        with self._lock:
            if self._error is None or self._reported or self._holding:
                return
            self._reported = True
            error = self._error
        raise error

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                job()
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                with self._lock:
                    if self._error is None:
                        self._error = exc
            finally:
                self._jobs.task_done()
