import pytest
import torch

from ganforge.train.models import build_discriminator, build_generator, generator_config, pack_samples


@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes_and_range(resolution, channels):
    config = generator_config("dcgan", 12, (channels, resolution, resolution), width=8, depth=3, images=True)
    generator = build_generator(config)
    images = generator(torch.randn(5, 12))
    assert images.shape == (5, channels, resolution, resolution)
    assert images.abs().max() <= 1
    discriminator = build_discriminator("dcgan", (channels, resolution, resolution), 8, 3, pack=1,
                                        batch_norm=True, spectral_norm=False)
    assert discriminator(images).shape == (5,)


def test_mlp_for_points_is_unbounded_and_for_images_is_tanh():
    points = build_generator(generator_config("mlp", 4, (2,), 32, 2, images=False))
    assert points(torch.randn(7, 4)).shape == (7, 2)
    images = build_generator(generator_config("mlp", 4, (1, 8, 8), 32, 2, images=True))
    out = images(torch.randn(7, 4) * 100)
    assert out.shape == (7, 1, 8, 8) and out.abs().max() <= 1


def test_packing_groups_consecutive_samples_and_discriminators_accept_it():
    x = torch.arange(8 * 3 * 4 * 4, dtype=torch.float32).view(8, 3, 4, 4)
    packed = pack_samples(x, 4)
    assert packed.shape == (2, 12, 4, 4)
    assert torch.equal(packed[1, 3:6], x[5])
    d = build_discriminator("dcgan", (3, 16, 16), 8, 3, pack=4, batch_norm=False, spectral_norm=True)
    assert d(pack_samples(torch.randn(8, 3, 16, 16), 4)).shape == (2,)
    mlp = build_discriminator("mlp", (2,), 16, 2, pack=4, batch_norm=False, spectral_norm=False)
    assert mlp(pack_samples(torch.randn(8, 2), 4)).shape == (2,)
