import asyncio

import numpy as np

from ganforge.serve.batcher import DynamicBatcher, preferred_size


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
