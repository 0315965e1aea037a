"""Whether --merge-clusters finds the tight groups whatever k-means' seed: the Ward heights of the K clusters that
`ganforge train --self-conditional K --merge-clusters` fits before its first step, per seed, with each cluster
weighed by its images (what training uses) and, beside them, with the centroids alone (scipy's Ward).

    python benchmarks/merge_heights.py                                       # shapes framed, digits; seeds 0-5
    python benchmarks/merge_heights.py --cases shapes:framed16 --seeds 0,1,2

A row per data, features and seed: the largest rise of one merge's height over the one before (among the merges
that leave a quarter of K or more) with each weighting, the classes each leaves under the 1.5x rule, and the merged
clusters' purity against the labels training never sees. Writes benchmarks/results/merge_heights.json.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ganforge.benchmarks.bench.environment import save_rows
from ganforge.train.clusters import (
    EMBEDDINGS,
    cluster_purity,
    kmeans,
    merge_splits,
    merges_before_jump,
    most_merges,
    nearest,
    ward_merges,
)
from ganforge.train.data import load_data
from ganforge.train.data.base import to_unit_range
from ganforge.train.trainer import CLUSTER_POOL

CASES = "shapes:framed16,digits:pixels16,digits:framed16"


def classes_left(heights: np.ndarray) -> tuple[float, int]:
    """The largest rise among the merges that leave K / 4 clusters or more (``most_merges``), and the classes the
    1.5x rule of --merge-clusters leaves (K where no merge rises that much)."""
    k = len(heights) + 1
    rises = heights[1:] / np.maximum(heights[:-1], 1e-12)
    allowed = np.arange(len(rises)) + 1 <= most_merges(k)
    return float(rises[allowed].max()), k - merges_before_jump(heights)


def measure(data: str, features: str, seed: int, k: int) -> dict:
    from scipy.cluster.hierarchy import linkage

    images, labels = load_data(data, 32, seed=0).stream.pool(CLUSTER_POOL, seed=seed)
    embedded = torch.cat([EMBEDDINGS[features](to_unit_range(chunk)) for chunk in images.split(1024)])
    centroids, assigned = kmeans(embedded, k, seed)
    sizes = torch.bincount(assigned, minlength=k).clamp_min(1).double().numpy()
    weighed_rise, weighed_classes = classes_left(ward_merges(centroids.double().numpy(), sizes)[1])
    centroid_rise, centroid_classes = classes_left(linkage(centroids.double().numpy(), "ward")[:, 2])
    merged = merge_splits(embedded, centroids, assigned)
    return {"data": data, "features": features, "seed": seed, "k": k, "purity_k": cluster_purity(assigned, labels),
            "weighed_largest_rise": round(weighed_rise, 3), "weighed_classes": weighed_classes,
            "centroids_largest_rise": round(centroid_rise, 3), "centroids_classes": centroid_classes,
            "merged_classes": len(merged), "merged_purity": cluster_purity(nearest(embedded, merged), labels)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=CASES, help="comma-separated DATA:FEATURES")
    parser.add_argument("--seeds", default="0,1,2,3,4,5")
    parser.add_argument("--k", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/merge_heights.json")
    args = parser.parse_args(argv)
    rows = []
    print("| data | features | seed | largest rise, weighed | classes | largest rise, centroids alone | classes | "
          "merged purity |\n|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        data, features = case.split(":")
        for seed in (int(s) for s in args.seeds.split(",")):
            row = measure(data, features, seed, args.k)
            rows.append(row)
            print(f"| {data} | {features} | {seed} | {row['weighed_largest_rise']:.2f}x | {row['weighed_classes']} | "
                  f"{row['centroids_largest_rise']:.2f}x | {row['centroids_classes']} | "
                  f"{100 * row['merged_purity']:.1f}% |", flush=True)
            save_rows(args.out, rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
