"""Decoding ahead: work items produced on threads while the caller consumes earlier ones.

:class:`~musictag.inference.Inference` decodes tracks this way while the model scores the
windows of earlier tracks; soundfile and soxr release the GIL, so the threads decode in parallel
with the model and with each other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from .autotune import available_cores

__all__ = ["Prefetcher", "default_prefetch"]

_END = object()  # end of a job's items, or of the jobs, in the queues


def default_prefetch(device: torch.device) -> int:
    """Decoding threads to run beside the model: on a CPU, all cores but one, at most 2 (the
    model's threads keep the rest); up to 4 beside a GPU; none on a single core."""
    spare = available_cores() - 1
    return max(0, min(2 if device.type == "cpu" else 4, spare))


class Prefetcher:
    """Jobs run on worker threads ahead of the consumer, handed over in their input order.

    A feeder thread walks the jobs and submits each to a pool of ``workers`` threads; each
    job's items go through a queue of at most ``depth`` items, and at most ``workers + 1`` jobs
    wait to be consumed, so memory stays bounded. The pool starts jobs in input order, so the job
    the consumer waits for is always running. An error of a job is raised where the consumer
    reaches it; an error walking the jobs, after the jobs before it.

    Args:
        jobs: ``(key, produce)`` pairs; ``produce()`` returns the job's items.
        workers: Threads.
        depth: Items held per job.

    Yields:
        ``(key, iterator of the job's items)``, in input order.
    """

    def __init__(
        self, jobs: Iterable[tuple[Any, Callable[[], Iterable]]], workers: int, depth: int
    ):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="musictag-decode")
        self._ready: queue.Queue = queue.Queue(maxsize=workers + 1)
        self._stop = threading.Event()
        self._depth = max(1, depth)
        self._feeder = threading.Thread(
            target=self._feed, args=(jobs,), name="musictag-feed", daemon=True
        )
        self._feeder.start()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _feed(self, jobs: Iterable[tuple[Any, Callable[[], Iterable]]]) -> None:
        try:
            for key, produce in jobs:
                items: queue.Queue = queue.Queue(maxsize=self._depth)
                failure: list[BaseException] = []
                self._pool.submit(self._run, produce, items, failure)
                if not self._put(self._ready, (key, items, failure)):
                    return
        except BaseException as e:  # noqa: BLE001 - an error walking the inputs: raised in order
            self._put(self._ready, e)
        self._put(self._ready, _END)

    def _run(self, produce: Callable[[], Iterable], items: queue.Queue, failure: list) -> None:
        try:
            for item in produce():
                if not self._put(items, item):
                    return
        except BaseException as e:  # noqa: BLE001 - the consumer raises it
            failure.append(e)
        self._put(items, _END)

    def __iter__(self) -> Iterator[tuple[Any, Iterator]]:
        while (got := self._ready.get()) is not _END:
            if isinstance(got, BaseException):
                raise got
            yield got[0], self._items(*got[1:])

    @staticmethod
    def _items(items: queue.Queue, failure: list) -> Iterator:
        while (item := items.get()) is not _END:
            yield item
        if failure:
            raise failure[0]

    def close(self) -> None:
        """Stop (an early exit or an error downstream) and wait for the threads."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._feeder.join()
