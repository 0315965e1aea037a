"""Export every format and precision of a run and tabulate export time and measured error against PyTorch.

    python benchmarks/export_table.py [RUN_DIR]   (default runs/bench-dcgan64, made by backends_table.py)
Writes benchmarks/results/export.json and prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ganforge.export.api import ExportConfig, export

VARIANTS = [("onnx", "fp32", ".onnx"), ("onnx", "fp16", ".onnx"), ("onnx", "int8", ".onnx"), ("aoti", "fp32", ".pt2")]


def main() -> None:
    run = sys.argv[1] if len(sys.argv) > 1 else "runs/bench-dcgan64"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, precision, suffix in VARIANTS:
            result = export(ExportConfig(source=run, out=str(Path(tmp) / f"g-{precision}{suffix}"), format=fmt,
                                         precision=precision, max_batch=256))
            rows.append({"format": fmt, "precision": precision, "seconds": result.seconds,
                         "max_abs": max(c.max_abs for c in result.comparisons),
                         "mean_abs": max(c.mean_abs for c in result.comparisons),
                         "min_psnr_db": min(c.psnr_db for c in result.comparisons),
                         "bytes": result.path.stat().st_size})
    print("| format | precision | export s (incl. verify) | max abs error | mean abs error | min PSNR dB | size MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | {r['precision']} | {r['seconds']:.1f} | {r['max_abs']:.2e} | {r['mean_abs']:.2e} | "
              f"{r['min_psnr_db']:.1f} | {r['bytes'] / 1e6:.1f} |")
    out = Path(__file__).parent / "results" / "export.json"
    out.write_text(json.dumps({"run": run, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
