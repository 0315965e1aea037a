"""Self-conditioning: pseudo-classes for images without labels, trained as an ordinary conditional pair."""

import json

import numpy as np
import pytest
import torch

from ganforge.errors import UserError
from ganforge.train.checkpoint import load_checkpoint
from ganforge.train.clusters import (
    Clusters,
    cluster_purity,
    fit_clusters,
    kmeans,
    merge_splits,
    refit_clusters,
    ward_merges,
)
from ganforge.train.data import has_labels, load_data
from ganforge.train.loop import train
from ganforge.train.recipes import recipe_config


@pytest.fixture(scope="module")
def digits16():
    return load_data("digits", 16, 0)


def test_digit_clusters_are_pure_and_their_shares_are_what_training_assigns(digits16):
    images, labels = digits16.stream.pool(0, seed=0)
    clusters = fit_clusters(images, k=20, seed=0, true_labels=labels)
    assert clusters.k == 20 and abs(sum(clusters.prior) - 1) < 1e-9 and min(clusters.prior) > 0
    assert clusters.purity > 0.85  # k-means on the digits' pixels; the labels only measure it
    assigned = clusters.assign(images.float() / 127.5 - 1)
    shares = torch.bincount(assigned, minlength=20).double() / len(images)
    assert torch.allclose(shares, torch.tensor(clusters.prior, dtype=torch.float64))
    again = Clusters.from_state(clusters.state_dict())
    assert torch.equal(again.assign(images.float() / 127.5 - 1), assigned)


def test_centring_moves_what_is_drawn_to_the_middle_and_clusters_shapes_by_shape_and_colour():
    from ganforge.train.clusters import centred

    square = -torch.ones(1, 3, 16, 16)
    square[0, 0, 1:4, 10:13] = 1.0  # a red square in the top right corner
    middle = centred(square)
    rows, cols = torch.nonzero(middle[0, 0] > 0, as_tuple=True)
    assert abs(rows.float().mean() - 7.5) <= 0.5 and abs(cols.float().mean() - 7.5) <= 0.5  # its centre, at 7.5
    assert middle.sum() == square.sum() and len(rows) == 9
    shapes = load_data("shapes", 16, 0)
    images, labels = shapes.stream.images[:1500], shapes.labels[:1500]
    where = fit_clusters(images, k=18, seed=0, true_labels=labels)
    what = fit_clusters(images, k=18, seed=0, true_labels=labels, features="centred16")
    assert what.purity > where.purity + 0.25  # position no longer splits the 18 shape x colour classes
    again = Clusters.from_state(what.state_dict())
    assert again.features == "centred16"
    assert torch.equal(again.assign(images[:64].float() / 127.5 - 1), what.assign(images[:64].float() / 127.5 - 1))


def test_framing_fills_the_image_with_what_is_drawn_whatever_its_place_and_size():
    from ganforge.train.clusters import framed

    small, large = -torch.ones(2, 3, 16, 16), -torch.ones(1, 3, 16, 16)
    small[0, 0, 1:4, 10:13] = 1.0  # a small red square in the top right corner
    small[1, 1, 9:15, 2:8] = 1.0  # a larger green one, bottom left
    large[0, 0, 2:14, 2:14] = 1.0  # a red square filling most of the image
    boxes = framed(torch.cat([small, large]))
    assert ((boxes.amax(dim=1) > 0).float().mean(dim=(1, 2)) > 0.85).all()  # each square now fills the image
    assert (boxes[0] - boxes[2]).abs().mean() < 0.2 < 0.5 < (boxes[0] - boxes[1]).abs().mean()  # its colour stays
    assert torch.equal(framed(-torch.ones(1, 1, 8, 8)), -torch.ones(1, 1, 8, 8))  # nothing drawn: unchanged
    shapes = load_data("shapes", 16, 0)
    images, labels = shapes.stream.images[:1500], shapes.labels[:1500]
    what = fit_clusters(images, k=18, seed=0, true_labels=labels, features="framed16")
    centred = fit_clusters(images, k=18, seed=0, true_labels=labels, features="centred16")
    assert what.purity > max(0.9, centred.purity)  # size no longer splits a shape x colour class either


def test_merging_joins_the_clusters_that_split_one_tight_group_and_keeps_spread_ones():
    torch.manual_seed(0)
    truth = torch.arange(600) % 3  # three tight groups far apart, cut into 12 clusters by k-means
    tight = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])[truth] + torch.randn(600, 2)
    centroids, assigned = kmeans(tight, 12, seed=0)
    merged = merge_splits(tight, centroids, assigned)
    assert len(merged) == 3 and cluster_purity(torch.cdist(tight, merged).argmin(dim=1), truth) == 1.0
    spread = torch.rand(2000, 2) * 20  # one even spread: its 40 clusters merge at heights that rise smoothly
    centroids, assigned = kmeans(spread, 40, seed=0)
    assert torch.equal(merge_splits(spread, centroids, assigned), centroids)
    two = torch.tensor([[0.0, 0.0], [50.0, 0.0]])[torch.arange(600) % 2] + torch.randn(600, 2)
    centroids, assigned = kmeans(two, 12, seed=0)
    assert len(merge_splits(two, centroids, assigned)) == 12  # a jump leaving under a quarter of K: no merge


def test_ward_merges_weigh_each_cluster_by_its_images():
    from scipy.cluster.hierarchy import linkage

    points = np.random.default_rng(0).normal(size=(12, 3))
    _, heights = ward_merges(points, np.ones(12))  # one image each: scipy's Ward on the points
    assert np.allclose(heights * np.sqrt(2), linkage(points, "ward")[:, 2])
    # two clusters of one image, a unit apart, and two of a thousand, 0.6 apart: the large ones cost more to merge
    merges, heights = ward_merges(np.array([[0.0], [1.0], [10.0], [10.6]]), np.array([1, 1, 1000, 1000]))
    assert merges[:2] == [(0, 1), (2, 3)] and np.isclose(heights[0], np.sqrt(0.5))


def test_merged_shape_clusters_are_the_shape_x_colour_classes_and_the_digits_keep_theirs(digits16):
    shapes = load_data("shapes", 32, 0)
    images, labels = shapes.stream.images[:1500], shapes.labels[:1500]
    for seed in (0, 3, 5):  # 3 and 5: k-means seeds whose 40 clusters stayed 40 when Ward ignored their sizes
        clusters = fit_clusters(images, k=40, seed=seed, true_labels=labels, features="framed16", merge=True)
        assert (clusters.k, clusters.purity, clusters.merged_from) == (18, 1.0, 40), seed  # 3 shapes x 6 colours
    assert Clusters.from_state(clusters.state_dict()).merged_from == 40 and clusters.summary()["merged_from"] == 40
    images, labels = digits16.stream.pool(0, seed=0)
    digits = fit_clusters(images, k=40, seed=0, true_labels=labels, merge=True)
    assert digits.k == 40 and digits.merged_from is None  # the writing styles of a digit are no tight group


def test_purity_counts_majority_labels_also_for_rows_of_labels():
    assigned = torch.tensor([0, 0, 0, 1, 1, 1])
    assert cluster_purity(assigned, torch.tensor([3, 3, 5, 2, 2, 2])) == pytest.approx(5 / 6)
    triples = torch.tensor([[1, 2, 3], [1, 2, 3], [1, 2, 4], [0, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert cluster_purity(assigned, triples) == pytest.approx(4 / 6)


def test_self_conditional_run_is_a_conditional_generator_of_its_clusters(tiny):
    run = train(tiny(labels="ignore", self_conditional=5, steps=2))
    state = load_checkpoint(run)
    config = state["generator_config"]
    assert config["class_source"] == "clusters" and len(config["class_prior"]) == 5
    assert config["class_prior"] == state["clusters"]["prior"]
    last = [v for k, v in state["discriminator"].items() if k.endswith("weight")][-1]
    assert last.shape[0] == 1 + 5  # D's last layer: the shared logit and one per pseudo-class
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    # 5 clusters of 10 digits: at most ~0.5 pure
    assert first["step"] == 0 and first["clusters"]["k"] == 5 and first["clusters"]["purity"] > 0.35
    saved = json.loads((run / "config.json").read_text())
    assert saved["self_conditional"] == 5 and saved["labels"] == "ignore" and saved["conditional"] is False


def test_a_run_with_merged_clusters_conditions_on_the_merged_classes(tiny):
    run = train(tiny(data="shapes", resolution=32, labels="ignore", self_conditional=40,
                     cluster_features="framed16", merge_clusters=True, steps=1))
    state = load_checkpoint(run)
    assert len(state["generator_config"]["class_prior"]) == 18 and state["clusters"]["merged_from"] == 40
    last = [v for k, v in state["discriminator"].items() if k.endswith("weight")][-1]
    assert last.shape[0] == 1 + 18
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["clusters"]["k"] == 18 and first["clusters"]["merged_from"] == 40
    assert json.loads((run / "config.json").read_text())["merge_clusters"] is True


def test_clusters_found_again_keep_the_numbers_of_the_ones_they_replace():
    """Three clear groups, which the previous clusters called 2, 0 and 1: k-means numbers them its own way, and the
    refit renumbers them after the old clusters, so a class embedding keeps meaning the same images."""
    torch.manual_seed(0)
    truth = torch.arange(300) % 3
    embedded = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])[truth] + 0.1 * torch.randn(300, 2)
    previous = torch.tensor([2, 0, 1])[truth]
    clusters, kept = refit_clusters(embedded, previous, k=3, seed=0, true_labels=truth)
    assert kept == 1.0 and clusters.purity == 1.0 and clusters.features == "discriminator"
    assert clusters.prior == pytest.approx([1 / 3] * 3)
    clusters.embed = lambda features: features  # the features are the embedding here
    assert torch.equal(clusters.assign(embedded), previous)
    with pytest.raises(ValueError, match="need its embedding"):
        Clusters.from_state(clusters.state_dict()).assign(embedded)
    moved = previous.clone()
    moved[:30] = (moved[:30] + 1) % 3  # a tenth of the images were in another cluster before: they change class
    assert refit_clusters(embedded, moved, k=3, seed=0)[1] == pytest.approx(0.9)


def test_a_refit_that_would_leave_a_class_empty_is_refused():
    embedded = torch.tensor([[0.0, 0.0]] * 10 + [[1.0, 1.0]] * 10)  # two distinct points, three clusters asked
    with pytest.warns(Warning):  # k-means itself says it found fewer distinct clusters
        assert refit_clusters(embedded, torch.arange(20) % 3, k=3, seed=0) is None


def test_reclustering_on_the_discriminator_keeps_the_generator_in_step_with_the_clusters(tiny):
    from ganforge.train.models import build_generator
    from ganforge.train.precision import resolve_precision
    from ganforge.train.trainer import Trainer

    config = tiny(labels="ignore", self_conditional=5, recluster_every=2, steps=5)
    run = train(config)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    refits = [r for r in records if "reclustered" in r]
    assert [r["step"] for r in refits] == [3, 5]  # found again after steps 2 and 4, for the steps that follow
    assert all(r["reclustered"] and r["clusters"]["features"] == "discriminator" for r in refits)
    assert all(0 <= r["kept_class"] <= 1 and 0 < r["clusters"]["purity"] <= 1 for r in refits)
    state = load_checkpoint(run)
    assert state["clusters"]["features"] == "discriminator" and state["clusters"]["centroids"].shape[0] == 5
    assert state["generator_config"]["class_prior"] == state["clusters"]["prior"]
    # the generator trained on draws its classes where one rebuilt from the saved config (export, sample) does
    data = load_data("digits", 16, 0).without_labels()
    trainer = Trainer(config, data, resolve_precision("fp32", "cpu"))
    for _ in range(2):
        trainer.train_step()
    before = trainer.generator.classes.edges.clone()
    assert trainer.recluster_due() and trainer.recluster()["reclustered"]
    rebuilt = build_generator(trainer.generator_config).classes.edges
    for generator in (trainer.generator, trainer.generator_ema):
        assert torch.equal(generator.classes.edges, rebuilt)
    assert not torch.equal(before, rebuilt)  # the shares moved with the clusters
    images, _ = data.stream.pool(0, seed=0)
    shares = torch.bincount(trainer.clusters.assign(images[:500].float() / 127.5 - 1), minlength=5)
    assert (shares > 0).all()  # real images land in every class of the new clusters, embedded by D


def test_stacked_digits_without_labels_cluster_a_pool_of_stacks(tiny):
    run = train(tiny(data="stacked-digits", labels="ignore", self_conditional=8, steps=1))
    state = load_checkpoint(run)
    assert state["generator_config"]["class_source"] == "clusters"
    assert state["generator_config"].get("class_groups", 1) == 1  # one pseudo-class per stack
    assert state["clusters"]["centroids"].shape == (8, 3 * 16 * 16)


def test_channel_clusters_give_each_stacked_digit_its_own_pseudo_class():
    stacks, digits = load_data("stacked-digits", 16, 0).stream.pool(3000, seed=0)  # uint8 [N, 3, 16, 16], [N, 3]
    clusters = fit_clusters(stacks, k=20, seed=0, true_labels=digits, groups=3)
    assert clusters.groups == 3 and clusters.centroids.shape == (20, 16 * 16)  # one k-means over every channel
    assert clusters.purity > 0.85  # per channel: as pure as the digits alone (a cluster of whole stacks: ~0.05)
    assigned = clusters.assign(stacks.float() / 127.5 - 1)
    assert assigned.shape == (3000, 3)
    one_channel = Clusters(clusters.centroids, clusters.prior)  # a channel's class is its own, not its stack's
    assert torch.equal(one_channel.assign(stacks[:, 1:2].float() / 127.5 - 1), assigned[:, 1])
    shares = torch.bincount(assigned.flatten(), minlength=20).double() / assigned.numel()
    assert torch.allclose(shares, torch.tensor(clusters.prior, dtype=torch.float64))
    again = Clusters.from_state(clusters.state_dict())
    assert again.groups == 3 and torch.equal(again.assign(stacks.float() / 127.5 - 1), assigned)


def test_stacked_digits_with_channel_clusters_train_a_generator_with_a_class_per_channel(tiny):
    run = train(tiny(data="stacked-digits", labels="ignore", self_conditional=8, cluster_channels=True, steps=1))
    state = load_checkpoint(run)
    config = state["generator_config"]
    assert config["class_source"] == "clusters" and config["class_groups"] == 3 and len(config["class_prior"]) == 8
    assert state["clusters"]["centroids"].shape == (8, 16 * 16) and state["clusters"]["groups"] == 3
    last = [v for k, v in state["discriminator"].items() if k.endswith("weight")][-1]
    assert last.shape[0] == 1 + 3 * 8  # the shared logit and one per channel's pseudo-class
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["clusters"]["groups"] == 3


@pytest.mark.parametrize("changes, message", [
    ({"cluster_channels": True, "labels": "ignore"}, "needs --self-conditional K"),
    ({"cluster_channels": True, "labels": "ignore", "self_conditional": 5}, "has one channel"),
    ({"self_conditional": 1, "labels": "ignore"}, "2 or more pseudo-classes"),
    ({"self_conditional": 5}, "has labels: train on them with --conditional, or add --labels ignore"),
    ({"self_conditional": 5, "labels": "ignore", "conditional": True}, "--conditional trains on the labels"),
    ({"self_conditional": 5, "conditional": True}, "exclude each other"),
    ({"self_conditional": 5, "data": "ring", "model": "mlp"}, "2D points"),
    ({"labels": "some"}, "unknown --labels"),
    ({"recluster_every": 100}, "--recluster-every clusters images into pseudo-classes: it needs --self-conditional"),
    ({"recluster_every": -1, "labels": "ignore", "self_conditional": 5}, "--recluster-every takes a number"),
    ({"merge_clusters": True}, "--merge-clusters clusters images into pseudo-classes: it needs --self-conditional"),
    ({"data": "stacked-digits", "labels": "ignore", "self_conditional": 5, "cluster_channels": True,
      "recluster_every": 100}, "choose one"),
])
def test_bad_self_conditioning_is_one_clear_error(tiny, changes, message):
    with pytest.raises(UserError, match=message):
        train(tiny(**changes))


def test_a_set_too_small_for_k_gets_the_most_classes_it_can_fill_and_config_json_says_so(tiny, tmp_path):
    run = train(tiny(data=_folder(tmp_path / "flat", False, count=30), self_conditional=40, steps=1, batch_size=6))
    assert json.loads((run / "config.json").read_text())["self_conditional"] == 6  # 30 images / 5
    assert len(load_checkpoint(run)["generator_config"]["class_prior"]) == 6
    tiny_run = train(tiny(data=_folder(tmp_path / "tiny", False, count=8), self_conditional=4, steps=1, batch_size=4,
                          out=str(tmp_path / "t")))
    assert json.loads((tiny_run / "config.json").read_text())["self_conditional"] == 0  # too few: no classes
    assert "class_prior" not in load_checkpoint(tiny_run)["generator_config"]
    with pytest.raises(UserError, match="8 images fill 2 to 1 pseudo-classes"):
        fit_clusters(torch.zeros(8, 1, 4, 4, dtype=torch.uint8), k=2, seed=0)


def _folder(root, labelled: bool, count: int = 12):
    from PIL import Image

    for i in range(count):
        folder = root / (f"class{i % 2}" if labelled else "")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (8 * i, 255 - 8 * i, 0)).save(folder / f"{i}.png")
    return f"folder:{root}"


def test_a_folder_with_class_subfolders_trains_and_is_evaluated_with_its_labels(tmp_path):
    """Read through the dataset cache, a labelled folder's images are what the domain classifier learns from: the
    run's evaluation measures the samples with it (a cached folder once broke this)."""
    import json

    from ganforge.train.loop import train
    from tests.conftest import tiny_config

    data = _folder(tmp_path / "nested", True, count=60)
    run = train(tiny_config(tmp_path, data=data, conditional=True, eval_every=2, steps=2))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluation = next(record["eval"] for record in records if "eval" in record)
    assert evaluation["fd"] >= 0 and evaluation["num_classes"] == 2 and "class_kl" in evaluation


def test_recipes_condition_on_labels_where_there_are_labels_and_on_clusters_where_not(tmp_path):
    flat, nested = _folder(tmp_path / "flat", False), _folder(tmp_path / "nested", True)
    assert not has_labels(flat) and has_labels(nested) and has_labels("digits") and not has_labels("ring")
    unlabelled, labelled = recipe_config(flat), recipe_config(nested)
    assert unlabelled.self_conditional > 1 and not unlabelled.conditional
    assert labelled.conditional and not labelled.self_conditional
    ignored = recipe_config("digits", labels="ignore")
    assert ignored.self_conditional == 80 and not ignored.conditional  # the residual model's recipe
    assert recipe_config("digits").conditional and not recipe_config("digits").self_conditional
    assert recipe_config("stacked-digits", labels="ignore").width == recipe_config("stacked-digits").width
    assert recipe_config("stacked-digits", labels="ignore").cluster_channels  # its channels are separate digits
    assert not recipe_config(flat).cluster_channels and not recipe_config("digits", labels="ignore").cluster_channels
    assert not recipe_config("stacked-digits", labels="ignore", self_conditional=0).cluster_channels
    assert recipe_config(flat, model="mlp").self_conditional == 0  # the MLP has no classes
    assert recipe_config(nested, labels="ignore").self_conditional == 40
