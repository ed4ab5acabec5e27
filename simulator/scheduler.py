"""A timer heap served by one scheduler thread and a few daemon worker threads.

Jobs (StatusCallback deliveries) are run on the workers when due, so one slow receiver does
not hold up the clock. There is no thread per call.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

Job = Callable[[], None]


class Scheduler:
    """Run callables at monotonic times."""

    def __init__(self, workers: int = 4, name: str = "sim-scheduler") -> None:
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._name = name
        self._n_workers = workers
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stopping = False
        clock = threading.Thread(target=self._run_clock, name=f"{self._name}-clock", daemon=True)
        self._threads = [clock]
        for i in range(self._n_workers):
            self._threads.append(
                threading.Thread(target=self._run_worker, name=f"{self._name}-{i}", daemon=True)
            )
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop promptly: pending jobs are dropped; a job already running may finish."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify_all()
        for _ in range(self._n_workers):
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def schedule(self, due: float, job: Job) -> None:
        """Run ``job`` at monotonic time ``due`` (or at once when it has passed)."""
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._heap, (due, next(self._seq), job))
            self._cond.notify()

    def clear(self) -> None:
        """Forget every job that has not started."""
        with self._cond:
            self._heap.clear()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # keep stop sentinels
                self._queue.put(None)
                break

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + self._queue.qsize()

    def _run_clock(self) -> None:
        with self._cond:
            while not self._stopping:
                if not self._heap:
                    self._cond.wait()
                    continue
                due = self._heap[0][0]
                now = time.monotonic()
                if due > now:
                    self._cond.wait(due - now)
                    continue
                _, _, job = heapq.heappop(self._heap)
                self._queue.put(job)

    def _run_worker(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._stopping:
                return
            try:
                job()
            except Exception:  # a job must never kill its worker
                log.exception("scheduled job failed")
