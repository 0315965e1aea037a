"""Pseudo-classes for images without labels (self-conditioning, after Liu et al. 2020, "Diverse Image Generation
via Self-Conditioned GANs").

The data is clustered once, before the first step, by k-means on a fixed embedding of the images: their pixels
pooled to at most 16 x 16 (per channel). A real image's class is its nearest centroid; G draws its class from z0
with the clusters' shares (``models/classes.LatentClasses``), exactly as for labelled data; G and D are the
ordinary class-conditional pair. So a self-conditioned generator is an ordinary conditional one: seeds in, images
out on every backend, and every export path takes it unchanged.

Why these features: on the 1,797 bundled digits, k-means on pooled pixels gives clusters 93% pure and a
conditional DCGAN on 20 such clusters recognised as many digits as one trained on the true labels (the measured
recipes in ``recipes.py``), while the features of a network trained on the labels would leak them. More clusters
than classes helps: a class split in two costs nothing, two classes merged in one cluster cost blends.

    clusters = fit_clusters(images, k=20, seed=0)     # images uint8 [N, C, H, W]
    labels = clusters.assign(batch)                     # float [B, C, H, W] in [-1, 1] -> int64 [B]
    clusters.prior                                      # the share of each pseudo-class

With ``groups=C`` (``--cluster-channels``) each of an image's C channels is clustered as an image of its own, all
channels in one k-means: a pseudo-class per channel, read by G from z0 .. z(C-1) like the stacked digits' three
labels. That is for data whose channels are separate images (stacked digits); it assumes the channels share one
distribution, and a photo's red, green and blue are no such thing.

    clusters = fit_clusters(stacks, k=40, seed=0, groups=3)   # stacks uint8 [N, 3, H, W]
    clusters.assign(batch)                                    # -> int64 [B, 3]

With ``--merge-clusters`` the K clusters are where k-means starts: clusters that split one tight group of images are
merged back (``merge_splits``), so data of 18 clean kinds conditions on 18 classes rather than 40 halves and thirds
of them, while data whose groups are spread (the digits' writing styles) keeps all K.

    clusters = fit_clusters(images, k=40, seed=0, features="framed16", merge=True)   # clusters.k may be < 40

With ``--recluster-every N`` the trainer clusters the same images again every N steps, on what its discriminator
has learned to tell apart (the features its last layer reads), as Liu et al. do; ``refit_clusters`` numbers the new
clusters after the old ones they overlap most, so that the classes G and D have learned keep their meaning.

    refit, kept = refit_clusters(d_features, clusters.assign(images), k=40, seed=1500)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.errors import UserError

from .data.base import to_unit_range

POOLED_SIZE = 16
# --merge-clusters: a Ward merge of centroids this many times higher than the one before it joins distinct groups
MERGE_JUMP = 1.5
MERGE_KEEPS = 4  # ... and keeps at least a quarter of the K clusters: fewer classes than K / 4 cost the digits most
MIN_PER_CLUSTER = 5  # k may be at most N / 5: a cluster of a handful of images is no class to condition on


def most_clusters(images: int) -> int:
    """The most pseudo-classes ``images`` images can fill: a cluster of a handful of images is no class."""
    return images // MIN_PER_CLUSTER


def split_channels(images: torch.Tensor, groups: int) -> torch.Tensor:
    """[N, C, H, W] -> [N * C, 1, H, W] where each channel is clustered on its own (groups == C); else unchanged."""
    return images.reshape(-1, 1, *images.shape[-2:]) if groups > 1 else images


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """float [N, C, H, W] in [-1, 1] -> float32 [N, C * min(H, 16)^2]: pixels area-pooled to at most 16 x 16."""
    images = images.float()
    if images.shape[-1] > POOLED_SIZE:
        images = F.adaptive_avg_pool2d(images, POOLED_SIZE)
    return images.flatten(1)


def ink(images: torch.Tensor) -> torch.Tensor:
    """float [N, C, H, W] -> [N, H, W]: each pixel's distance from the mean colour of its image's border (the
    background, for a thing drawn on one)."""
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    return (images - border.mean(dim=2)[..., None, None]).abs().sum(dim=1)


def centred(images: torch.Tensor) -> torch.Tensor:
    """Each image shifted (cyclically, whole pixels) so that the centroid of its ink sits at the centre: where a
    thing is drawn no longer tells images apart, what is drawn does. Centred images (digits) stay as they were."""
    images = images.float()
    n, _, h, w = images.shape
    weights = ink(images)  # [N, H, W]
    total = weights.sum(dim=(1, 2)).clamp_min(1e-6)
    rows = (weights.sum(dim=2) * torch.arange(h)).sum(dim=1) / total
    cols = (weights.sum(dim=1) * torch.arange(w)).sum(dim=1) / total
    down, right = (h / 2 - 0.5 - rows).round().long(), (w / 2 - 0.5 - cols).round().long()
    y = (torch.arange(h)[None, :] - down[:, None]) % h  # [N, H]: the source row of each output row
    x = (torch.arange(w)[None, :] - right[:, None]) % w
    return images[torch.arange(n)[:, None, None, None], torch.arange(images.shape[1])[None, :, None, None],
                  y[:, None, :, None], x[:, None, None, :]]


def framed(images: torch.Tensor) -> torch.Tensor:
    """Each image's ink framed: the smallest square around its pixels with ink (a quarter of its strongest ink or
    more), resampled to the whole image (bilinear; outside the image, its border colour). Where a thing is drawn
    and how large no longer tell images apart, what is drawn does. An image without ink stays whole."""
    images = images.float()
    n, _, h, w = images.shape
    weights = ink(images)
    marked = weights > 0.25 * weights.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    rows, cols = marked.any(dim=2).float(), marked.any(dim=1).float()  # [N, H], [N, W]
    top, bottom = rows.argmax(dim=1), h - rows.flip(1).argmax(dim=1)  # the box's edges, in pixels
    left, right = cols.argmax(dim=1), w - cols.flip(1).argmax(dim=1)
    side = torch.maximum(bottom - top, right - left).float()
    theta = torch.zeros(n, 2, 3)  # output [-1, 1] -> input [-1, 1]: the square around the box's centre
    theta[:, 0, 0], theta[:, 1, 1] = side / w, side / h
    theta[:, 0, 2], theta[:, 1, 2] = (left + right).float() / w - 1, (top + bottom).float() / h - 1
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


# the embeddings clusters can live in (recorded in the checkpoint, so a resumed run assigns as it was fitted):
# pooled pixels, or pooled pixels of the centred or framed image (--cluster-features)
EMBEDDINGS = {"pixels16": pixel_features, "centred16": lambda images: pixel_features(centred(images)),
              "framed16": lambda images: pixel_features(framed(images))}
CLUSTER_FEATURES = tuple(EMBEDDINGS)  # --cluster-features
# clusters found again during training on the discriminator's features (--recluster-every): their embedding is D,
# which the trainer (or ganforge eval, from the checkpoint) holds and sets as ``Clusters.embed``
DISCRIMINATOR = "discriminator"


@dataclass
class Clusters:
    """k-means centroids in an embedding of the images and the shares of the data in each."""

    centroids: torch.Tensor  # float32 [K, D]
    prior: list[float]  # [K], positive, sums to 1
    purity: float | None = None  # against the data's true labels, where it has them and they were ignored
    groups: int = 1  # pseudo-classes per image: 1, or one per channel (--cluster-channels)
    features: str = "pixels16"  # the embedding: a fixed one (EMBEDDINGS) or DISCRIMINATOR
    merged_from: int | None = None  # --merge-clusters: the k-means clusters these were merged from (None: unmerged)
    # with DISCRIMINATOR: float [B, C, H, W] in [-1, 1] -> float32 [B, F] on the CPU, D's features
    embed: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    @property
    def k(self) -> int:
        return len(self.centroids)

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """float [B, C, H, W] in [-1, 1] -> float32 [B (x C with groups), D]: the space the centroids live in."""
        if self.features == DISCRIMINATOR:
            if self.embed is None:
                raise ValueError("clusters of the discriminator's features need its embedding (Clusters.embed)")
            return self.embed(images)
        return EMBEDDINGS[self.features](split_channels(images.cpu(), self.groups))

    def assign(self, images: torch.Tensor) -> torch.Tensor:
        """The pseudo-class of each image: float [B, C, H, W] in [-1, 1] -> int64 [B] (the nearest centroid), or
        [B, C] with a class per channel."""
        labels = nearest(self.embedding(images), self.centroids)
        return labels.view(len(images), self.groups) if self.groups > 1 else labels

    def state_dict(self) -> dict:
        return {"features": self.features, "centroids": self.centroids, "prior": list(self.prior),
                "purity": self.purity, "groups": self.groups, "merged_from": self.merged_from}

    @classmethod
    def from_state(cls, state: dict, path: str = "checkpoint") -> Clusters:
        if state.get("features") not in (*EMBEDDINGS, DISCRIMINATOR):
            raise UserError(f"{path}: pseudo-classes of an unknown kind {state.get('features')!r}")
        return cls(state["centroids"].float(), [float(p) for p in state["prior"]], state.get("purity"),
                   int(state.get("groups", 1)), state["features"], state.get("merged_from"))

    def summary(self) -> dict:
        """What config.json's neighbours (metrics.jsonl, ganforge eval) report about the clustering."""
        return {"k": self.k, "groups": self.groups, "features": self.features, "largest_share": max(self.prior),
                "smallest_share": min(self.prior), "shares": [round(p, 5) for p in self.prior],
                "purity": self.purity, "merged_from": self.merged_from}


def nearest(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """int64 [N]: each row's nearest centroid (float32, on the CPU: the assignment the training loop makes)."""
    return torch.cdist(features.float().cpu(), centroids).argmin(dim=1)


def fit_clusters(images: torch.Tensor, k: int, seed: int, true_labels: torch.Tensor | None = None,
                 groups: int = 1, features: str = "pixels16", merge: bool = False) -> Clusters:
    """k-means (k-means++ start, the best of 4 starts, a fixed seed) on ``images`` (uint8 [N, C, H, W]); with
    ``groups == C`` on their channels, each as an image. With ``merge``, the clusters that split one tight group are
    merged back (``merge_splits``): k is then the most pseudo-classes.

    ``true_labels`` ([N], or [N, G] for several classes per image) only measure the clusters' purity: the share of
    images (channels, with groups) whose cluster's most common true label is their own."""
    if groups > 1:  # each channel an image of its own, with its own label
        images = split_channels(images, groups)
        true_labels = true_labels.reshape(-1) if true_labels is not None else None
    if not 2 <= k <= most_clusters(len(images)):
        raise UserError(f"--self-conditional {k}: {len(images)} images fill 2 to {most_clusters(len(images))} "
                        f"pseudo-classes ({MIN_PER_CLUSTER} images each on average)")
    # in chunks: 20,000 images at 128 px would be 3.9 GB as floats, their embedding 61 MB
    embedded = torch.cat([EMBEDDINGS[features](to_unit_range(chunk)) for chunk in images.split(1024)])
    centroids, assigned = kmeans(embedded, k, seed)
    if merge:
        merged = merge_splits(embedded, centroids, assigned)
        if len(merged) < len(centroids):
            centroids, assigned = merged, nearest(embedded, merged)
    counts = torch.bincount(assigned, minlength=len(centroids)).double()
    if (counts == 0).any():  # k-means relocates empty clusters while fitting; this guards the prior's contract
        raise UserError(f"--self-conditional {k}: the clustering left {int((counts == 0).sum())} pseudo-classes "
                        "empty; choose a smaller K")
    prior = (counts / counts.sum()).tolist()
    purity = cluster_purity(assigned, true_labels) if true_labels is not None else None
    return Clusters(centroids, prior, purity, groups, features, k if len(centroids) < k else None)


def merge_splits(embedded: torch.Tensor, centroids: torch.Tensor, assigned: torch.Tensor,
                 jump: float = MERGE_JUMP) -> torch.Tensor:
    """The centroids [K, D] of k-means on ``embedded`` [N, D] (each row's nearest: ``assigned`` [N]) with the
    clusters that split one tight group merged.

    Ward's agglomeration of the clusters (``ward_merges``: each weighed by its images) merges the closest first;
    where the data has tight groups far apart (the shapes, framed: 18 shape x colour kinds), the merges within a
    group are all low and the first merge across groups is many times higher than the one before it. Merging stops
    before the first merge ``jump`` times higher than its predecessor, among those that leave a quarter of the
    clusters or more; the merged centroids are the means of their images. Where the heights rise smoothly (groups
    of spread images: the digits, clustered on pixels or framed) there is no such jump and the K centroids stay."""
    sizes = torch.bincount(assigned, minlength=len(centroids)).clamp_min(1)
    merges, heights = ward_merges(centroids.double().numpy(), sizes.double().numpy())
    before = merges_before_jump(heights, jump)
    if before == 0:
        return centroids
    group = np.arange(len(centroids))
    for kept, gone in merges[:before]:
        group[group == gone] = kept
    _, merged = torch.from_numpy(group).unique(return_inverse=True)
    members = merged[assigned]  # each image's merged cluster
    sums = torch.zeros(int(merged.max()) + 1, embedded.shape[1]).index_add_(0, members, embedded.float())
    return sums / torch.bincount(members, minlength=len(sums)).clamp_min(1)[:, None]


def merges_before_jump(heights: np.ndarray, jump: float = MERGE_JUMP) -> int:
    """How many of the K - 1 merges of ``heights`` (Ward's, in order) come before the first one ``jump`` times higher
    than its predecessor, among those that leave a quarter of the K clusters or more; 0 where there is none."""
    jumps = np.flatnonzero(heights[1:] >= jump * heights[:-1])  # jumps[i] + 1 merges come before the jump
    jumps = jumps[jumps + 1 <= most_merges(len(heights) + 1)]
    return int(jumps[0]) + 1 if len(jumps) else 0


def most_merges(k: int) -> int:
    """How many merges of K clusters may come before the jump: they leave a quarter of the K (and 2) or more."""
    return k - max(2, k // MERGE_KEEPS)


def ward_merges(centroids: np.ndarray, sizes: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Ward's agglomeration of clusters given by their means [K, D] and sizes [K]: the K - 1 merges in order, each
    (kept, gone) by original index, and their heights sqrt(n_a n_b / (n_a + n_b)) |c_a - c_b|, the rise in the
    within-cluster spread. The sizes are what scipy's Ward on the centroids lacks: there one group that k-means cut
    into five clusters looks as spread as five groups, and the jump between groups was lost on one k-means seed in
    five on the shapes (1.33x against 1.7-2.1x), while here it is 2.5x on every seed tried and the digits' largest
    rise 1.17x (benchmarks/results/merge_heights.json)."""
    means, sizes = centroids.astype(np.float64), sizes.astype(np.float64).copy()
    alive = np.ones(len(means), dtype=bool)
    norms = (means**2).sum(1)
    cost = ward_costs(sizes[:, None], sizes, np.maximum(norms[:, None] + norms[None, :] - 2 * means @ means.T, 0))
    np.fill_diagonal(cost, np.inf)  # [K, K]: updated a row at a time, so K in the thousands stays cheap
    merges, heights = [], []
    for _ in range(len(means) - 1):
        a, b = np.unravel_index(np.argmin(cost), cost.shape)
        kept, gone = int(min(a, b)), int(max(a, b))
        heights.append(float(np.sqrt(cost[a, b])))
        merges.append((kept, gone))
        total = sizes[kept] + sizes[gone]
        means[kept] = (sizes[kept] * means[kept] + sizes[gone] * means[gone]) / total
        sizes[kept], alive[gone] = total, False
        row = ward_costs(sizes[kept], sizes, ((means - means[kept]) ** 2).sum(1))
        row[~alive], row[kept] = np.inf, np.inf
        cost[kept], cost[:, kept], cost[gone], cost[:, gone] = row, row, np.inf, np.inf
    return merges, np.array(heights)


def ward_costs(size: np.ndarray | float, sizes: np.ndarray, squared: np.ndarray) -> np.ndarray:
    """What merging clusters of ``size`` and ``sizes`` images, ``squared`` distances apart, adds to the
    within-cluster sum of squares (broadcast)."""
    return size * sizes / (size + sizes) * squared


def kmeans(embedded: torch.Tensor, k: int, seed: int, start: torch.Tensor | None = None,
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means on float [N, D] -> centroids float32 [K, D] and each row's nearest one (the assignment the training
    loop will make, not k-means' own). It starts from ``start`` [K, D] where given, else it keeps the best of 4
    k-means++ starts (a fixed seed)."""
    from sklearn.cluster import KMeans  # imported here: only self-conditioned runs pay for it

    init = "k-means++" if start is None else start.numpy().astype(np.float64)
    fitted = KMeans(n_clusters=k, init=init, n_init=4 if start is None else 1, random_state=seed)
    fitted.fit(embedded.numpy().astype(np.float64))
    centroids = torch.from_numpy(fitted.cluster_centers_).float()
    return centroids, nearest(embedded, centroids)


def refit_clusters(embedded: torch.Tensor, previous: torch.Tensor, k: int, seed: int,
                   true_labels: torch.Tensor | None = None) -> tuple[Clusters, float] | None:
    """k pseudo-classes found again by k-means on the discriminator's features ``embedded`` [N, F] of the images
    whose pseudo-classes are ``previous`` [N], and the share of those images that keep their class. k-means starts
    from the old classes' means in the new features (where every old class still has images), as Liu et al. do, and
    each new cluster takes the number of the old one it shares the most images with (the Hungarian algorithm on the
    overlap counts), so that the class embeddings G and D learned keep their meaning. None where a cluster is
    empty."""
    from scipy.optimize import linear_sum_assignment

    sizes = torch.bincount(previous, minlength=k)
    start = None
    if (sizes > 0).all():
        start = torch.zeros(k, embedded.shape[1]).index_add_(0, previous, embedded.float()) / sizes[:, None]
    centroids, assigned = kmeans(embedded, k, seed, start)
    counts = torch.bincount(assigned, minlength=k)
    if (counts == 0).any():
        return None
    overlap = torch.zeros(k, k, dtype=torch.int64)  # [old, new]
    overlap.index_put_((previous, assigned), torch.ones_like(assigned), accumulate=True)
    old, new = linear_sum_assignment(overlap.numpy(), maximize=True)
    order = torch.from_numpy(new[np.argsort(old)])  # old class i is now cluster order[i]
    renumber = torch.empty_like(order)
    renumber[order] = torch.arange(k)
    assigned = renumber[assigned]
    prior = (counts[order].double() / len(assigned)).tolist()
    purity = cluster_purity(assigned, true_labels) if true_labels is not None else None
    kept = float((assigned == previous).double().mean())
    return Clusters(centroids[order], prior, purity, 1, DISCRIMINATOR), kept


def cluster_purity(assigned: torch.Tensor, true_labels: torch.Tensor) -> float:
    """Share of samples whose cluster's majority true label is theirs (a label per sample, or a row of them)."""
    if true_labels.ndim == 2:  # several classes per sample (stacked digits): the row as one code
        base = int(true_labels.max()) + 1
        true_labels = (true_labels * base ** torch.arange(true_labels.shape[1])).sum(dim=1)
    classes = int(true_labels.max()) + 1
    table = torch.zeros(int(assigned.max()) + 1, classes, dtype=torch.int64)
    table.index_put_((assigned, true_labels.long()), torch.ones_like(assigned), accumulate=True)
    return float(table.max(dim=1).values.sum() / len(assigned))
