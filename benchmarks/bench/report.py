"""bench.json, bench.md and the two plots (throughput.png, latency.png)."""

from __future__ import annotations

import json
from pathlib import Path

from ganforge.files import atomic_write_bytes

RAW_KEYS = ("latencies_ms",)  # kept for the plots, left out of bench.json


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def table(report: dict) -> str:
    lines = ["| backend | precision | scenario | batch | io | images/s | GFLOP/s | % matmul | p50 ms | p90 ms "
             "| p99 ms | max abs err | PSNR dB | status |", "|" + "---|" * 14]
    for row in report["results"]:
        latency = row.get("latency_ms", {})
        status = row["status"] if row["status"] == "ok" else f"error: {row.get('error', '')[:80]}"
        if row["scenario"].startswith("server") and row["status"] == "ok":
            status = (f"ok; max rate with p99 <= {row['latency_bound_ms']:g} ms: {row['max_passing_rate']:.0f}/s; "
                      f"{100 * (row['fraction_of_offline'] or 0):.0f}% of offline")
        lines.append("| " + " | ".join([
            row["backend"], row["precision"], row["scenario"], _fmt(row.get("batch_size")), row.get("io", "host"),
            _fmt(row.get("images_per_second")), _fmt(row.get("gflops_per_second")),
            _fmt(row.get("percent_of_matmul_ceiling")), _fmt(latency.get("p50"), 2), _fmt(latency.get("p90"), 2),
            _fmt(latency.get("p99"), 2), _fmt(row.get("max_abs_error"), 4), _fmt(row.get("psnr_db")), status,
        ]) + " |")
    env = report["environment"]
    lines.append("")
    raised = env.get("ceiling_raised", {})
    ceilings = ", ".join(f"{p} {_fmt(v)}" + (f" (measured {_fmt(raised[p]['measured'])}, raised to the fastest row)"
                                             if p in raised else "")
                         for p, v in env.get("matmul_gflops", {}).items()) or "-"
    lines.append(f"{env['date']} | {env['cpu']} | {env['cores']} cores | torch threads {env['torch_threads']} | "
                 f"GPU {env['gpu'] or 'none'} | matmul ceiling GFLOP/s: {ceilings} | "
                 f"generator {_fmt(env.get('generator_gflops_per_image'), 3)} GFLOP/image"
                 + (f" | truncation psi {report['truncation']:g}" if report.get("truncation", 1.0) != 1.0 else ""))
    return "\n".join(lines) + "\n"


def write_json(report: dict, out: Path) -> Path:
    """bench.json, replaced atomically: bench writes it after every backend, so a long run that is stopped
    keeps what it measured."""
    out.mkdir(parents=True, exist_ok=True)
    clean = {"environment": report["environment"],
             "results": [{k: v for k, v in row.items() if k not in RAW_KEYS} for row in report["results"]]}
    atomic_write_bytes(out / "bench.json", json.dumps(clean, indent=2) + "\n")
    return out / "bench.json"


def write_reports(report: dict, out: Path) -> list[Path]:
    write_json(report, out)
    markdown = table(report)
    atomic_write_bytes(out / "bench.md", markdown)
    paths = [out / "bench.json", out / "bench.md"]
    paths += _plots(report, out)
    return paths


def _plots(report: dict, out: Path) -> list[Path]:
    from ganforge.train.plots import _pyplot, _save_figure

    plt = _pyplot()
    rows = [r for r in report["results"] if r["status"] == "ok"]
    figure, axis = plt.subplots(figsize=(7, 4))
    series: dict[str, list] = {}
    for row in rows:
        if row["scenario"] == "offline":
            io = {"device": " device-only", "host-uint8": " uint8 to host"}.get(row.get("io"), "")
            series.setdefault(f"{row['backend']} {row['precision']}{io}", []).append(
                (row["batch_size"], row["images_per_second"]))
    for label, points in sorted(series.items()):
        points.sort()
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("batch size")
    axis.set_ylabel("images / s")
    axis.set_title("offline throughput")
    axis.grid(alpha=0.3)
    if series:
        axis.legend(fontsize=7)
    _save_figure(figure, out / "throughput.png")

    figure, axis = plt.subplots(figsize=(7, 4))
    streams = [r for r in rows if r["scenario"] == "single-stream" and r.get("latencies_ms")]
    if streams:
        axis.boxplot([r["latencies_ms"] for r in streams], whis=(1, 99), showfliers=False)
        axis.set_xticks(range(1, len(streams) + 1), [f"{r['backend']}\n{r['precision']}" for r in streams],
                        fontsize=7)
    axis.set_ylabel("batch-1 latency (ms); whiskers p1-p99")
    axis.set_title("single-stream latency")
    axis.grid(alpha=0.3, axis="y")
    _save_figure(figure, out / "latency.png")
    return [out / "throughput.png", out / "latency.png"]
