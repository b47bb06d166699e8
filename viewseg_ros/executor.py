"""An executor for the node: rclpy's MultiThreadedExecutor, with each ready callback handed to
its thread pool once.

Why: rclpy 9.1 (Kilted) re-yields a callback task that was submitted to the pool but that no
worker has started yet, and its spin loop submits it again, at once and without waiting. While
the workers are busy (renders on a 2-core robot computer, a burst of service calls), the spin
thread turns into a loop that floods the pool's queue with copies that return immediately,
keeping the GIL and a core busy. test_executor.py measures it on a saturated pool: rclpy's executor
made thousands of pool submissions for a few dozen callbacks, this one about one each. Upstream:
ros2/rclpy#1452 and ros2/rclpy#1547, which the pinned rclpy 9.1.2 does not have.

``viewseg_node`` uses it by default (parameter ``executor: submit_once``; ``rclpy`` selects
rclpy's own). ``benchmarks/bench_load.py --executor`` (a 640x480 15 Hz camera, then clients;
docs/benchmarks.md, "Load") found no difference in queries served, but the node needed about
half the CPU while it took in the camera stream with nobody querying (0.16-0.17 cores against
0.29-0.32 on 2 loaded cores). When the pinned rclpy has the upstream fix, measure again and
drop this module.

:class:`SubmitOnceExecutor` keeps the ids of the tasks it has queued. When the spin loop is
handed one of them again, it waits (up to ``QUEUED_WAIT_S``, or until some worker starts a
task) instead of submitting a copy; a worker removes a task from the set when its run returns
(finished, or an awaiting coroutine suspended: then it may be queued again).
Everything else (callback groups, the wait set, exceptions from callbacks) is rclpy's.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

from rclpy.exceptions import InvalidHandle
from rclpy.executors import (ConditionReachedException, ExternalShutdownException, MultiThreadedExecutor,
                             ShutdownException, TimeoutException)
from rclpy.logging import get_logger

# The node's ``executor`` parameter: rclpy's MultiThreadedExecutor as it is, or this module's.
EXECUTORS = ("rclpy", "submit_once")
# Its default: this module's (the CPU it saves: docs/benchmarks.md, "Load").
DEFAULT_EXECUTOR = "submit_once"
# Longest wait of the spin loop for a worker to start a task it queued earlier (seconds): short
# enough that a message arriving meanwhile is taken promptly, long enough not to spin.
QUEUED_WAIT_S = 0.005


class SubmitOnceExecutor(MultiThreadedExecutor):
    """MultiThreadedExecutor that submits each ready callback task once (module docstring)."""

    def __init__(self, num_threads: int | None = None, *, context=None) -> None:
        super().__init__(num_threads=num_threads, context=context)
        self._queued: set[int] = set()
        self._queued_lock = threading.Lock()
        self._worker_started = threading.Event()
        self.submissions = 0         # tasks handed to the pool (each at most once while queued)
        self.requeues_skipped = 0    # times the spin loop was handed a task still queued

    def _spin_once_impl(self, timeout_sec=None, wait_condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (ExternalShutdownException, ShutdownException, TimeoutException, ConditionReachedException):
            return
        key = id(handler)
        with self._queued_lock:
            queued = key in self._queued
            if queued:
                self.requeues_skipped += 1
            else:
                self._queued.add(key)
                self.submissions += 1
        if queued:
            self._worker_started.wait(QUEUED_WAIT_S)
            self._worker_started.clear()
            return

        def run() -> None:
            self._worker_started.set()
            try:
                handler()   # a coroutine that awaits returns here unfinished: it may be queued again
            finally:
                with self._queued_lock:
                    self._queued.discard(key)

        self._executor.submit(run)
        self._futures.append(handler)
        for task in self._futures[:]:
            if task.done():
                self._futures.remove(task)
                task.result()  # a callback's exception surfaces in spin(), as rclpy's executor does

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        """rclpy's shutdown (the pool runs what it holds), then the outcome of every callback that
        finished after spin() stopped looking. On SIGINT rclpy shuts the context down first, so
        a callback still queued then fails with InvalidHandle ("destruction was requested"):
        expected at exit, and dropped here. Unfetched, rclpy's Future prints it at interpreter
        exit as "The following exception was never retrieved" (seen now and then on Ctrl-C).
        Any other exception is logged as an error, since nothing else will see it."""
        finished = super().shutdown(timeout_sec, wait_for_threads=wait_for_threads)
        for task in [t for t in self._futures if t.done()]:
            try:
                self._futures.remove(task)
            except ValueError:
                continue  # shut down from another thread: the spin loop, still returning, took it
            error = task.exception()
            if error is not None and not isinstance(error, InvalidHandle):
                get_logger("viewseg_executor").error(
                    f"a callback that ran during shutdown raised {type(error).__name__}: {error}")
        return finished


__all__ = ["DEFAULT_EXECUTOR", "EXECUTORS", "QUEUED_WAIT_S", "SubmitOnceExecutor"]
