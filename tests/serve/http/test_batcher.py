import asyncio
import threading
import time

import numpy as np
import pytest

from ganforge.serve.http.batcher import DynamicBatcher, preferred_size


def test_preferred_sizes_are_powers_of_two_up_to_the_max():
    assert [preferred_size(n, 64) for n in (1, 2, 3, 5, 8, 9, 33, 64)] == [1, 2, 4, 8, 8, 16, 64, 64]
    assert preferred_size(40, 48) == 48


def test_padded_batches_see_few_shapes_and_answer_each_request_with_its_own_rows():
    shapes = []

    def infer(z):
        shapes.append(len(z))
        return z * 2  # each row depends on its own latent only

    async def main():
        batcher = DynamicBatcher(infer, max_batch=16, max_queue_delay_us=50_000, max_queue=64, pad=True)
        batcher.start()
        requests = [np.full((1, 3), i, np.float32) for i in range(5)] + [np.full((2, 3), 9, np.float32)]
        answers = await asyncio.gather(*(batcher.submit(z) for z in requests))
        await batcher.stop()
        return requests, answers

    requests, answers = asyncio.run(main())
    assert shapes == [8]  # 7 latents in one batch, padded to 8
    for z, images in zip(requests, answers):
        np.testing.assert_array_equal(images, z * 2)


def _answer_times(gap_us: int, arrivals: list[float], delay_us: int = 300_000) -> tuple[list[float], list[int]]:
    """Submit one-latent requests at ``arrivals`` (seconds after the start); their answer times and the batch
    sizes the batcher sent."""
    sizes = []

    def infer(z):
        sizes.append(len(z))
        return z

    async def main():
        batcher = DynamicBatcher(infer, max_batch=64, max_queue_delay_us=delay_us, max_queue=64, gap_us=gap_us)
        batcher.start()
        start = asyncio.get_running_loop().time()

        async def one(at: float) -> float:
            await asyncio.sleep(at)
            await batcher.submit(np.zeros((1, 2), np.float32))
            return asyncio.get_running_loop().time() - start

        answered = await asyncio.gather(*(one(at) for at in arrivals))
        await batcher.stop()
        return answered

    return asyncio.run(main()), sizes


def test_a_lone_request_waits_the_gap_not_the_whole_delay():
    (alone,), sizes = _answer_times(gap_us=20_000, arrivals=[0.0])
    assert alone < 0.15 and sizes == [1]  # the delay is 0.3 s
    (waited,), _ = _answer_times(gap_us=0, arrivals=[0.0])
    assert waited >= 0.29  # without a gap: a batch that never fills waits the delay


def test_requests_closer_than_the_gap_share_a_batch_and_a_pause_closes_it():
    # four requests 5 ms apart (gap 50 ms): one batch; then one 0.15 s later, after the pause: a batch of its own
    answered, sizes = _answer_times(gap_us=50_000, arrivals=[0.0, 0.005, 0.010, 0.015, 0.15])
    assert sizes == [4, 1]
    assert max(answered[:4]) < 0.12 and answered[4] < 0.25


def _slow_copies(count: int, seconds: float) -> tuple[list, dict]:
    """``count`` infer callables that take ``seconds`` each; ``seen["most"]``: the most computing at once;
    ``seen["sizes"]``: each batch's size."""
    seen, lock = {"now": 0, "most": 0, "batches": 0, "sizes": []}, threading.Lock()

    def infer(z):
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
            seen["sizes"].append(len(z))
        time.sleep(seconds)
        with lock:
            seen["now"] -= 1
            seen["batches"] += 1
        return z * 2

    return [infer] * count, seen


def _requests_at_once(infers: list, count: int, **batching) -> None:
    """``count`` one-latent requests submitted together; each must get its own rows back."""

    async def main():
        batcher = DynamicBatcher(infers, **batching)
        batcher.start()
        requests = [np.full((1, 3), i, np.float32) for i in range(count)]
        answers = await asyncio.wait_for(asyncio.gather(*(batcher.submit(z) for z in requests)), 10)
        await batcher.stop()
        return requests, answers

    requests, answers = asyncio.run(main())
    for z, images in zip(requests, answers):
        np.testing.assert_array_equal(images, z * 2)


def test_with_two_model_copies_two_batches_compute_at_once_and_each_request_gets_its_rows():
    for copies, expected in ((2, 2), (1, 1)):
        infers, seen = _slow_copies(copies, 0.05)
        _requests_at_once(infers, 16, max_batch=4, max_queue_delay_us=1000, max_queue=64)
        assert seen["most"] == expected


def test_requests_waiting_while_both_copies_are_free_are_split_between_them():
    """32 clients and two idle copies: two batches of 16 at once, not one of 32 with the other copy idle (which would
    keep every client in one batch at a time and half the cores idle)."""
    infers, seen = _slow_copies(2, 0.02)
    _requests_at_once(infers, 32, max_batch=64, max_queue_delay_us=5000, max_queue=256)
    assert seen["sizes"] == [16, 16] and seen["most"] == 2


def test_a_copy_freed_beside_a_small_batch_takes_an_equal_share_not_the_whole_queue():
    """Closed-loop clients would otherwise lock into unequal cohorts: copy 0 (fast) frees while copy 1 (slow) computes
    one request and 30 wait; copy 0 takes 16 (half of the 31 latents in the system), the rest wait for a copy."""
    sizes, lock = {0: [], 1: []}, threading.Lock()

    def copy(index: int, seconds: float):
        def infer(z):
            with lock:
                sizes[index].append(len(z))
            time.sleep(seconds)
            return z * 2
        return infer

    async def main():
        batcher = DynamicBatcher([copy(0, 0.05), copy(1, 1.0)], max_batch=64, max_queue_delay_us=1000, max_queue=256)
        batcher.start()
        first = [batcher.submit(np.full((1, 3), i, np.float32)) for i in range(2)]
        first = [asyncio.ensure_future(f) for f in first]
        await asyncio.sleep(0.02)  # one request on each copy
        requests = [np.full((1, 3), i, np.float32) for i in range(30)]
        answers = await asyncio.wait_for(asyncio.gather(*(batcher.submit(z) for z in requests), *first), 10)
        await batcher.stop()
        return requests, answers

    requests, answers = asyncio.run(main())
    for z, images in zip(requests, answers):
        np.testing.assert_array_equal(images, z * 2)
    assert sizes[1] == [1] and sizes[0][:2] == [1, 16] and sum(sizes[0]) == 31


def test_stop_waits_for_the_batch_computing_and_answers_it():
    (infer,), seen = _slow_copies(1, 0.1)

    async def main():
        batcher = DynamicBatcher(infer, max_batch=4, max_queue_delay_us=1000, max_queue=64)
        batcher.start()
        request = asyncio.ensure_future(batcher.submit(np.ones((1, 3), np.float32)))
        while not seen["most"]:  # the batch is computing
            await asyncio.sleep(0.005)
        await asyncio.wait_for(batcher.stop(), 10)
        return request

    request = asyncio.run(main())
    assert request.done() and not request.cancelled()
    np.testing.assert_array_equal(request.result(), np.full((1, 3), 2, np.float32))


def _timed_infer(spans: list):
    """An infer that takes 20 ms and records (latents, start, end) of each batch in ``spans``."""

    def infer(z):
        started = time.perf_counter()
        time.sleep(0.02)
        spans.append((z, started, time.perf_counter()))
        return z

    return infer


def test_a_full_batch_waiting_is_computed_while_the_event_loop_is_busy():
    """Under load the event loop spends milliseconds per batch on answers and new requests; the runtime must not
    wait for it: the worker thread takes the next full batch itself."""
    spans = []

    async def main():
        batcher = DynamicBatcher(_timed_infer(spans), max_batch=2, max_queue_delay_us=50_000, max_queue=64)
        batcher.start()
        requests = asyncio.gather(*(batcher.submit(np.full((1, 1), i, np.float32)) for i in range(6)))
        while not batcher.busy[0]:  # the first batch is computing
            await asyncio.sleep(0.001)
        time.sleep(0.2)  # the event loop busy (and deaf) far longer than the three batches take
        await requests
        await batcher.stop()

    asyncio.run(main())
    assert [int(z[0, 0]) for z, _, _ in spans] == [0, 2, 4]
    gaps = [later[1] - earlier[2] for earlier, later in zip(spans, spans[1:])]
    assert max(gaps) < 0.1, gaps  # back to back (allowing for a busy machine), not after the loop's 0.2 s


def test_a_batch_the_worker_cannot_take_fails_its_requests_instead_of_leaving_them_waiting():
    async def main():
        batcher = DynamicBatcher(lambda z: z, max_batch=2, max_queue_delay_us=1000, max_queue=64)
        batcher.start()
        batcher.executors[0].shutdown()
        return await asyncio.wait_for(asyncio.gather(batcher.submit(np.ones((1, 1), np.float32)),
                                                     return_exceptions=True), 5)

    (answer,) = asyncio.run(main())
    assert isinstance(answer, RuntimeError)


def test_a_partial_batch_due_by_its_delay_is_computed_while_the_event_loop_is_busy():
    """Requests that came while a batch computed have waited the delay when it ends: the worker thread takes them at
    once, not after the event loop (busy with answers and new requests under load) gets round to them."""
    spans = []

    async def main():
        batcher = DynamicBatcher(_timed_infer(spans), max_batch=64, max_queue_delay_us=1000, max_queue=64)
        batcher.start()
        first = batcher.enqueue(np.zeros((1, 1), np.float32))
        async with asyncio.timeout(5):
            while not batcher.busy[0]:  # the first batch is computing
                await asyncio.sleep(0.001)
        later = [batcher.enqueue(np.ones((1, 1), np.float32)) for _ in range(2)]
        time.sleep(0.2)  # the event loop busy (and deaf) far longer than both batches take
        await asyncio.gather(first, *later)
        await batcher.stop()

    asyncio.run(main())
    assert [len(z) for z, _, _ in spans] == [1, 2]
    assert spans[1][1] - spans[0][2] < 0.1, spans  # back to back (allowing for a busy machine), not after 0.2 s


def test_the_next_batch_reaches_the_runtime_before_the_last_ones_answers_are_delivered():
    """Answers wake one request each (under HTTP load milliseconds of writes a batch); were they delivered before the
    next batch went to the runtime, it would sit idle meanwhile. Here each answer holds the event loop for 10 ms."""
    spans = []

    async def main():
        batcher = DynamicBatcher(_timed_infer(spans), max_batch=4, max_queue_delay_us=1, max_queue=64)
        batcher.start()

        async def request(i, after):
            await asyncio.sleep(after)
            await batcher.submit(np.full((1, 1), i, np.float32))
            time.sleep(0.01)  # writing the answer

        # a full batch, then two requests that join while it computes: a partial batch
        await asyncio.gather(*(request(i, 0.0) for i in range(4)), *(request(i, 0.005) for i in (4, 5)))
        await batcher.stop()

    asyncio.run(main())
    assert [int(z[0, 0]) for z, _, _ in spans] == [0, 4]
    assert spans[1][1] - spans[0][2] < 0.03, spans  # not behind the four answers' 40 ms


def _random_load(seed: int, copies: int) -> tuple[list[int], list]:
    """400 requests of 1-3 latents at random moments over 0.2 s into ``copies`` copies that take up to 4 ms and fail
    5% of batches; the batch sizes the copies saw and each request's (latents, answer or error)."""
    import random

    rng, sizes, lock = random.Random(seed), [], threading.Lock()

    def infer(z):
        with lock:
            sizes.append(len(z))
            pause, fail = rng.random() * 0.004, rng.random() < 0.05
        time.sleep(pause)
        if fail:
            raise RuntimeError("runtime failed")
        return z * 2

    async def main():
        batcher = DynamicBatcher([infer] * copies, max_batch=8, max_queue_delay_us=2000, max_queue=10_000, gap_us=300)
        batcher.start()

        async def one(i):
            await asyncio.sleep(rng.random() * 0.2)
            z = np.full((rng.randint(1, 3), 2), i, np.float32)
            try:
                return z, await batcher.submit(z)
            except RuntimeError as error:
                return z, error

        answers = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(400))), 30)
        await batcher.stop()
        return answers

    return sizes, asyncio.run(main())


@pytest.mark.parametrize("seed,copies", [(0, 1), (1, 2), (2, 2)])
def test_under_random_concurrent_load_each_request_gets_its_own_rows_and_no_batch_is_too_big(seed, copies):
    """The event loop gathers batches while the worker threads take full ones: every request ends with its own rows
    or its batch's error."""
    sizes, answers = _random_load(seed, copies)
    assert max(sizes) <= 8 and sum(sizes) == sum(len(z) for z, _ in answers)
    failed = [a for _, a in answers if isinstance(a, Exception)]
    assert all(str(a) == "runtime failed" for a in failed) and len(failed) < len(answers) // 2
    for z, images in answers:
        if not isinstance(images, Exception):
            np.testing.assert_array_equal(images, z * 2)
