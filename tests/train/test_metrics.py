import json
import math

import numpy as np
import torch

from ganforge.train.data.synthetic import RING_SIGMA, ring_modes
from ganforge.train.metrics import mode_coverage
from ganforge.train.metrics.frechet import frechet_distance_of, kernel_distance
from ganforge.train.metrics.memorization import near_copy_share
from ganforge.train.metrics.prdc import prdc


def test_perfect_samples_capture_every_mode_with_zero_kl():
    modes = ring_modes()
    samples = modes.repeat(100, 1) + 0.5 * RING_SIGMA * torch.randn(800, 2)
    result = mode_coverage(samples, modes, RING_SIGMA)
    assert result["modes_captured"] == 8 and result["high_quality"] == 1.0
    assert abs(result["reverse_kl"]) < 1e-12


def test_collapsed_samples_count_one_mode_and_log_k_kl():
    modes = ring_modes()
    samples = torch.cat([modes[:1].repeat(50, 1), torch.zeros(50, 2)])  # half on mode 0, half at the centre
    result = mode_coverage(samples, modes, RING_SIGMA)
    assert result["modes_captured"] == 1 and result["high_quality"] == 0.5
    assert math.isclose(result["reverse_kl"], math.log(8))


def test_ring_has_eight_distinct_modes():
    modes = ring_modes()
    assert len(torch.unique(modes.round(decimals=6), dim=0)) == 8
    assert torch.allclose(modes.norm(dim=1), torch.ones(8))


def test_mode_overlap_is_one_for_perfect_samples_and_loses_missing_modes():
    modes = ring_modes()
    perfect = modes.repeat(100, 1)
    assert abs(mode_coverage(perfect, modes, RING_SIGMA)["mode_overlap"] - 1.0) < 1e-9
    half = modes[:4].repeat(200, 1)  # 4 of 8 modes, all high quality
    assert abs(mode_coverage(half, modes, RING_SIGMA)["mode_overlap"] - 0.5) < 1e-9


def test_reverse_kl_is_null_not_infinity_without_high_quality_samples():
    result = mode_coverage(torch.full((50, 2), 10.0), ring_modes(), RING_SIGMA)
    assert result["reverse_kl"] is None and result["modes_captured"] == 0
    json.dumps(result, allow_nan=False)  # valid JSON


def test_frechet_distance_matches_the_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, size=(20000, 2))
    b = rng.normal(1.0, 2.0, size=(20000, 2))
    # per dimension: (mu_a - mu_b)^2 + (s_a - s_b)^2 = 1 + 1; two dimensions
    assert abs(frechet_distance_of(a, b) - 4.0) < 0.1
    assert abs(frechet_distance_of(a, a)) < 1e-6


def test_kernel_distance_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 8))
    assert abs(kernel_distance(a, b, num_subsets=20)) < 0.02
    assert kernel_distance(a, b + 1.0, num_subsets=20) > 0.5


def test_prdc_separates_fidelity_from_diversity():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(500, 4))
    same = prdc(real, rng.normal(size=(500, 4)))
    assert same["precision"] > 0.8 and same["recall"] > 0.8 and 0.7 < same["density"] < 1.3
    collapsed = prdc(real, 0.05 * rng.normal(size=(500, 4)))  # all at the centre: faithful but not diverse
    assert collapsed["precision"] > 0.9 and collapsed["recall"] < 0.2 and collapsed["coverage"] < 0.3
    far = prdc(real, rng.normal(size=(500, 4)) + 10)
    assert far["precision"] == far["recall"] == far["coverage"] == 0.0


def test_near_copies_flag_a_generator_that_copies_its_training_images():
    rng = np.random.default_rng(3)
    training = rng.uniform(0, 255, size=(300, 1, 8, 8))
    copies = training[:100] + rng.normal(0, 0.5, size=(100, 1, 8, 8))
    fresh = rng.uniform(0, 255, size=(100, 1, 8, 8))
    assert near_copy_share(copies, training)["near_copies"] == 1.0
    assert near_copy_share(fresh, training)["near_copies"] < 0.05


def test_random_embedding_gives_metrics_on_a_readable_scale():
    """Data without labels is measured in a random CNN's features: a poor generator must read as poor (FD of noise
    well above 1, not ~1e-5), blur must cost more than a fresh draw of the same data, and KID must see the blur."""
    from ganforge.train.data import load_data
    from ganforge.train.metrics.features import random_embedding

    images = load_data("digits", 16, 0).stream.images
    embedding = random_embedding(images.shape[1], 16)
    real, _ = embedding.run(images[:600])
    fresh, _ = embedding.run(images[600:1200])
    noise, _ = embedding.run(torch.randint(0, 256, images[:600].shape, dtype=torch.uint8,
                                           generator=torch.Generator().manual_seed(0)))
    blurred, _ = embedding.run(torch.nn.functional.avg_pool2d(images[600:1200].float(), 3, 1, 1).round().byte())
    assert frechet_distance_of(real, noise) > 1.0
    assert frechet_distance_of(real, blurred) > 10 * frechet_distance_of(real, fresh)
    assert kernel_distance(real, blurred) > 10 * max(kernel_distance(real, fresh), 1e-4)


def test_a_classifier_trained_once_serves_every_run_of_the_same_data_and_a_corrupt_one_is_trained_again(
        tmp_path, monkeypatch):
    from ganforge.train.data import load_data
    from ganforge.train.metrics import features

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "shared"))
    data = load_data("digits", 16, 0)
    images, labels = data.stream.images[:300], data.labels[:300]
    trained = []
    train_classifier = features.train_classifier
    monkeypatch.setattr(features, "train_classifier", lambda *a, **k: trained.append(1) or train_classifier(*a, **k))
    first = features.domain_classifier(images, labels, tmp_path / "run-a" / "eval" / "classifier.pt", 16)
    second = features.domain_classifier(images, labels, tmp_path / "run-b" / "eval" / "classifier.pt", 16)
    assert len(trained) == 1 and (tmp_path / "run-b" / "eval" / "classifier.pt").is_file()  # the run keeps its own
    assert np.array_equal(first.run(images)[0], second.run(images)[0]) and first.info == second.info
    [shared] = (tmp_path / "shared" / "classifiers").iterdir()
    shared.write_bytes(b"torn by a crash")
    features.domain_classifier(images, labels, tmp_path / "run-c" / "eval" / "classifier.pt", 16)
    assert len(trained) == 2 and features._load_cache(shared, json.loads(torch.load(shared)["key"])) is not None
    features.domain_classifier(images, labels[torch.randperm(300)], None, 16)  # other labels: another classifier
    assert len(trained) == 3 and len(list((tmp_path / "shared" / "classifiers").iterdir())) == 2
