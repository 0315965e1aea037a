"""Dynamic batching (as Triton's dynamic batcher): merge concurrent requests into one inference call.

A batch is sent when it holds ``max_batch`` latents, when its oldest request has waited ``max_queue_delay_us``,
or, with ``gap_us``, once no request has joined it for that long: the load has paused (one client, or every
connection already waiting on this batch), so waiting on only adds latency and leaves the runtime idle. (Event
loops time in whole milliseconds: uvloop, the server's, rounds, so a gap under 0.5 ms means "after a pass of the
loop that brought no request"; asyncio's own loop rounds up to 1 ms.) With ``pad=True`` a batch is padded to the
next preferred size (powers of two up to ``max_batch``, as Triton's preferred_batch_size) so that compiled,
graph-captured or engine backends see a few shapes only; the padding rows are computed and dropped. At most
``max_queue`` latents wait at once; beyond that ``submit`` raises QueueFull (the server answers 503). Inference
runs on a worker thread, so the event loop keeps accepting requests while a batch computes, and those requests form
the next batch. When a batch is done and the next one is due already (full, or its oldest request has waited the
delay, as requests that came while a batch computed have), the worker thread takes it and computes it at once: under
load the runtime never waits for the event loop, which may be busy for milliseconds with the answers and the requests
of the last batch. Given several infer callables (copies of the model, as Triton's instance_group
count), as many batches compute at once, each on its own thread: on a GPU one batch's host work (copies, the wait
for the device, the answers) then overlaps the next batch's compute; on a CPU each copy computes on its share of the
cores. A new batch forms only once a copy is free, and it takes its share of every latent in the system, queued or
computing: a copy freed while another computes a few requests takes only half of a long queue, the rest waits for
the other copy. Clients that send again once answered (as wrk's connections, or any closed loop) would otherwise lock
into unequal cohorts, the large one waiting on one copy's share of the cores for the whole of its batch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class QueueFull(Exception):
    pass


class BatcherMetrics:
    """Hooks the batcher calls; the server connects them to Prometheus. No-ops by default."""

    def batch(self, size: int, compute_seconds: float) -> None: ...
    def waited(self, seconds: float) -> None: ...
    def depth(self, latents: int) -> None: ...


class DynamicBatcher:
    def __init__(self, infer: Callable[[np.ndarray], np.ndarray] | Sequence[Callable[[np.ndarray], np.ndarray]],
                 max_batch: int, max_queue_delay_us: int, max_queue: int, metrics: BatcherMetrics | None = None,
                 pad: bool = False, gap_us: int = 0):
        """``infer``: one callable, or one per batch that may compute at once (each used by one thread only)."""
        self.infers = list(infer) if isinstance(infer, Sequence) else [infer]
        self.max_batch, self.max_queue, self.pad = max_batch, max_queue, pad
        self.delay, self.gap = max_queue_delay_us / 1e6, gap_us / 1e6
        self.metrics = metrics or BatcherMetrics()
        self.queue: deque[tuple[np.ndarray, asyncio.Future, float]] = deque()
        self.queued = 0
        self.lock = threading.Lock()  # the queue: the event loop adds to it, the worker threads take full batches
        self.wakeup: asyncio.Event | None = None
        self.free: asyncio.Queue[int] | None = None  # the infer callables not computing a batch
        self.task: asyncio.Task | None = None
        self.computing: set[asyncio.Task] = set()
        self.busy = [0] * len(self.infers)  # latents each copy is computing (under the lock)
        self.executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ganforge-infer-{i}")
                          for i in range(len(self.infers))]

    def start(self) -> None:
        self.wakeup, self.free = asyncio.Event(), asyncio.LifoQueue()
        for index in range(len(self.infers)):
            self.free.put_nowait(index)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued and what is computing, then stop."""
        while self.queue or self.computing:
            await asyncio.sleep(0.005)
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        for executor in self.executors:
            executor.shutdown(wait=True)

    async def submit(self, z: np.ndarray) -> np.ndarray:
        return await self.enqueue(z)

    def enqueue(self, z: np.ndarray) -> asyncio.Future:
        """Queue ``z`` (on the event loop) and return the future of its images, without a task to await it: the
        server's hot path answers from the future's done callback. QueueFull when the queue has no room."""
        future = asyncio.get_running_loop().create_future()
        with self.lock:
            if self.queued + len(z) > self.max_queue:
                raise QueueFull(f"queue full ({self.queued} latents waiting, limit {self.max_queue})")
            self.queue.append((z, future, time.perf_counter()))
            self.queued += len(z)
            self.metrics.depth(self.queued)
        self.wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            index = await self.free.get()  # requests keep queueing while every copy computes
            await self._gather()
            with self.lock:
                idle = [index] + [self.free.get_nowait() for _ in range(self.free.qsize())]
                share = self._share()
                batches = [(i, self._take(i, share)) for i in idle]
            for i, batch in batches:
                if not batch:  # nothing left for it (or a worker thread took the queue meanwhile)
                    self.free.put_nowait(i)
                    continue
                task = asyncio.get_running_loop().create_task(self._compute(i, batch))
                self.computing.add(task)
                task.add_done_callback(self.computing.discard)

    async def _compute(self, index: int, batch: list) -> None:
        """``batch``, then every full batch waiting when the last is done, on infer callable ``index``. The copy is
        free again before the last batch's answers are written: they wake one task each (tens of microseconds of
        Python per answer), and a next batch dispatched behind them would leave the runtime idle meanwhile."""
        loop = asyncio.get_running_loop()
        try:
            last = await loop.run_in_executor(self.executors[index], self._work, loop, index, batch)
        except Exception as error:  # the thread could not take the batch (e.g. its executor was shut down)
            last = (batch, None, error)
        finally:
            with self.lock:
                self.busy[index] = 0
            self.free.put_nowait(index)
        await asyncio.sleep(0)  # _run takes the copy and starts the next batch's task before the answers' tasks
        self._answer(*last)

    def _work(self, loop: asyncio.AbstractEventLoop, index: int, batch: list) -> tuple:
        """On copy ``index``'s worker thread: compute; while a batch is due (full, or its oldest request has waited
        the delay), hand these answers to the event loop and go on with it (one that is not due yet is left to the
        event loop's delay and gap rules). Returns the last batch with its images or error, for ``_compute`` to
        answer."""
        infer = self.infers[index]
        while True:
            started = time.perf_counter()
            for _, _, arrived in batch:
                self.metrics.waited(started - arrived)
            try:
                z = np.concatenate([item[0] for item in batch])
                done = (batch, self._infer_padded(infer, z), None)
                self.metrics.batch(len(z), time.perf_counter() - started)
            except Exception as error:  # handed to every request of the batch
                done = (batch, None, error)
            with self.lock:
                self.busy[index] = 0
                batch = self._take(index, self._share()) if self._due() else []
            if not batch:
                return done
            loop.call_soon_threadsafe(self._answer, *done)

    @staticmethod
    def _answer(batch: list, images: np.ndarray | None, error: Exception | None) -> None:
        """On the event loop: each request its rows (a request whose client went away has its future cancelled)."""
        offset = 0
        for item, future, _ in batch:
            if future.done():
                pass
            elif error is None:
                future.set_result(images[offset : offset + len(item)])
            else:
                future.set_exception(error)
            offset += len(item)

    async def _gather(self) -> None:
        """Return when the queue holds a full batch, its oldest request has waited the delay, or (gap) no request
        has come for the gap."""
        with self.lock:  # a worker thread may have taken the whole queue since _run looked
            if not self.queue:
                return
            deadline = self.queue[0][2] + self.delay
        while self.queued < self.max_batch and (remaining := deadline - time.perf_counter()) > 0:
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), min(remaining, self.gap) if self.gap else remaining)
            except asyncio.TimeoutError:
                if not self.gap or remaining <= self.gap:
                    return  # the delay is up
                before = self.queued
                await asyncio.sleep(0)  # one more pass: a timer can fire before the pass reads waiting sockets
                if self.queued == before:
                    return  # the load has paused

    def _infer_padded(self, infer: Callable[[np.ndarray], np.ndarray], z: np.ndarray) -> np.ndarray:
        size = preferred_size(len(z), self.max_batch) if self.pad else len(z)
        if size == len(z):
            return infer(z)
        padded = np.concatenate([z, np.zeros((size - len(z), *z.shape[1:]), z.dtype)])
        return infer(padded)[: len(z)]

    def _due(self) -> bool:
        """Whether the queue holds a batch to send now: a full one, or one whose oldest request has waited the delay
        (the caller holds the lock)."""
        return bool(self.queue) and (self.queued >= self.max_batch
                                     or time.perf_counter() >= self.queue[0][2] + self.delay)

    def _share(self) -> int:
        """An equal part of every latent in the server, queued or computing, per copy (the caller holds the lock)."""
        return -(-(self.queued + sum(self.busy)) // len(self.infers))

    def _take(self, copy: int, limit: int | None = None) -> list:
        """The next batch off the queue for copy ``copy`` (booked as what it computes), of at most ``limit`` (else
        max_batch) latents unless one request alone holds more (the caller holds the lock)."""
        batch, size, limit = [], 0, min(limit or self.max_batch, self.max_batch)
        while self.queue and (not batch or size + len(self.queue[0][0]) <= limit):
            item = self.queue.popleft()
            batch.append(item)
            size += len(item[0])
        self.queued -= size
        self.busy[copy] = size
        self.metrics.depth(self.queued)
        return batch


def preferred_size(n: int, max_batch: int) -> int:
    """The smallest power of two >= n, at most max_batch."""
    return min(max_batch, 1 << (n - 1).bit_length())
