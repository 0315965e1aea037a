"""How well self-conditioning's pseudo-classes agree with labels they never saw: the clustering that
`ganforge train --self-conditional K` fits before its first step, on labelled data with the labels hidden.

    python benchmarks/cluster_purity.py                          # digits and stacked digits, the default Ks
    python benchmarks/cluster_purity.py --cases stacked-digits:channels:40,stacked-digits:whole:200
    python benchmarks/cluster_purity.py --cases shapes:whole:40:pixels16,shapes:whole:40:centred16 \
        --out benchmarks/results/cluster_purity_features.json   # the embeddings (--cluster-features)

Purity: the share of images (of channels, for per-channel clusters) whose cluster's most common true label is their
own; for whole stacks the label is the triple of digits. Writes benchmarks/results/cluster_purity.json.
"""

from __future__ import annotations

import argparse
import sys
import time

from ganforge.benchmarks.bench.environment import save_rows
from ganforge.train.clusters import fit_clusters
from ganforge.train.data import load_data
from ganforge.train.trainer import CLUSTER_POOL

CASES = "digits:whole:10,digits:whole:40,stacked-digits:whole:40,stacked-digits:whole:200,stacked-digits:channels:40"


def measure(data: str, how: str, k: int, features: str = "pixels16", resolution: int = 32) -> dict:
    source = load_data(data, resolution, seed=0)
    images, labels = source.stream.pool(CLUSTER_POOL, seed=0)  # what training clusters (seed 0)
    groups = images.shape[1] if how == "channels" else 1
    start = time.perf_counter()
    clusters = fit_clusters(images, k, seed=0, true_labels=labels, groups=groups, features=features)
    return {"data": data, "clusters": how, "k": k, "features": features, "images": len(images),
            "purity": round(clusters.purity, 4), "seconds": round(time.perf_counter() - start, 1),
            "smallest_share": min(clusters.prior), "largest_share": max(clusters.prior)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=CASES, help="comma-separated DATA:whole|channels:K[:FEATURES] (features: "
                        "pixels16, the default, centred16 or framed16)")
    parser.add_argument("--out", default="benchmarks/results/cluster_purity.json")
    args = parser.parse_args(argv)
    rows = []
    print("| data | clusters | K | features | purity | seconds |\n|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        data, how, k, *features = case.split(":")
        rows.append(measure(data, how, int(k), *features))
        row = rows[-1]
        print(f"| {data} | {how} | {k} | {row['features']} | {100 * row['purity']:.1f}% | {row['seconds']} |",
              flush=True)
        save_rows(args.out, rows)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
