import pytest
import torch

from ganforge.train.models import build_discriminator, build_generator, generator_config, pack_samples
from ganforge.train.models.classes import LatentClasses, class_prior
from ganforge.train.models.residual import stage_channels


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


def test_latent_classes_follow_the_prior_and_read_only_the_first_coordinate():
    classes = LatentClasses([0.5, 0.25, 0.25])
    z = torch.randn(200_000, 6, generator=torch.Generator().manual_seed(0))
    onehot = classes(z)
    assert torch.equal(onehot.sum(dim=1), torch.ones(len(z)))
    shares = torch.bincount(classes.labels(z), minlength=3) / len(z)
    assert torch.allclose(shares, torch.tensor([0.5, 0.25, 0.25]), atol=0.005)
    other = torch.cat([z[:, :1], torch.randn(len(z), 5)], dim=1)  # the rest of z varies within a class
    assert torch.equal(classes.labels(other), classes.labels(z))
    assert torch.equal(classes(z.to(torch.bfloat16)).argmax(1), classes.labels(z.to(torch.bfloat16).float()))


def test_latent_classes_in_groups_read_one_coordinate_each():
    """Stacked digits: three digits per sample, each from its own coordinate z0, z1, z2, each with the prior."""
    classes = LatentClasses([0.5, 0.3, 0.2], groups=3)
    z = torch.randn(100_000, 6, generator=torch.Generator().manual_seed(1))
    labels = classes.labels(z)
    assert labels.shape == (len(z), 3) and classes(z).shape == (len(z), 9)
    for group in range(3):
        shares = torch.bincount(labels[:, group], minlength=3) / len(z)
        assert torch.allclose(shares, torch.tensor([0.5, 0.3, 0.2]), atol=0.006)
        assert torch.equal(labels[:, group], LatentClasses([0.5, 0.3, 0.2]).labels(z[:, group:]))
    moved = z.clone()
    moved[:, 1] = -z[:, 1]
    assert torch.equal(classes.labels(moved)[:, [0, 2]], labels[:, [0, 2]])  # each group reads its own coordinate


@pytest.mark.parametrize("labels, message", [([0, 2, 2], "never occur"), ([1, 1], "never occur"),
                                             ([0, -1], "non-negative"), ([0, 0], "two or more")])
def test_class_prior_wants_every_class_0_to_k(labels, message):
    with pytest.raises(ValueError, match=message):
        class_prior(torch.tensor(labels))


def test_conditional_dcgan_draws_its_class_from_z_and_its_discriminator_wants_labels():
    config = generator_config("dcgan", 12, (1, 16, 16), width=8, depth=3, images=True, class_prior=[0.25] * 4)
    generator = build_generator(config)
    z = torch.randn(6, 12)
    images = generator.eval()(z)
    assert images.shape == (6, 1, 16, 16)
    moved = z.clone()
    moved[:, 0] = torch.where(z[:, 0] > 0, -1.5, 1.5)  # every sample into another class, nothing else changed
    assert not torch.allclose(generator(moved), images, atol=1e-3)
    discriminator = build_discriminator("dcgan", (1, 16, 16), 8, 3, pack=1, batch_norm=True, spectral_norm=False,
                                        num_classes=4)
    labels = generator.classes.labels(z)
    assert discriminator(images, labels).shape == (6,)
    assert not torch.equal(discriminator(images, labels), discriminator(images, (labels + 1) % 4))
    with pytest.raises(ValueError, match="labels"):
        discriminator(images)


def test_grouped_projection_discriminator_adds_one_class_logit_per_group():
    discriminator = build_discriminator("dcgan", (3, 16, 16), 8, 3, pack=1, batch_norm=False, spectral_norm=False,
                                        num_classes=4, class_groups=3)
    images, labels = torch.randn(5, 3, 16, 16), torch.randint(4, (5, 3))
    per_class = discriminator.net(images).flatten(1)  # [N, 1 + 3 * 4]
    expected = per_class[:, 0] + sum(per_class[torch.arange(5), 1 + 4 * g + labels[:, g]] for g in range(3))
    assert torch.allclose(discriminator(images, labels), expected, atol=1e-6)


@pytest.mark.parametrize("resolution, channels", [(16, 1), (32, 3), (128, 3)])
def test_residual_shapes_range_and_widths(resolution, channels):
    config = generator_config("residual", 12, (channels, resolution, resolution), width=8, depth=2, images=True)
    assert config["blocks"] == 2
    generator = build_generator(config)
    images = generator(torch.randn(5, 12) * 10)
    assert images.shape == (5, channels, resolution, resolution) and images.abs().max() <= 1
    discriminator = build_discriminator("residual", (channels, resolution, resolution), 8, 2, pack=1,
                                        batch_norm=False, spectral_norm=False)
    assert discriminator(images).shape == (5,)
    assert len(generator.stages) == len(discriminator.stages) == len(stage_channels(resolution, 8))
    assert all(len(stage) == 2 for stage in generator.stages)  # blocks per stage


def test_residual_without_blocks_at_full_size_draws_and_reads_the_image_with_3x3_convolutions():
    config = generator_config("residual", 12, (3, 32, 32), width=8, depth=2, images=True, full_size_blocks=0)
    assert config["full_size_blocks"] == 0
    generator = build_generator(config)
    images = generator(torch.randn(5, 12))
    assert images.shape == (5, 3, 32, 32) and 0.05 < images.std() < 0.6
    assert [len(stage) for stage in generator.stages] == [2, 2, 2, 0] and generator.to_image.kernel_size == (3, 3)
    discriminator = build_discriminator("residual", (3, 32, 32), 8, 2, pack=1, batch_norm=False,
                                        spectral_norm=False, full_size_blocks=0)
    assert [len(stage) for stage in discriminator.stages] == [0, 2, 2, 2]
    assert discriminator.from_image.kernel_size == (3, 3) and discriminator(images).shape == (5,)
    default = build_generator(generator_config("residual", 12, (3, 32, 32), width=8, depth=2, images=True))
    assert "full_size_blocks" not in generator_config("residual", 12, (3, 32, 32), width=8, depth=2, images=True)
    assert default.to_image.kernel_size == (1, 1) and len(default.stages[-1]) == 2


def test_residual_generator_with_batch_norm_normalises_its_blocks_over_the_batch_in_training_only():
    config = generator_config("residual", 12, (1, 16, 16), width=8, depth=1, images=True, batch_norm=True)
    generator = build_generator(config)
    assert config["batch_norm"] and isinstance(generator.stages[0][0].norm_expand, torch.nn.BatchNorm2d)
    plain = build_generator(generator_config("residual", 12, (1, 16, 16), width=8, depth=1, images=True))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert set(plain.state_dict()) < set(generator.state_dict())  # the same names, plus the norms' own
    generator(torch.randn(8, 12)).mean().backward()  # training: statistics of the batch
    generator.eval()
    z = torch.randn(3, 12)
    alone = torch.cat([generator(z[i : i + 1]) for i in range(3)])
    assert torch.allclose(generator(z), alone, atol=1e-6)  # eval: running statistics, no sample depends on another
    discriminator = build_discriminator("residual", (1, 16, 16), 8, 1, pack=1, batch_norm=True, spectral_norm=False)
    assert isinstance(discriminator.stages[0][0].norm_spatial, torch.nn.BatchNorm2d)
    assert discriminator(generator(z)).shape == (3,)


def test_residual_channels_halve_as_the_size_doubles_up_to_eight_times_the_width():
    assert stage_channels(32, 16) == {4: 128, 8: 64, 16: 32, 32: 16}
    assert stage_channels(256, 16) == {4: 128, 8: 128, 16: 128, 32: 128, 64: 64, 128: 32, 256: 16}


def test_residual_blocks_start_as_the_identity_and_the_output_away_from_tanh_tails():
    """Fix-up initialisation: no normalisation layers, yet a deep net starts well scaled (each branch's last
    convolution is zero, so the stream passes unchanged; the images are not saturated)."""
    generator = build_generator(generator_config("residual", 16, (3, 64, 64), width=8, depth=3, images=True))
    block = generator.stages[2][0]
    x = torch.randn(2, block.expand.in_channels, 16, 16)
    assert torch.equal(block(x), x)
    images = generator(torch.randn(64, 16))
    assert 0.1 < images.std() < 0.6 and (images.abs() > 0.99).float().mean() < 0.01


def test_conditional_residual_reads_its_class_from_z_and_projects_per_group():
    config = generator_config("residual", 12, (3, 16, 16), width=8, depth=1, images=True, class_prior=[0.25] * 4,
                              class_groups=3)
    generator = build_generator(config)
    z = torch.randn(6, 12)
    moved = z.clone()
    moved[:, 0] = torch.where(z[:, 0] > 0, -1.5, 1.5)  # group 0's class changes, nothing else
    with torch.no_grad():
        for stage in generator.stages:  # let the blocks act (they start as the identity)
            for block in stage:
                block.project.weight.normal_(0, 0.1)
    assert not torch.allclose(generator(moved), generator(z), atol=1e-3)
    discriminator = build_discriminator("residual", (3, 16, 16), 8, 1, pack=1, batch_norm=False,
                                        spectral_norm=False, num_classes=4, class_groups=3)
    images, labels = generator(z), generator.classes.labels(z)
    assert labels.shape == (6, 3)
    assert not torch.equal(discriminator(images, labels), discriminator(images, (labels + 1) % 4))
    with pytest.raises(ValueError, match="labels"):
        discriminator(images)
